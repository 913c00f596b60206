//! One hostile page must not take a worker down: extraction is capped (issue #15).
//!
//! The pages of the issue — nested items that each copy the page's text, nested items that
//! each search the rest of the page, more item elements or links than any real page has,
//! elements nested tens of thousands deep (quadratic to parse) — are refused quickly, with the
//! cap they broke, by both engines; a deadline stops extraction, html5ever's parse included;
//! and the caps change nothing on the ordinary pages of the corpus.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scraperv4::extract::{LimitError, Limits, Template};

fn template(json: &str) -> Template {
    Template::from_json(json, "limits").expect("a valid test template")
}

fn nested(count: usize, inner: &str) -> String {
    let mut html = "<div class=p>".repeat(count);
    html.push_str(inner);
    html
}

/// Refused with the expected cap, in well under the time the uncapped work would take.
fn refused(template: &Template, html: &str, limits: &Limits) -> LimitError {
    let started = Instant::now();
    let error = template
        .analyse_within(html, "https://hostile.example/", limits)
        .map(|_| ())
        .expect_err("the page must be refused");
    // A debug build on a loaded 2-core box: generous, but far below the uncapped minutes.
    assert!(started.elapsed() < Duration::from_secs(60), "{error}");
    error
}

#[test]
fn nested_items_copying_the_page_text_break_the_output_cap() {
    // The issue's page (its 50,000 levels are refused for depth, below): 1,000 nested items,
    // each with the same 5 MB heading as its field.
    let html = nested(1_000, &format!("<h2>{}", "A".repeat(5_000_000)));
    let fast =
        template(r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2"}]}"#);
    assert!(matches!(
        refused(&fast, &html, &Limits::DEFAULT),
        LimitError::Output { .. }
    ));
    // The DOM engine (a template taking HTML) is capped the same way.
    let dom = template(
        r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2", "extract": "html"}]}"#,
    );
    assert!(matches!(
        refused(&dom, &html, &Limits::DEFAULT),
        LimitError::Output { .. }
    ));
    // `all` fields over nested elements: every value counts.
    let all =
        template(r#"{"id": "t", "fields": [{"name": "every", "selector": "div", "all": true}]}"#);
    let small = nested(1_000, &"B".repeat(200_000));
    assert!(matches!(
        refused(&all, &small, &Limits::DEFAULT),
        LimitError::Output { .. }
    ));
}

#[test]
fn nested_items_searching_the_rest_of_the_page_break_the_work_cap() {
    // No heading at all: nothing is output, but each item walks the rest of the page.
    let html = nested(1_000, &"<i>x</i>".repeat(50_000));
    let template =
        template(r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2"}]}"#);
    assert!(matches!(
        refused(&template, &html, &Limits::DEFAULT),
        LimitError::Work { .. }
    ));
}

#[test]
fn too_many_item_elements_or_links_are_refused() {
    let items = "<p class=i>x</p>".repeat(60_000);
    let template = template(
        r#"{"id": "t", "item": ".i", "fields": [{"name": "x", "selector": ":scope"}],
            "links": {"selector": "a", "scope": "any"}}"#,
    );
    assert_eq!(
        refused(&template, &items, &Limits::DEFAULT),
        LimitError::Items { limit: 50_000 }
    );
    let links = (0..25_000).fold(String::new(), |mut out, i| {
        let _ = write!(out, "<a href=/p/{i}>{i}</a>");
        out
    });
    assert_eq!(
        template
            .links_within(&links, "https://hostile.example/", &Limits::DEFAULT)
            .unwrap_err(),
        LimitError::Links { limit: 20_000 }
    );
    let fewer = Limits {
        max_links: 30_000,
        ..Limits::DEFAULT
    };
    assert_eq!(
        template
            .links_within(&links, "https://hostile.example/", &fewer)
            .map(|l| l.len()),
        Ok(25_000),
        "the caps are settings, not constants"
    );
}

#[test]
fn elements_nested_tens_of_thousands_deep_are_refused_or_stopped() {
    // The issue's page: parsing alone is quadratic in the depth, in both engines.
    let html = nested(50_000, &format!("<h2>{}", "A".repeat(1_000_000)));
    let fast =
        template(r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2"}]}"#);
    assert_eq!(
        refused(&fast, &html, &Limits::DEFAULT),
        LimitError::Depth { limit: 1024 }
    );
    // A page the fast engine hands to html5ever (a <template> first), or a template that
    // takes HTML (html5ever only): html5ever is fed in chunks and stopped at the deadline.
    let fallback = format!("<template></template>{html}");
    let dom = template(
        r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2", "extract": "html"}]}"#,
    );
    for (template, page) in [(&fast, &fallback), (&dom, &html)] {
        let soon = Limits::within(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(refused(template, page, &soon), LimitError::Deadline);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_passed_deadline_stops_extraction() {
    let html = "<div class=p><h2>x</h2></div>".repeat(20_000);
    let template =
        template(r#"{"id": "t", "item": ".p", "fields": [{"name": "h", "selector": "h2"}]}"#);
    let past = Limits {
        deadline: Some(Instant::now()),
        ..Limits::DEFAULT
    };
    assert_eq!(refused(&template, &html, &past), LimitError::Deadline);
    let (output, _) = template
        .analyse_within(
            &html,
            "https://ok.example/",
            &Limits::within(Duration::from_secs(600)),
        )
        .expect("a minute is plenty");
    assert_eq!(output.items.len(), 20_000);
}

#[test]
fn the_caps_change_nothing_on_ordinary_pages() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/extract_corpus");
    let templates = [
        // Looks at every element's text from every element: the worst ordinary template.
        template(
            r#"{"id": "every", "item": "*", "fields": [
                {"name": "texts", "selector": "*", "all": true},
                {"name": "hrefs", "selector": "[href]", "extract": "attr:href", "all": true}],
              "links": {"selector": "a, [href]", "scope": "any"},
              "pagination": {"next": "a.next, a:last-of-type"}}"#,
        ),
        template(
            r#"{"id": "rows", "item": "tr, li, dt, dd, option, p",
                "fields": [{"name": "first", "selector": "td, th, span, b, a"}]}"#,
        ),
    ];
    let mut pages = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus") {
        let html = std::fs::read_to_string(entry.expect("an entry").path()).expect("UTF-8");
        for template in &templates {
            let base = "https://shop.example/list";
            let (capped, _) = template
                .analyse_within(&html, base, &Limits::DEFAULT)
                .expect("an ordinary page is within the caps");
            assert_eq!(capped, template.analyse(&html, base));
        }
        pages += 1;
    }
    assert!(pages >= 60);
    // A large ordinary listing: 5,000 cards of 12 fields each.
    let card = r#"<div class="card"><h2>Name</h2><span class="price">$1</span><a href="/p">more</a>
        <ul><li>a</li><li>b</li><li>c</li></ul><p>some text for the description</p></div>"#;
    let html = format!("<html><body>{}</body></html>", card.repeat(5_000));
    let fields: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"name": "f{i}", "selector": "h2, .price, li, p, a"}}"#))
        .collect();
    let listing = template(&format!(
        r#"{{"id": "cards", "item": ".card", "fields": [{}], "links": {{"selector": "a"}}}}"#,
        fields.join(",")
    ));
    let (output, _) = listing
        .analyse_within(&html, "https://shop.example/", &Limits::DEFAULT)
        .expect("within the caps");
    assert_eq!(output.items.len(), 5_000);
}
