//! The fast engine: the HTML standard's tokenizer and tree construction for ordinary pages,
//! building a compact tree in one pass over the page (names, attribute values and text
//! borrowed from it), which selectors then match exactly as on the DOM engine's tree.
//!
//! It gives the same tree as html5ever or none: a page that needs a rule it does not carry
//! out (see [`tree`]) comes back as a [`Fallback`] and is parsed by html5ever instead.

mod node;
mod tags;
mod tokenizer;
mod tree;

use std::borrow::Cow;
use std::fmt::Write;

use node::{Data, NONE};
pub(crate) use node::{Document, FastNode};

use super::engine::Tree;
use super::text::{is_block, is_skipped};

/// Why a page went to the DOM engine (a bounded set: these are metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// Misnested formatting elements the adoption agency algorithm must move.
    MisnestedFormatting,
    /// Content inside a table where it cannot be (moved before the table).
    FosterParenting,
    /// A `<template>` element.
    Template,
    /// A `<frameset>` page.
    Frameset,
    /// A `<plaintext>` element.
    Plaintext,
    /// Attributes of a second `<html>` or `<body>` tag merged into the first.
    AttributeMerge,
    /// A table inside an open paragraph under a legacy doctype (quirks mode decides).
    Quirks,
    /// MathML `annotation-xml` content.
    ForeignContent,
    /// NUL characters in the page.
    NullCharacter,
    /// A byte order mark after the first character (html5ever drops one after each
    /// `</script>` and `<meta charset>`).
    ByteOrderMark,
    /// A character reference or `</>` right after `<pre>`, `<listing>` or `<textarea>`
    /// (whether html5ever drops a newline there depends on its parse errors).
    LeadingNewline,
    /// A token the builder did not expect in its state.
    Unexpected,
    /// Not a fallback: elements nested deeper than [`MAX_DEPTH`]. Building such a tree
    /// costs time quadratic in its depth in either engine (every start tag searches the
    /// open elements), so the page is refused instead ([`super::LimitError::Depth`]).
    TooDeep,
}

/// The deepest nesting of open elements a page may have (browsers' parsers stop nesting at
/// 512; real pages stay far below).
pub const MAX_DEPTH: usize = 1024;

impl Fallback {
    /// Every reason, in a fixed order.
    pub const ALL: [Fallback; 13] = [
        Self::MisnestedFormatting,
        Self::FosterParenting,
        Self::Template,
        Self::Frameset,
        Self::Plaintext,
        Self::AttributeMerge,
        Self::Quirks,
        Self::ForeignContent,
        Self::NullCharacter,
        Self::ByteOrderMark,
        Self::LeadingNewline,
        Self::Unexpected,
        Self::TooDeep,
    ];

    /// The reason's name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MisnestedFormatting => "misnested_formatting",
            Self::FosterParenting => "foster_parenting",
            Self::Template => "template",
            Self::Frameset => "frameset",
            Self::Plaintext => "plaintext",
            Self::AttributeMerge => "attribute_merge",
            Self::Quirks => "quirks",
            Self::ForeignContent => "foreign_content",
            Self::NullCharacter => "null_character",
            Self::ByteOrderMark => "byte_order_mark",
            Self::LeadingNewline => "leading_newline",
            Self::Unexpected => "unexpected",
            Self::TooDeep => "too_deep",
        }
    }
}

/// The page as the tokenizer reads it: newlines normalised (CR LF and CR become LF).
pub(crate) fn prepare(html: &str) -> Result<Cow<'_, str>, Fallback> {
    if memchr::memchr(0, html.as_bytes()).is_some() {
        return Err(Fallback::NullCharacter);
    }
    let after_first = html.chars().next().map_or(0, char::len_utf8);
    if memchr::memmem::find(&html.as_bytes()[after_first..], "\u{feff}".as_bytes()).is_some() {
        return Err(Fallback::ByteOrderMark);
    }
    if memchr::memchr(b'\r', html.as_bytes()).is_none() {
        return Ok(Cow::Borrowed(html));
    }
    Ok(Cow::Owned(html.replace("\r\n", "\n").replace('\r', "\n")))
}

/// The tree of a prepared page.
pub(crate) fn parse(html: &str) -> Result<Document<'_>, Fallback> {
    tree::build(html)
}

impl<'d, 'a: 'd> Tree<'d> for FastNode<'d, 'a> {
    /// The elements below this one, in document order.
    fn descendants(self) -> impl Iterator<Item = Self> + 'd {
        let doc = self.doc;
        let end = doc.nodes[self.index as usize].subtree_end;
        (self.index + 1..=end).filter_map(move |index| doc.node(index))
    }

    fn html_name(self) -> Option<&'d str> {
        match &self.doc.nodes[self.index as usize].data {
            Data::Element {
                ns: tags::Ns::Html,
                name,
                ..
            } => Some(name),
            _ => None,
        }
    }

    fn attr(self, name: &str) -> Option<&'d str> {
        FastNode::attr(&self, name)
    }

    fn markup(self, _outer: bool) -> String {
        // Templates with HTML fields are served by the DOM engine only (`needs_dom`).
        String::new()
    }

    /// Appends the element's text (the rule of [`super::text`]) to `out`.
    fn text(self, out: &mut String) {
        let nodes = &self.doc.nodes;
        let end = nodes[self.index as usize].subtree_end;
        // Ends of the open block elements whose end still has to separate words.
        let mut block_ends: Vec<u32> = Vec::new();
        let mut index = self.index + 1;
        while index <= end {
            while block_ends.last().is_some_and(|&e| e < index) {
                block_ends.pop();
                out.push(' ');
            }
            let node = &nodes[index as usize];
            match &node.data {
                Data::Text(text) => out.push_str(text),
                Data::Element { ns, name, .. } => {
                    if is_skipped(name) {
                        index = node.subtree_end + 1;
                        continue;
                    }
                    if *ns == tags::Ns::Html && is_block(name) {
                        out.push(' ');
                        block_ends.push(node.subtree_end);
                    }
                }
                Data::Document => {}
            }
            index += 1;
        }
    }
}

/// A canonical dump of the tree, for comparing the engines' trees (and a browser's) in
/// tests: `<Ns:name Ns:attr="value"...>` with attributes sorted, text, `</Ns:name>`; `&`,
/// `<` and `"` escaped.
pub(crate) fn dump(doc: &Document<'_>) -> String {
    let mut out = String::new();
    let mut closes: Vec<(u32, String)> = Vec::new();
    for (index, node) in doc.nodes.iter().enumerate().skip(1) {
        let index = u32::try_from(index).unwrap_or(NONE);
        while closes.last().is_some_and(|(end, _)| *end < index) {
            if let Some((_, name)) = closes.pop() {
                let _ = write!(out, "</{name}>");
            }
        }
        match &node.data {
            Data::Element { ns, name, .. } => {
                let mut attrs: Vec<String> = doc
                    .attrs_of(index)
                    .iter()
                    .map(|a| format!(" {:?}:{}=\"{}\"", a.ns, a.name, escape(&a.value)))
                    .collect();
                attrs.sort();
                let _ = write!(out, "<{ns:?}:{name}{}>", attrs.concat());
                closes.push((node.subtree_end, format!("{ns:?}:{name}")));
            }
            Data::Text(text) => out.push_str(&escape(text)),
            Data::Document => {}
        }
    }
    while let Some((_, name)) = closes.pop() {
        let _ = write!(out, "</{name}>");
    }
    out
}

/// `&`, `<` and `"` escaped (the dump's only escapes).
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}
