//! What a `text` field means, the same for both engines (and stated in `docs/templates.md`).
//!
//! The text of an element is the text of its descendants in document order, as a browser's
//! `textContent` gives it, except that
//! - the content of `script`, `style`, `template` and `noscript` elements below the selected
//!   element is left out (selecting one of them gives its own content);
//! - the start and end of every block-level HTML element and every `<br>` separate words (as
//!   `innerText` would, without style sheets): `<p>a</p><p>b</p>` gives `a b`, while inline
//!   elements join (`<b>a</b>b` gives `ab`);
//! - whitespace (including non-breaking spaces) is collapsed to single spaces and trimmed
//!   when the value is cleaned.

/// Elements whose content is not part of an enclosing element's text.
pub const SKIPPED: [&str; 4] = ["script", "style", "template", "noscript"];

/// HTML elements whose boundaries separate words: the HTML standard's rendering section gives
/// them a block-level, list-item, table or line-break display.
pub const BLOCKS: [&str; 56] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "caption",
    "center",
    "col",
    "colgroup",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "html",
    "legend",
    "li",
    "listing",
    "main",
    "menu",
    "nav",
    "ol",
    "optgroup",
    "option",
    "p",
    "pre",
    "search",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
    "plaintext",
    "xmp",
];

pub(crate) fn is_skipped(name: &str) -> bool {
    SKIPPED.contains(&name)
}

pub(crate) fn is_block(name: &str) -> bool {
    BLOCKS.contains(&name)
}
