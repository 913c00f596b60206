//! What each field of a template found on one page, for trying a template out
//! (`scraperv4 parse`, `Template.check`): a field that matched nothing is the usual mistake,
//! and a field whose selector matches the page but never inside an item is the other one
//! (selectors are relative to each item).

use selectors::Element;
use selectors::context::SelectorCaches;
use serde::Serialize;

use super::dom;
use super::engine::Tree;
use super::template::Template;

/// One field's matches on a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldReport {
    /// The field's name.
    pub name: String,
    /// The selector as written.
    pub selector: String,
    /// Item elements (the item selector's matches; 1 without one) where the selector
    /// matched at least one element.
    pub items_matched: usize,
    /// Elements of the whole page the selector matches, inside items or not.
    pub page_matches: usize,
}

/// What a template found on one page, field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageReport {
    /// Elements the item selector matched (1 without an item selector: the page).
    pub item_elements: usize,
    /// One report per field, in the template's order.
    pub fields: Vec<FieldReport>,
}

impl Template {
    /// Each field's matches on `html` (parsed by the DOM engine: a diagnostic, not a hot
    /// path).
    pub fn field_report(&self, html: &str) -> PageReport {
        let document = dom::parse(html);
        let root = document.root_element();
        let mut caches = SelectorCaches::default();
        let elements = || std::iter::once(root).chain(root.descendants());
        let items: Vec<_> = match &self.item {
            Some(selector) => elements()
                .filter(|e| selector.matches(e, None, &mut caches))
                .collect(),
            None => vec![root],
        };
        let fields = self
            .fields
            .iter()
            .map(|field| {
                let items_matched = items
                    .iter()
                    .filter(|item| {
                        let scope = Some(item.opaque());
                        item.descendants()
                            .any(|e| field.selector.matches(&e, scope, &mut caches))
                    })
                    .count();
                let page_matches = elements()
                    .filter(|e| field.selector.matches(e, None, &mut caches))
                    .count();
                FieldReport {
                    name: field.name.clone(),
                    selector: field.selector.as_str().to_owned(),
                    items_matched,
                    page_matches,
                }
            })
            .collect();
        PageReport {
            item_elements: items.len(),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_outside_the_items_is_told_apart_from_one_matching_nothing() {
        let template = Template::from_json(
            r#"{"id": "t", "item": "div.card", "fields": [
                {"name": "name", "selector": "h2"},
                {"name": "canonical", "selector": "link[rel=canonical]", "extract": "attr:href"},
                {"name": "sku", "selector": ".sku"}]}"#,
            "test",
        )
        .unwrap();
        let html = r#"<html><head><link rel="canonical" href="/c"></head><body>
            <div class="card"><h2>A</h2></div><div class="card"><h2>B</h2></div></body></html>"#;
        let report = template.field_report(html);
        assert_eq!(report.item_elements, 2);
        let by_name = |name: &str| report.fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!(
            (by_name("name").items_matched, by_name("name").page_matches),
            (2, 2)
        );
        assert_eq!(
            (
                by_name("canonical").items_matched,
                by_name("canonical").page_matches
            ),
            (0, 1)
        );
        assert_eq!(
            (by_name("sku").items_matched, by_name("sku").page_matches),
            (0, 0)
        );
    }
}
