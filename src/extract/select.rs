//! CSS selectors: compiled once when a template loads, matched on either engine's tree with
//! the same code (the `selectors` crate behind scraper, with scraper's selector dialect).

use scraper::selector::{Parser, Simple};
use selectors::context::{
    MatchingContext, MatchingForInvalidation, MatchingMode, NeedsSelectorFlags, QuirksMode,
    SelectorCaches,
};
use selectors::parser::{ParseRelative, SelectorList};
use selectors::{Element, OpaqueElement};

/// A compiled selector list (`a, b` included).
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    list: SelectorList<Simple>,
}

impl Selector {
    /// Compiles `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parser = cssparser::Parser::new(text);
        SelectorList::parse(&Parser, &mut parser, ParseRelative::No)
            .map(|list| Self {
                text: text.to_owned(),
                list,
            })
            .map_err(|error| scraper::error::SelectorErrorKind::from(error).to_string())
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `element` matches; `scope` is the element `:scope` refers to (the item).
    pub(crate) fn matches<E: Element<Impl = Simple>>(
        &self,
        element: &E,
        scope: Option<OpaqueElement>,
        caches: &mut SelectorCaches,
    ) -> bool {
        let mut context = MatchingContext::new(
            MatchingMode::Normal,
            None,
            caches,
            QuirksMode::NoQuirks,
            NeedsSelectorFlags::No,
            MatchingForInvalidation::No,
        );
        context.scope_element = scope;
        selectors::matching::matches_selector_list(&self.list, element, &mut context)
    }
}
