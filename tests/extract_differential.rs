//! The fast engine builds the tree html5ever builds, or hands the page to html5ever.
//!
//! Every document of `tests/extract_corpus/` (every optional-tag rule, misnesting, tables,
//! forms, `template`, `noscript`, entities, comments, scripts, foreign content, broken and
//! truncated markup) and thousands of seeded mutations of them: whenever the fast engine
//! builds a tree, it must equal html5ever's (a canonical dump of elements, attributes and
//! text), and every template must give the same items, links and next page on both engines.
//! The pages the fast engine is meant to handle (the optional tags above all) must not fall
//! back. Browsers are the oracle of html5ever's trees in `tests/test_extract_browser.py`.

use std::path::PathBuf;

use scraperv4::extract::{Fallback, Template, tree_dumps};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/extract_corpus");
    let mut documents: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("a corpus file");
            (name, String::from_utf8(bytes).expect("UTF-8 corpus"))
        })
        .collect();
    documents.sort();
    assert!(documents.len() >= 60, "the corpus is there");
    documents
}

/// Templates that look at every element: its text (all descendants), attributes, links.
fn templates() -> Vec<Template> {
    [
        r#"{"id": "every", "item": "*", "fields": [
            {"name": "texts", "selector": "*", "all": true},
            {"name": "hrefs", "selector": "[href]", "extract": "attr:href", "all": true},
            {"name": "srcs", "selector": "[src]", "extract": "attr:src", "all": true},
            {"name": "classes", "selector": "[class]", "extract": "attr:class", "all": true}
          ],
          "links": {"selector": "a, link, [href]", "scope": "any"},
          "pagination": {"next": "a.next, a:last-of-type"}}"#,
        r#"{"id": "rows", "item": "tr, li, dt, dd, option, p",
            "fields": [{"name": "first", "selector": "td, th, span, b, a"},
                       {"name": "n", "selector": ":scope > *", "all": true}]}"#,
        r#"{"id": "page", "fields": [
            {"name": "title", "selector": "title"},
            {"name": "body", "selector": "body"},
            {"name": "structural", "selector": "body > :first-child:not(:empty)"},
            {"name": "has", "selector": "div:has(> p) p", "all": true},
            {"name": "svg", "selector": "svg [viewBox], clipPath, use", "extract": "attr:id", "all": true}]}"#,
    ]
    .iter()
    .map(|text| Template::from_json(text, "differential").expect("valid test template"))
    .collect()
}

/// Both engines agree on `html`: the same tree when the fast engine builds one, and the
/// same output for every template. Returns the fallback, if any.
fn check(name: &str, html: &str, templates: &[Template]) -> Option<Fallback> {
    let (fast, dom) = tree_dumps(html);
    if let Ok(fast) = &fast {
        assert_eq!(fast, &dom, "{name}: the trees differ for {html:?}");
    }
    let base = "https://shop.example/list/page.html?x=1";
    for template in templates {
        assert_eq!(
            template.analyse(html, base),
            template.analyse_with_dom(html, base),
            "{name}: template {} differs for {html:?}",
            template.id
        );
    }
    fast.err()
}

#[test]
fn the_corpus_gives_the_same_trees_and_items() {
    let templates = templates();
    // The pages that need a rule the fast engine leaves to html5ever.
    let expected_fallbacks = [
        ("formatting_misnested", Fallback::MisnestedFormatting),
        ("frameset", Fallback::Frameset),
        ("html_body_attrs", Fallback::AttributeMerge),
        ("math_annotation", Fallback::ForeignContent),
        ("plaintext", Fallback::Plaintext),
        ("table_foster", Fallback::FosterParenting),
        ("table_foster_element", Fallback::FosterParenting),
        ("colgroup_text", Fallback::FosterParenting),
        ("table_in_p_legacy_doctype", Fallback::Quirks),
        ("template", Fallback::Template),
        ("template_in_head", Fallback::Template),
        ("bom_after_script", Fallback::ByteOrderMark),
        ("pre_entity_newline", Fallback::LeadingNewline),
        ("pre_newlines", Fallback::LeadingNewline),
    ];
    let mut fast = 0;
    for (name, html) in corpus() {
        let fallback = check(&name, &html, &templates);
        let expected = expected_fallbacks
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, reason)| *reason);
        assert_eq!(fallback, expected, "{name}: which engine parses it");
        fast += usize::from(fallback.is_none());
    }
    assert!(
        fast >= 55,
        "most of the corpus takes the fast engine ({fast})"
    );
}

/// A small deterministic generator (xorshift64*): the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

const SNIPPETS: [&str; 32] = [
    "<",
    ">",
    "&",
    "&amp",
    "</",
    "\"",
    "'",
    "=",
    "<p>",
    "</p>",
    "<li>",
    "</li>",
    "<td>",
    "<tr>",
    "</table>",
    "<table>",
    "<b>",
    "</b>",
    "<a href=x>",
    "</a>",
    "<div class=card>",
    "</div>",
    "<option>",
    "<select>",
    "<svg>",
    "</svg>",
    "<!--",
    "-->",
    "<script>",
    "</script>",
    "<br>",
    "<dd>",
];

/// Drops end tags at random, inserts markup fragments, deletes and duplicates ranges.
fn mutate(rng: &mut Rng, page: &str) -> String {
    let mut out: String = page.to_owned();
    // Drop some end tags (omitted end tags are the common case on real pages).
    if rng.below(2) == 0 {
        let mut dropped = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find("</") {
            let end = rest[at..].find('>').map_or(rest.len(), |i| at + i + 1);
            dropped.push_str(&rest[..at]);
            if rng.below(3) != 0 {
                dropped.push_str(&rest[at..end]);
            }
            rest = &rest[end..];
        }
        dropped.push_str(rest);
        out = dropped;
    }
    for _ in 0..=rng.below(6) {
        let mut at = if out.is_empty() {
            0
        } else {
            rng.below(out.len() + 1)
        };
        while !out.is_char_boundary(at) {
            at -= 1;
        }
        match rng.below(4) {
            0 | 1 => out.insert_str(at, SNIPPETS[rng.below(SNIPPETS.len())]),
            2 => {
                let mut end = (at + rng.below(40)).min(out.len());
                while !out.is_char_boundary(end) {
                    end -= 1;
                }
                out.replace_range(at..end, "");
            }
            _ => {
                let mut end = (at + rng.below(60)).min(out.len());
                while !out.is_char_boundary(end) {
                    end -= 1;
                }
                let copy = out[at..end].to_owned();
                out.insert_str(end, &copy);
            }
        }
    }
    out
}

#[test]
fn seeded_mutations_give_the_same_trees_and_items() {
    let templates = templates();
    let seeds: Vec<String> = corpus().into_iter().map(|(_, html)| html).collect();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut fast, mut total) = (0usize, 0usize);
    for round in 0..3000 {
        let seed = &seeds[rng.below(seeds.len())];
        let page = mutate(&mut rng, seed);
        let fallback = check(&format!("mutation {round}"), &page, &templates);
        total += 1;
        fast += usize::from(fallback.is_none());
    }
    // Most mutations stay within what the fast engine builds (else this test says little).
    assert!(
        fast * 2 > total,
        "fast engine on {fast} of {total} mutated pages"
    );
}
