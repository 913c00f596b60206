//! Running a template over a page: items, links and the next page.
//!
//! Items come from the streaming engine ([`super::stream`]) when the template allows it, and
//! from a DOM otherwise: `scraper` (html5ever, the HTML standard's tree builder), where any
//! input — broken, truncated, binary — becomes some tree. Links and next pages use the DOM.
//! Extraction never panics on any input.

use std::collections::HashSet;

use scraper::{ElementRef, Html};
use serde_json::{Map, Value};
use url::Url;

use super::template::{Extract, Field, LinkScope, Template};

/// One extracted item: field name to value.
pub type Item = Map<String, Value>;

impl Template {
    /// The items of `html`, with relative URLs resolved against `base_url`.
    pub fn extract(&self, html: &str, base_url: &str) -> Vec<Item> {
        let base = Url::parse(base_url).ok();
        match &self.stream {
            Some(plan) => super::stream::extract(plan, self, html, base.as_ref()),
            None => self.extract_with_dom(html, base.as_ref()),
        }
    }

    /// The items of `html` from the DOM engine, whatever the template.
    pub fn extract_with_dom(&self, html: &str, base: Option<&Url>) -> Vec<Item> {
        self.items_of_document(&Html::parse_document(html), base)
    }

    fn items_of_document(&self, document: &Html, base: Option<&Url>) -> Vec<Item> {
        let roots: Vec<ElementRef<'_>> = match &self.item {
            Some(selector) => document.select(selector).collect(),
            None => vec![document.root_element()],
        };
        roots
            .into_iter()
            .filter_map(|root| self.item_of(root, base))
            .collect()
    }

    fn item_of(&self, root: ElementRef<'_>, base: Option<&Url>) -> Option<Item> {
        let mut item = Map::with_capacity(self.fields.len());
        for field in &self.fields {
            let mut values = root
                .select(&field.selector)
                .filter_map(|element| value_of(field, element, base));
            let value = if field.all {
                let all: Vec<Value> = values.map(Value::String).collect();
                (!all.is_empty()).then_some(Value::Array(all))
            } else {
                values.next().map(Value::String)
            };
            match (value, &field.default) {
                (Some(value), _) => {
                    item.insert(field.name.clone(), value);
                }
                (None, _) if field.required => return None,
                (None, default) => {
                    item.insert(field.name.clone(), default.clone().unwrap_or(Value::Null));
                }
            }
        }
        Some(item)
    }

    /// Items, links to follow and the next page of one page, parsing it once: one streaming
    /// pass when the template allows it, else one DOM.
    pub fn analyse(&self, html: &str, base_url: &str) -> PageOutput {
        let base = Url::parse(base_url).ok();
        if let Some(plan) = self.stream.as_deref().filter(|p| p.covers_navigation()) {
            let raw = super::stream::extract_page(plan, self, html, base.as_ref());
            return PageOutput {
                items: raw.items,
                links: self.scoped_links(raw.hrefs.iter().map(String::as_str), base.as_ref()),
                next_page: next_of(raw.next_hrefs.iter().map(String::as_str), base.as_ref()),
            };
        }
        let needs_dom = self.links.is_some() || self.pagination.is_some() || self.stream.is_none();
        let document = needs_dom.then(|| Html::parse_document(html));
        let items = match (&self.stream, &document) {
            (Some(plan), _) => super::stream::extract(plan, self, html, base.as_ref()),
            (None, Some(document)) => self.items_of_document(document, base.as_ref()),
            (None, None) => Vec::new(),
        };
        let Some(document) = document else {
            return PageOutput {
                items,
                links: Vec::new(),
                next_page: None,
            };
        };
        PageOutput {
            items,
            links: self.links_of_document(&document, base.as_ref()),
            next_page: self.next_of_document(&document, base.as_ref()),
        }
    }

    /// The links to follow from `html` (absolute, in scope, deduplicated, in page order).
    pub fn links(&self, html: &str, base_url: &str) -> Vec<String> {
        if self.links.is_none() {
            return Vec::new();
        }
        let base = Url::parse(base_url).ok();
        self.links_of_document(&Html::parse_document(html), base.as_ref())
    }

    /// The next page of `html`, if the template has pagination and the page has one.
    pub fn next_page(&self, html: &str, base_url: &str) -> Option<String> {
        self.pagination.as_ref()?;
        let base = Url::parse(base_url).ok();
        self.next_of_document(&Html::parse_document(html), base.as_ref())
    }

    fn links_of_document(&self, document: &Html, base: Option<&Url>) -> Vec<String> {
        let Some(links) = &self.links else {
            return Vec::new();
        };
        let hrefs = document
            .select(&links.selector)
            .filter_map(|element| element.value().attr(&links.attr));
        self.scoped_links(hrefs, base)
    }

    fn next_of_document(&self, document: &Html, base: Option<&Url>) -> Option<String> {
        let pagination = self.pagination.as_ref()?;
        let hrefs = document
            .select(&pagination.next)
            .filter_map(|element| element.value().attr("href"));
        next_of(hrefs, base)
    }

    /// Raw link values made absolute, kept when in scope, deduplicated, in page order.
    fn scoped_links<'a>(
        &self,
        hrefs: impl Iterator<Item = &'a str>,
        base: Option<&Url>,
    ) -> Vec<String> {
        let (Some(links), Some(base)) = (&self.links, base) else {
            return Vec::new();
        };
        let mut seen = HashSet::new();
        hrefs
            .filter_map(|href| resolve(base, href))
            .filter(|url| in_scope(&links.scope, base, url))
            .map(String::from)
            .filter(|url| seen.insert(url.clone()))
            .collect()
    }
}

/// The first next-page `href` that resolves to another page.
fn next_of<'a>(mut hrefs: impl Iterator<Item = &'a str>, base: Option<&Url>) -> Option<String> {
    let base = base?;
    hrefs
        .find_map(|href| resolve(base, href))
        .filter(|url| url != base)
        .map(String::from)
}

/// Items, links and the next page of one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageOutput {
    /// The items found.
    pub items: Vec<Item>,
    /// Links to follow (absolute, in scope, deduplicated).
    pub links: Vec<String>,
    /// The next page, if any.
    pub next_page: Option<String>,
}

fn value_of(field: &Field, element: ElementRef<'_>, base: Option<&Url>) -> Option<String> {
    let raw = match &field.extract {
        Extract::Text => element.text().collect::<String>(),
        Extract::Attr(name) => element.value().attr(name)?.trim().to_owned(),
        Extract::Html => element.html(),
        Extract::InnerHtml => element.inner_html(),
    };
    clean_value(field, raw, base)
}

/// The cleaning every engine applies to a raw value: whitespace collapsed (text fields),
/// the regex capture, URL resolution. `None` when the regex does not match.
pub(crate) fn clean_value(field: &Field, raw: String, base: Option<&Url>) -> Option<String> {
    let raw = match field.extract {
        Extract::Text => normalize_whitespace(&raw),
        _ => raw,
    };
    let cleaned = match &field.regex {
        Some(regex) => {
            let captures = regex.captures(&raw)?;
            captures
                .get(1)
                .or_else(|| captures.get(0))
                .map(|m| m.as_str().to_owned())?
        }
        None => raw,
    };
    if field.absolute_url {
        return match base {
            Some(base) => resolve(base, &cleaned).map(String::from),
            None => Some(cleaned),
        };
    }
    Some(cleaned)
}

/// Text as `textContent` gives it, with runs of whitespace collapsed to one space.
fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// An http(s) URL from an attribute value, fragment removed.
fn resolve(base: &Url, href: &str) -> Option<Url> {
    let mut url = base.join(href.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    Some(url)
}

fn in_scope(scope: &LinkScope, base: &Url, url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match scope {
        LinkScope::Any => true,
        LinkScope::SameHost => url.host_str() == base.host_str(),
        LinkScope::SameDomain => {
            let domain = |h: &str| psl::domain_str(h).map_or_else(|| h.to_owned(), str::to_owned);
            domain(&host) == domain(&base.host_str().unwrap_or_default().to_ascii_lowercase())
        }
        LinkScope::AllowedDomains(domains) => domains
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html><body>
      <div class="card"><h2> Red
         Shoe </h2><span class="price">$19.99</span><a href="/p/1#top">more</a>
         <img src="img/1.png"><span class="tag">a</span><span class="tag">b</span></div>
      <div class="card"><h2>Blue Hat</h2><a href="https://shop.example.com/p/2">more</a></div>
      <div class="card"><span class="price">$5</span></div>
      <a class="next" href="?page=2">next</a>
      <a href="https://other.org/x">away</a><a href="mailto:x@example.com">mail</a>
    </body></html>"#;

    fn template() -> Template {
        Template::from_json(
            r#"{"id": "cards", "item": "div.card", "fields": [
                {"name": "title", "selector": "h2", "required": true},
                {"name": "price", "selector": ".price", "regex": "\\$([0-9.]+)", "default": "n/a"},
                {"name": "link", "selector": "a", "extract": "attr:href"},
                {"name": "image", "selector": "img", "extract": "attr:src"},
                {"name": "tags", "selector": ".tag", "all": true}
              ],
              "links": {"selector": "a", "scope": "same_domain"},
              "pagination": {"next": "a.next", "max_pages": 5}}"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn items_fields_regex_defaults_and_urls() {
        let items = template().extract(PAGE, "https://www.example.com/list");
        assert_eq!(items.len(), 2, "the card without a title is dropped");
        let first = &items[0];
        assert_eq!(first["title"], "Red Shoe");
        assert_eq!(first["price"], "19.99");
        assert_eq!(first["link"], "https://www.example.com/p/1");
        assert_eq!(first["image"], "https://www.example.com/img/1.png");
        assert_eq!(first["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(items[1]["price"], "n/a");
        assert_eq!(items[1]["tags"], Value::Null);
    }

    #[test]
    fn links_are_scoped_and_deduplicated() {
        let links = template().links(PAGE, "https://www.example.com/list");
        assert_eq!(
            links,
            vec![
                "https://www.example.com/p/1",
                "https://shop.example.com/p/2",
                "https://www.example.com/list?page=2",
            ]
        );
        assert_eq!(
            template().next_page(PAGE, "https://www.example.com/list"),
            Some("https://www.example.com/list?page=2".to_owned())
        );
    }

    #[test]
    fn one_pass_analysis_matches_the_dom_engine() {
        let streaming = template();
        assert!(streaming.stream.as_ref().unwrap().covers_navigation());
        let mut dom_only = template();
        dom_only.stream = None;
        let base = "https://www.example.com/list";
        let expected = PageOutput {
            items: dom_only.extract(PAGE, base),
            links: dom_only.links(PAGE, base),
            next_page: dom_only.next_page(PAGE, base),
        };
        assert_eq!(streaming.analyse(PAGE, base), expected);
        assert_eq!(dom_only.analyse(PAGE, base), expected);
        for cut in [10, PAGE.len() / 3, PAGE.len() - 40] {
            let (a, b) = (
                streaming.analyse(&PAGE[..cut], base),
                dom_only.analyse(&PAGE[..cut], base),
            );
            assert_eq!(a.links, b.links, "cut at {cut}");
            assert_eq!(a.next_page, b.next_page, "cut at {cut}");
        }
    }

    #[test]
    fn broken_and_binary_input_never_panics() {
        let t = template();
        for input in [
            "",
            "<div class=card><h2>x",
            "\u{0}\u{fffd}<<<>>>&&&;",
            "<div class='card'",
        ] {
            let _ = t.extract(input, "https://example.com/");
            let _ = t.links(input, "not a url");
        }
        let truncated = &PAGE[..PAGE.len() / 2];
        assert!(!t.extract(truncated, "https://www.example.com/").is_empty());
    }

    #[test]
    fn template_mistakes_name_the_template_and_field() {
        let cases = [
            (
                r#"{"id": "t", "fields": [{"name": "a", "selector": "div[[["}]}"#,
                "field \"a\"",
            ),
            (
                r#"{"id": "t", "fields": [{"name": "a", "selector": "p"}, {"name": "a", "selector": "p"}]}"#,
                "duplicate",
            ),
            (
                r#"{"id": "t", "fields": [{"selector": "p"}]}"#,
                "has no name",
            ),
            (
                r#"{"id": "t", "fields": [{"name": "a", "selector": "p", "colour": 1}]}"#,
                "unknown field",
            ),
            (
                r#"{"id": "t", "fields": [{"name": "a", "selector": "p", "regex": "("}]}"#,
                "invalid regex",
            ),
            (
                r#"{"id": "t", "fields": [{"name": "a", "selector": "p", "extract": "attribute"}]}"#,
                "unknown extract",
            ),
            (r#"{"id": "t", "fields": []}"#, "no fields"),
        ];
        for (json, expected) in cases {
            let error = Template::from_json(json, "file.json")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                error.starts_with("template t") || error.starts_with("template file.json"),
                "{error}"
            );
        }
    }
}
