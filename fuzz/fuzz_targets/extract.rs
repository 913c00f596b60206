//! Extraction never panics, whatever the page: every engine (streaming, DOM, the one-pass
//! `analyse`) on arbitrary bytes, for templates that exercise every feature.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scraperv4::extract::Template;

const TEMPLATES: [&str; 4] = [
    // Streamable: item selector, text/attribute/html fields, regex, defaults, absolute URLs.
    r#"{"id": "cards", "item": "div.card",
        "fields": [
          {"name": "title", "selector": "h2 a", "required": true},
          {"name": "link", "selector": "h2 a", "extract": "attr:href"},
          {"name": "price", "selector": ".price", "regex": "([0-9.,]+)", "default": "0"},
          {"name": "tags", "selector": "li.tag", "all": true},
          {"name": "img", "selector": "img", "extract": "attr:src"},
          {"name": "body", "selector": ".desc", "extract": "inner_html"}
        ],
        "links": {"selector": "a.follow", "max_depth": 3},
        "pagination": {"next": "a.next", "max_pages": 10}}"#,
    // Needs the DOM (structural pseudo-classes): the fallback engine.
    r#"{"id": "dom", "item": "ul > li:nth-child(2n+1)",
        "fields": [
          {"name": "first", "selector": "span:first-child"},
          {"name": "outer", "selector": "b", "extract": "html"},
          {"name": "not_empty", "selector": "i:not(.x)", "all": true}
        ]}"#,
    // One item per page.
    r#"{"id": "page", "fields": [
          {"name": "title", "selector": "title"},
          {"name": "h1", "selector": "h1", "regex": "^(\\w+)"},
          {"name": "meta", "selector": "meta[name=description]", "extract": "attr:content"}
        ]}"#,
    // Deep and wide selectors.
    r#"{"id": "deep", "item": "body div div div",
        "fields": [{"name": "x", "selector": "* > *", "all": true}]}"#,
];

static COMPILED: LazyLock<Vec<Template>> = LazyLock::new(|| {
    TEMPLATES
        .iter()
        .map(|text| Template::from_json(text, "fuzz").expect("the fuzz templates are valid"))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, page)) = data.split_first() else {
        return;
    };
    let template = &COMPILED[usize::from(choice) % COMPILED.len()];
    let html = String::from_utf8_lossy(page);
    let base = "https://shop.example/list?page=1";
    let _ = template.extract(&html, base);
    let _ = template.analyse(&html, base);
    let _ = template.extract_with_dom(&html, url::Url::parse(base).ok().as_ref());
    let _ = template.links(&html, base);
    let _ = template.next_page(&html, base);
});
