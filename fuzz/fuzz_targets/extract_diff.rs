//! The fast engine and html5ever build the same tree: on any input where the fast engine
//! builds one, its canonical dump equals html5ever's, and a template gives the same items,
//! links and next page on both engines. (The seeded in-CI version of this target is
//! `tests/extract_differential.rs`.)
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scraperv4::extract::{Template, tree_dumps};

static TEMPLATE: LazyLock<Template> = LazyLock::new(|| {
    Template::from_json(
        r#"{"id": "diff", "item": "li, tr, td, p, div, a",
            "fields": [
              {"name": "text", "selector": "*", "all": true},
              {"name": "href", "selector": "[href]", "extract": "attr:href", "all": true},
              {"name": "first", "selector": ":scope > :first-child"}
            ],
            "links": {"selector": "a", "scope": "any"},
            "pagination": {"next": "a.next"}}"#,
        "fuzz",
    )
    .expect("the fuzz template is valid")
});

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let (fast, dom) = tree_dumps(&html);
    if let Ok(fast) = fast {
        assert_eq!(fast, dom, "the trees differ");
    }
    let base = "https://shop.example/list/page.html?x=1";
    assert_eq!(TEMPLATE.analyse(&html, base), TEMPLATE.analyse_with_dom(&html, base));
});
