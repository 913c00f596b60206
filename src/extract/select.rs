//! CSS selectors: compiled once when a template loads, matched on either engine's tree with
//! the same code (the `selectors` crate behind scraper, with scraper's selector dialect).

use scraper::selector::{Parser, Simple};
use selectors::context::{
    MatchingContext, MatchingForInvalidation, MatchingMode, NeedsSelectorFlags, QuirksMode,
    SelectorCaches,
};
use selectors::parser::{ParseRelative, SelectorList, SelectorParseErrorKind};
use selectors::{Element, OpaqueElement};

/// What is wrong with a selector, in words (the parser's own messages name its internals:
/// "Unexpected error occurred. Please report this to the developer", `ClassNeedsIdent`).
fn describe(kind: &cssparser::ParseErrorKind<SelectorParseErrorKind>) -> &'static str {
    use SelectorParseErrorKind as Custom;
    use cssparser::{BasicParseErrorKind as Basic, ParseErrorKind};
    match kind {
        ParseErrorKind::Basic(Basic::UnexpectedToken) => {
            "it has a character or word that is not valid there"
        }
        ParseErrorKind::Basic(Basic::EndOfInput) => {
            "it ends too early (an unclosed bracket, quote or parenthesis?)"
        }
        ParseErrorKind::Basic(Basic::TooManyNestedBlocks) => "it is nested too deeply",
        ParseErrorKind::Basic(_) => "it is not a selector",
        ParseErrorKind::Custom(custom) => match custom {
            Custom::EmptySelector => "it is empty, or has an empty part between commas",
            Custom::DanglingCombinator => "a combinator (>, +, ~) must be followed by a selector",
            Custom::ClassNeedsIdent => "a '.' must be followed by a class name, e.g. .price",
            Custom::NoQualifiedNameInAttributeSelector
            | Custom::UnexpectedTokenInAttributeSelector => {
                "an attribute selector must look like [name], [name=value] or [name^=\"value\"]"
            }
            Custom::BadValueInAttr => {
                "an attribute value must be a name or a quoted string, e.g. [rel=\"next\"]"
            }
            Custom::ExpectedNamespace
            | Custom::ExpectedBarInAttr
            | Custom::InvalidQualNameInAttr
            | Custom::ExplicitNamespaceUnexpectedToken => {
                "namespace prefixes (ns|name) are not supported"
            }
            Custom::PseudoElementExpectedColon
            | Custom::PseudoElementExpectedIdent
            | Custom::NoIdentForPseudo => {
                "a ':' must be followed by a pseudo-class name, e.g. :first-child"
            }
            Custom::UnsupportedPseudoClassOrElement => {
                "it uses a pseudo-class or pseudo-element that is not supported \
                 (supported: :first-child, :nth-child(), :not(), :has(), :is(), ...)"
            }
            Custom::NonCompoundSelector => "that pseudo-class takes a simple selector only",
            Custom::NonPseudoElementAfterSlotted
            | Custom::InvalidPseudoElementAfterSlotted
            | Custom::InvalidPseudoElementInsideWhere
            | Custom::InvalidState => "a pseudo-class or pseudo-element is not allowed there",
            Custom::UnexpectedIdent => "it has a name where none is expected",
        },
    }
}

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
            .map_err(|error| describe(&error.kind).to_owned())
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
