//! Running a template over a page: items, links and the next page.
//!
//! A page is parsed once, by the fast engine ([`super::fast`]) when it can build the page's
//! tree exactly, else by html5ever (the DOM engine, [`super::dom`]); the same code then
//! matches the template's selectors on either tree ([`Tree`]), so the answer does not depend
//! on the engine: it is the tree the HTML standard gives, the one a browser builds.
//! Templates with `html`/`inner_html` fields always use the DOM engine (its serializer).
//! Extraction never panics on any input.

use std::collections::HashSet;

use scraper::selector::Simple;
use selectors::Element;
use selectors::context::SelectorCaches;
use serde_json::{Map, Value};
use url::Url;

use super::fast::{Fallback, MAX_DEPTH};
use super::limits::{Budget, LimitError, Limits};
use super::stats::{self, Engine};
use super::template::{Extract, Field, LinkScope, Template};
use super::{dom, fast};

/// One extracted item: field name to value.
pub type Item = Map<String, Value>;

/// An element of a parsed page, whichever engine parsed it.
pub(crate) trait Tree<'t>: Element<Impl = Simple> + Copy + 't {
    /// The elements below this one, in document order (template contents excluded).
    fn descendants(self) -> impl Iterator<Item = Self> + 't;
    /// Appends the element's text (the rule of [`super::text`]).
    fn text(self, out: &mut String);
    /// The value of an attribute without namespace.
    fn attr(self, name: &str) -> Option<&'t str>;
    /// The local name, when this is an HTML element.
    fn html_name(self) -> Option<&'t str>;
    /// The element's markup (outer) or its content's (inner); only templates with HTML
    /// fields ask, and those always use the DOM engine.
    fn markup(self, outer: bool) -> String;
}

/// What a caller wants from a page.
#[derive(Clone, Copy)]
struct Want {
    items: bool,
    links: bool,
    next: bool,
}

const ALL: Want = Want {
    items: true,
    links: true,
    next: true,
};

impl Template {
    /// The items of `html`, with relative URLs resolved against the page's base URL (its
    /// `<base href>`, else `base_url`). No limits: for trusted pages (see
    /// [`Template::extract_within`]).
    pub fn extract(&self, html: &str, base_url: &str) -> Vec<Item> {
        self.extract_within(html, base_url, &Limits::NONE)
            .unwrap_or_default()
    }

    /// [`Template::extract`] within `limits`.
    pub fn extract_within(
        &self,
        html: &str,
        base_url: &str,
        limits: &Limits,
    ) -> Result<Vec<Item>, LimitError> {
        let want = Want {
            items: true,
            links: false,
            next: false,
        };
        Ok(self.run(html, base_url, want, limits)?.0.items)
    }

    /// The items of `html` from the DOM engine, whatever the page (engine parity checks).
    pub fn extract_with_dom(&self, html: &str, base: Option<&Url>) -> Vec<Item> {
        let document = dom::parse(html);
        let want = Want {
            items: true,
            links: false,
            next: false,
        };
        let budget = Budget::new(&Limits::NONE, html.len(), self.fields.len());
        self.output_of(document.root_element(), base, want, &budget)
            .unwrap_or_default()
            .items
    }

    /// Items, links to follow and the next page of one page, parsing it once. No limits:
    /// for trusted pages (see [`Template::analyse_within`]).
    pub fn analyse(&self, html: &str, base_url: &str) -> PageOutput {
        self.analyse_within(html, base_url, &Limits::NONE)
            .map(|(output, _)| output)
            .unwrap_or_default()
    }

    /// [`Template::analyse`] within `limits`, and which engine parsed the page.
    pub fn analyse_within(
        &self,
        html: &str,
        base_url: &str,
        limits: &Limits,
    ) -> Result<(PageOutput, Engine), LimitError> {
        self.run(html, base_url, ALL, limits)
    }

    /// [`Template::analyse`] with the DOM engine, whatever the page (engine parity checks).
    pub fn analyse_with_dom(&self, html: &str, base_url: &str) -> PageOutput {
        let document = dom::parse(html);
        let budget = Budget::new(&Limits::NONE, html.len(), self.fields.len());
        self.output_of(
            document.root_element(),
            Url::parse(base_url).ok().as_ref(),
            ALL,
            &budget,
        )
        .unwrap_or_default()
    }

    /// The links to follow from `html` (absolute, in scope, deduplicated, in page order).
    pub fn links(&self, html: &str, base_url: &str) -> Vec<String> {
        self.links_within(html, base_url, &Limits::NONE)
            .unwrap_or_default()
    }

    /// [`Template::links`] within `limits`.
    pub fn links_within(
        &self,
        html: &str,
        base_url: &str,
        limits: &Limits,
    ) -> Result<Vec<String>, LimitError> {
        if self.links.is_none() {
            return Ok(Vec::new());
        }
        let want = Want {
            items: false,
            links: true,
            next: false,
        };
        Ok(self.run(html, base_url, want, limits)?.0.links)
    }

    /// The next page of `html`, if the template has pagination and the page has one.
    pub fn next_page(&self, html: &str, base_url: &str) -> Option<String> {
        self.pagination.as_ref()?;
        let want = Want {
            items: false,
            links: false,
            next: true,
        };
        self.run(html, base_url, want, &Limits::NONE)
            .ok()?
            .0
            .next_page
    }

    fn run(
        &self,
        html: &str,
        base_url: &str,
        want: Want,
        limits: &Limits,
    ) -> Result<(PageOutput, Engine), LimitError> {
        let page = Url::parse(base_url).ok();
        let budget = Budget::new(limits, html.len(), self.fields.len());
        let engine = if self.needs_dom {
            Engine::DomByTemplate
        } else {
            let parsed = fast::prepare(html).and_then(|prepared| {
                let document = fast::parse(&prepared)?;
                Ok(document
                    .root()
                    .map(|root| self.output_of(root, page.as_ref(), want, &budget)))
            });
            match parsed {
                Ok(output) => {
                    stats::record(Engine::Fast);
                    return Ok((output.transpose()?.unwrap_or_default(), Engine::Fast));
                }
                Err(Fallback::TooDeep) if limits.refuse_deep => {
                    stats::record(Engine::Fallback(Fallback::TooDeep));
                    return Err(LimitError::Depth { limit: MAX_DEPTH });
                }
                Err(reason) => Engine::Fallback(reason),
            }
        };
        stats::record(engine);
        let document =
            dom::parse_before(html, limits.deadline).map_err(|()| LimitError::Deadline)?;
        let output = self.output_of(document.root_element(), page.as_ref(), want, &budget)?;
        Ok((output, engine))
    }

    fn output_of<'t, N: Tree<'t>>(
        &self,
        root: N,
        page: Option<&Url>,
        want: Want,
        budget: &Budget,
    ) -> Result<PageOutput, LimitError> {
        let mut caches = SelectorCaches::default();
        let resolves_urls =
            want.links || want.next || (want.items && self.fields.iter().any(|f| f.absolute_url));
        let base = if resolves_urls {
            document_base(root, page, budget)
        } else {
            page.cloned()
        };
        let base = base.as_ref();
        let elements = || {
            std::iter::once(root)
                .chain(root.descendants())
                .take_while(|_| budget.visit())
        };
        let mut output = PageOutput::default();
        if want.items {
            output.items = match &self.item {
                Some(selector) => {
                    let candidates: Vec<N> = elements()
                        .filter(|e| selector.matches(e, None, &mut caches))
                        .take(budget.max_items().saturating_add(1))
                        .collect();
                    budget.check()?;
                    budget.items(candidates.len());
                    budget.check()?;
                    let mut items = Vec::with_capacity(candidates.len());
                    for candidate in candidates {
                        items.extend(self.item_of(candidate, base, &mut caches, budget)?);
                    }
                    items
                }
                None => self
                    .item_of(root, base, &mut caches, budget)?
                    .into_iter()
                    .collect(),
            };
        }
        if want.links
            && let (Some(links), Some(page)) = (&self.links, page)
        {
            let hrefs = elements()
                .filter(|e| links.selector.matches(e, None, &mut caches))
                .filter_map(|e| e.attr(&links.attr));
            output.links = scoped_links(&links.scope, hrefs, base, page);
            budget.check()?;
            budget.links(output.links.len());
            budget.spend(output.links.iter().map(String::len).sum());
            budget.check()?;
        }
        if want.next
            && let (Some(pagination), Some(page)) = (&self.pagination, page)
        {
            let hrefs = elements()
                .filter(|e| pagination.next.matches(e, None, &mut caches))
                .filter_map(|e| e.attr("href"));
            output.next_page = next_of(hrefs, base, page);
            budget.check()?;
        }
        Ok(output)
    }

    fn item_of<'t, N: Tree<'t>>(
        &self,
        root: N,
        base: Option<&Url>,
        caches: &mut SelectorCaches,
        budget: &Budget,
    ) -> Result<Option<Item>, LimitError> {
        let scope = Some(root.opaque());
        let mut item = Map::with_capacity(self.fields.len());
        for field in &self.fields {
            let mut values = root
                .descendants()
                .take_while(|_| budget.visit())
                .filter(|e| field.selector.matches(e, scope, caches))
                .filter_map(|element| value_of(field, element, base));
            let value = if field.all {
                let mut all = Vec::new();
                for value in values {
                    if !budget.spend(value.len()) {
                        break;
                    }
                    all.push(Value::String(value));
                }
                (!all.is_empty()).then_some(Value::Array(all))
            } else {
                values
                    .next()
                    .filter(|value| budget.spend(value.len()))
                    .map(Value::String)
            };
            budget.check()?;
            match value {
                Some(value) => {
                    item.insert(field.name.clone(), value);
                }
                None if field.required => return Ok(None),
                None => {
                    item.insert(
                        field.name.clone(),
                        field.default.clone().unwrap_or(Value::Null),
                    );
                }
            }
        }
        Ok(Some(item))
    }
}

/// The document's base URL: the first `<base href>` resolved against the page's URL (a
/// browser's "frozen base URL"), else the page's URL.
fn document_base<'t, N: Tree<'t>>(root: N, page: Option<&Url>, budget: &Budget) -> Option<Url> {
    let page = page?;
    let href = std::iter::once(root)
        .chain(root.descendants())
        .take_while(|_| budget.visit())
        .filter(|e| e.html_name() == Some("base"))
        .find_map(|e| e.attr("href"));
    let Some(href) = href else {
        return Some(page.clone());
    };
    match page.join(href) {
        Ok(url) if !matches!(url.scheme(), "data" | "javascript") => Some(url),
        _ => Some(page.clone()),
    }
}

/// Raw link values made absolute, kept when in scope of the page, deduplicated, in order.
fn scoped_links<'a>(
    scope: &LinkScope,
    hrefs: impl Iterator<Item = &'a str>,
    base: Option<&Url>,
    page: &Url,
) -> Vec<String> {
    let base = base.unwrap_or(page);
    let mut seen = HashSet::new();
    hrefs
        .filter_map(|href| resolve(base, href))
        .filter(|url| in_scope(scope, page, url))
        .map(String::from)
        .filter(|url| seen.insert(url.clone()))
        .collect()
}

/// The first next-page `href` that resolves to another page.
fn next_of<'a>(
    mut hrefs: impl Iterator<Item = &'a str>,
    base: Option<&Url>,
    page: &Url,
) -> Option<String> {
    let base = base.unwrap_or(page);
    hrefs
        .find_map(|href| resolve(base, href))
        .filter(|url| url != page)
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

fn value_of<'t, N: Tree<'t>>(field: &Field, element: N, base: Option<&Url>) -> Option<String> {
    let raw = match &field.extract {
        Extract::Text => {
            let mut text = String::new();
            element.text(&mut text);
            text
        }
        Extract::Attr(name) => element.attr(name)?.trim().to_owned(),
        Extract::Html => element.markup(true),
        Extract::InnerHtml => element.markup(false),
    };
    clean_value(field, raw, base)
}

/// The cleaning every value goes through: whitespace collapsed (text fields), the regex
/// capture, URL resolution. `None` when the regex does not match.
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

/// Runs of whitespace (Unicode's, so non-breaking spaces too) collapsed to one space, trimmed.
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

fn in_scope(scope: &LinkScope, page: &Url, url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match scope {
        LinkScope::Any => true,
        LinkScope::SameHost => url.host_str() == page.host_str(),
        LinkScope::SameDomain => {
            let domain = |h: &str| psl::domain_str(h).map_or_else(|| h.to_owned(), str::to_owned);
            domain(&host) == domain(&page.host_str().unwrap_or_default().to_ascii_lowercase())
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
        let template = template();
        let base = "https://www.example.com/list";
        let expected = PageOutput {
            items: template.extract_with_dom(PAGE, Url::parse(base).ok().as_ref()),
            links: template.links(PAGE, base),
            next_page: template.next_page(PAGE, base),
        };
        assert_eq!(template.analyse(PAGE, base), expected);
        assert_eq!(template.analyse_with_dom(PAGE, base), expected);
        for cut in [10, PAGE.len() / 3, PAGE.len() - 40] {
            assert_eq!(
                template.analyse(&PAGE[..cut], base),
                template.analyse_with_dom(&PAGE[..cut], base),
                "cut at {cut}"
            );
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
