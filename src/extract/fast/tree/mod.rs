//! The HTML standard's tree construction for the markup ordinary pages use, rule for rule as
//! html5ever (the DOM engine) applies it: implied `html`/`head`/`body`, implied end tags and
//! optional tags (`li`, `dt`/`dd`, `p`, `option`/`optgroup`, table sections, `tr`, `td`/`th`,
//! `rb`/`rt`/`rp`), tables and their implied `tbody`/`tr`, the active formatting elements
//! (reconstruction, the simple cases of the adoption agency algorithm such as a nested `<a>`),
//! forms, raw text elements, and SVG/MathML content.
//!
//! Where a page needs a rule this builder does not carry out — misnested formatting elements
//! that the adoption agency must move, foster parenting out of a table, `<template>`,
//! framesets, `<plaintext>`, attributes merged into `<html>`/`<body>`, a quirks-mode decision
//! on a legacy doctype — it stops with a [`Fallback`] and the page goes to the DOM engine.
//! Everything it does carry out produces the same tree as html5ever (checked by the
//! differential tests and fuzz target).
//!
//! One file per group of insertion modes: the modes before the body and the head ([`head`]),
//! the body ([`body`]), tables ([`table`]), the active formatting elements ([`formatting`]),
//! SVG and MathML ([`foreign`]), text in every mode ([`text`]); this file holds the tree
//! operations, the scopes and the dispatch of tokens to modes.
//!
//! Element and attribute names are passed as `&Cow` on purpose: they are cloned into the
//! tree, and a borrowed name stays borrowed from the page.
#![allow(clippy::ptr_arg)]

mod body;
mod foreign;
mod formatting;
mod head;
mod table;
mod text;

use std::borrow::Cow;

use super::node::{Attr, Data, Document};
use super::tags::{AttrNs, Ns, Tag, foreign_attribute, svg_attribute_name};
use super::tokenizer::{Quirks, Token, Tokenizer};
use super::{Fallback, MAX_DEPTH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Initial,
    BeforeHtml,
    BeforeHead,
    InHead,
    AfterHead,
    InBody,
    Text,
    InTable,
    InCaption,
    InColumnGroup,
    InTableBody,
    InRow,
    InCell,
    AfterBody,
    AfterAfterBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Formatting {
    Marker,
    Element(u32),
}

enum Flow {
    Done,
    Reprocess(Mode),
}

type Step = Result<Flow, Fallback>;

/// Builds the tree of `html` (newlines already normalised, no NUL characters).
pub(crate) fn build(html: &str) -> Result<Document<'_>, Fallback> {
    let html = html.strip_prefix('\u{feff}').unwrap_or(html);
    let mut builder = Builder {
        doc: Document::new(html.len() / 24 + 16),
        tok: Tokenizer::new(html),
        stack: Vec::with_capacity(32),
        formatting: Vec::new(),
        mode: Mode::Initial,
        original_mode: Mode::InBody,
        head: None,
        form: None,
        quirks: Quirks::Yes,
        ignore_lf: false,
        after_head_whitespace: Vec::new(),
    };
    loop {
        let cdata = builder
            .stack
            .last()
            .is_some_and(|&n| builder.ns(n) != Ns::Html);
        let token = builder.tok.next_token(cdata);
        let ignore_lf = std::mem::take(&mut builder.ignore_lf);
        match token {
            Token::Eof => break,
            Token::Text(text) => {
                let text = if ignore_lf && text.starts_with('\n') {
                    slice_from(text, 1)
                } else {
                    text
                };
                builder.text(text)?;
            }
            Token::Start { name, self_closing } => {
                builder.start(&name, self_closing)?;
                builder.check_depth()?;
            }
            Token::End { name } => builder.end(&name)?,
            Token::Comment => {}
            Token::Doctype(quirks) => {
                if builder.mode == Mode::Initial {
                    builder.quirks = quirks;
                    builder.mode = Mode::BeforeHtml;
                }
            }
        }
    }
    builder.eof();
    builder.doc.finish();
    Ok(builder.doc)
}

fn slice_from(text: Cow<'_, str>, from: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[from..]),
        Cow::Owned(s) => Cow::Owned(s[from..].to_owned()),
    }
}

fn is_ascii_whitespace(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

/// The text split after its leading ASCII whitespace.
fn split_whitespace(text: &Cow<'_, str>) -> usize {
    text.bytes()
        .position(|b| !is_ascii_whitespace(b))
        .unwrap_or(text.len())
}
pub(super) struct Builder<'a> {
    doc: Document<'a>,
    tok: Tokenizer<'a>,
    stack: Vec<u32>,
    formatting: Vec<Formatting>,
    mode: Mode,
    original_mode: Mode,
    head: Option<u32>,
    form: Option<u32>,
    quirks: Quirks,
    ignore_lf: bool,
    /// See [`Builder::flush_after_head_whitespace`].
    after_head_whitespace: Vec<Cow<'a, str>>,
}

impl<'a> Builder<'a> {
    // ---- the tree ------------------------------------------------------------------------

    fn ns(&self, node: u32) -> Ns {
        self.doc.element(node).map_or(Ns::Html, |(ns, _, _)| ns)
    }

    /// The HTML tag of `node` (`Other` for foreign elements).
    fn tag(&self, node: u32) -> Tag {
        match self.doc.element(node) {
            Some((Ns::Html, tag, _)) => tag,
            _ => Tag::Other,
        }
    }

    fn is(&self, node: u32, tag: Tag) -> bool {
        self.tag(node) == tag
    }

    fn current(&self) -> u32 {
        self.stack.last().copied().unwrap_or(0)
    }

    fn current_is(&self, tag: Tag) -> bool {
        self.stack.last().is_some_and(|&n| self.is(n, tag))
    }

    /// Whitespace between `</head>` and the body belongs to `html`, after `head`; it is added
    /// when the body starts, because a `<meta>`, `<title>`, ... in between still goes into
    /// `head`, which must stay one contiguous range of nodes.
    fn flush_after_head_whitespace(&mut self, html: u32) {
        for text in std::mem::take(&mut self.after_head_whitespace) {
            self.doc.append(html, Data::Text(text));
        }
    }

    fn append_text(&mut self, text: Cow<'a, str>) {
        if !text.is_empty() {
            let parent = self.current();
            self.doc.append(parent, Data::Text(text));
        }
    }

    /// The newline right after `<pre>`, `<listing>` (`data`) or `<textarea>` is dropped. Where
    /// html5ever's parse errors decide whether it is (a character reference, or `</>` in
    /// data, next), the page goes to html5ever.
    fn ignore_leading_newline(&mut self, data: bool) -> Result<(), Fallback> {
        let rest = self.tok.rest();
        if rest.starts_with('&') || (data && rest.starts_with("</>")) {
            return Err(Fallback::LeadingNewline);
        }
        self.ignore_lf = true;
        Ok(())
    }

    /// Inserts an element with `attrs` (a range of `doc.attrs`) at the current node.
    fn insert_with(
        &mut self,
        ns: Ns,
        tag: Tag,
        name: Cow<'a, str>,
        attrs: (u32, u32),
        push: bool,
    ) -> u32 {
        let parent = self.current();
        if self.stack.first() == Some(&parent) {
            self.flush_after_head_whitespace(parent);
        }
        let index = self.doc.append(
            parent,
            Data::Element {
                ns,
                tag: if ns == Ns::Html { tag } else { Tag::Other },
                name,
                attrs,
            },
        );
        if push {
            self.stack.push(index);
        }
        index
    }

    /// [`MAX_DEPTH`] open elements at most.
    fn check_depth(&self) -> Result<(), Fallback> {
        if self.stack.len() > MAX_DEPTH {
            return Err(Fallback::TooDeep);
        }
        Ok(())
    }

    /// Moves the current start tag's attributes into the document (adjusted for `ns`).
    fn take_attrs(&mut self, ns: Ns) -> (u32, u32) {
        let start = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
        for raw in self.tok.attrs.drain(..) {
            let mut attr = Attr {
                ns: AttrNs::None,
                name: raw.name,
                value: raw.value,
            };
            if ns != Ns::Html {
                let adjusted = match ns {
                    Ns::Svg => svg_attribute_name(&attr.name),
                    _ if attr.name == "definitionurl" => Some("definitionURL"),
                    _ => None,
                };
                if let Some(name) = adjusted {
                    attr.name = Cow::Borrowed(name);
                }
                if let Some((attr_ns, _prefix, local)) = foreign_attribute(&attr.name) {
                    attr.ns = attr_ns;
                    attr.name = Cow::Borrowed(local);
                }
            }
            self.doc.attrs.push(attr);
        }
        let end = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
        (start, end)
    }

    /// Inserts the current start tag as an HTML element.
    fn insert(&mut self, tag: Tag, name: &Cow<'a, str>) -> u32 {
        let attrs = self.take_attrs(Ns::Html);
        self.insert_with(Ns::Html, tag, name.clone(), attrs, true)
    }

    /// Inserts the current start tag as an HTML element that is closed at once.
    fn insert_void(&mut self, tag: Tag, name: &Cow<'a, str>) -> u32 {
        let attrs = self.take_attrs(Ns::Html);
        self.insert_with(Ns::Html, tag, name.clone(), attrs, false)
    }

    /// Inserts an element the markup implies (no attributes).
    fn insert_phantom(&mut self, tag: Tag) -> u32 {
        let end = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
        self.insert_with(Ns::Html, tag, Cow::Borrowed(tag.name()), (end, end), true)
    }

    fn pop(&mut self) {
        self.stack.pop();
    }

    fn remove_from_stack(&mut self, node: u32) {
        if let Some(at) = self.stack.iter().rposition(|&n| n == node) {
            self.stack.remove(at);
        }
    }

    /// Pops until an element satisfying `found` has been popped.
    fn pop_until(&mut self, found: impl Fn(&Self, u32) -> bool) {
        while let Some(node) = self.stack.pop() {
            if found(self, node) {
                break;
            }
        }
    }

    fn pop_until_tag(&mut self, tag: Tag) {
        self.pop_until(|b, n| b.is(n, tag));
    }

    /// Pops until the current node is in `set` (table contexts).
    fn pop_until_current(&mut self, set: &[Tag]) {
        while let Some(&node) = self.stack.last() {
            if set.contains(&self.tag(node)) {
                break;
            }
            self.stack.pop();
        }
    }

    // ---- scopes --------------------------------------------------------------------------

    fn is_integration_point(&self, node: u32) -> bool {
        match self.doc.element(node) {
            Some((Ns::MathMl, _, name)) => matches!(name, "mi" | "mo" | "mn" | "ms" | "mtext"),
            Some((Ns::Svg, _, name)) => matches!(name, "foreignObject" | "desc" | "title"),
            _ => false,
        }
    }

    fn default_scope(&self, node: u32) -> bool {
        matches!(
            self.tag(node),
            Tag::Applet
                | Tag::Caption
                | Tag::Html
                | Tag::Table
                | Tag::Td
                | Tag::Th
                | Tag::Marquee
                | Tag::Object
                | Tag::Select
                | Tag::Template
        ) || self.is_integration_point(node)
    }

    fn in_scope_with(
        &self,
        scope: impl Fn(&Self, u32) -> bool,
        found: impl Fn(&Self, u32) -> bool,
    ) -> bool {
        for &node in self.stack.iter().rev() {
            if found(self, node) {
                return true;
            }
            if scope(self, node) {
                return false;
            }
        }
        false
    }

    fn in_scope(&self, tag: Tag) -> bool {
        self.in_scope_with(Self::default_scope, |b, n| b.is(n, tag))
    }

    fn in_button_scope(&self, tag: Tag) -> bool {
        self.in_scope_with(
            |b, n| b.default_scope(n) || b.is(n, Tag::Button),
            |b, n| b.is(n, tag),
        )
    }

    fn in_list_item_scope(&self, tag: Tag) -> bool {
        self.in_scope_with(
            |b, n| b.default_scope(n) || matches!(b.tag(n), Tag::Ol | Tag::Ul),
            |b, n| b.is(n, tag),
        )
    }

    fn in_table_scope(&self, found: impl Fn(Tag) -> bool) -> bool {
        self.in_scope_with(
            |b, n| matches!(b.tag(n), Tag::Html | Tag::Table | Tag::Template),
            |b, n| found(b.tag(n)),
        )
    }

    fn in_stack(&self, tag: Tag) -> bool {
        self.stack.iter().any(|&n| self.is(n, tag))
    }

    // ---- implied end tags ----------------------------------------------------------------

    fn generate_implied_end_tags(&mut self, except: Option<Tag>) {
        while let Some(&node) = self.stack.last() {
            let tag = self.tag(node);
            if !tag.is_cursory_implied_end() || Some(tag) == except {
                return;
            }
            self.stack.pop();
        }
    }

    fn close_p_element(&mut self) {
        self.generate_implied_end_tags(Some(Tag::P));
        self.pop_until_tag(Tag::P);
    }

    fn close_p_in_button_scope(&mut self) {
        if self.in_button_scope(Tag::P) {
            self.close_p_element();
        }
    }

    // ---- tokens to modes -----------------------------------------------------------------

    /// The end of the input: the modes before the body still imply `html`, `head`, `body`.
    fn eof(&mut self) {
        loop {
            match self.mode {
                Mode::Initial => {
                    self.quirks = Quirks::Yes;
                    self.mode = Mode::BeforeHtml;
                }
                Mode::BeforeHtml => {
                    self.create_root(false);
                    self.mode = Mode::BeforeHead;
                }
                Mode::BeforeHead => {
                    self.head = Some(self.insert_phantom(Tag::Head));
                    self.mode = Mode::InHead;
                }
                Mode::InHead => {
                    self.pop();
                    self.mode = Mode::AfterHead;
                }
                Mode::AfterHead => {
                    self.insert_phantom(Tag::Body);
                    self.mode = Mode::InBody;
                }
                Mode::Text => {
                    self.pop();
                    self.mode = self.original_mode;
                }
                _ => return,
            }
        }
    }

    /// A start tag, in the current mode (or as foreign content).
    fn start(&mut self, name: &Cow<'a, str>, self_closing: bool) -> Result<(), Fallback> {
        let tag = Tag::of(name);
        if self.is_foreign_start(name) {
            return self.foreign_start(tag, name, self_closing);
        }
        let mut mode = self.mode;
        loop {
            match self.start_in(mode, tag, name, self_closing)? {
                Flow::Done => return Ok(()),
                Flow::Reprocess(next) => {
                    self.mode = next;
                    mode = next;
                    if self.is_foreign_start(name) {
                        return self.foreign_start(tag, name, self_closing);
                    }
                }
            }
        }
    }

    /// An end tag, in the current mode (or as foreign content).
    fn end(&mut self, name: &Cow<'a, str>) -> Result<(), Fallback> {
        let tag = Tag::of(name);
        if self.stack.last().is_some_and(|&n| self.ns(n) != Ns::Html) {
            return self.foreign_end(tag, name);
        }
        self.end_html(tag, name)
    }

    /// An end tag processed by the HTML rules of the current mode.
    fn end_html(&mut self, tag: Tag, name: &Cow<'a, str>) -> Result<(), Fallback> {
        let mut mode = self.mode;
        loop {
            match self.end_in(mode, tag, name)? {
                Flow::Done => return Ok(()),
                Flow::Reprocess(next) => {
                    self.mode = next;
                    mode = next;
                }
            }
        }
    }

    fn start_in(&mut self, mode: Mode, tag: Tag, name: &Cow<'a, str>, self_closing: bool) -> Step {
        match mode {
            Mode::Initial | Mode::BeforeHtml | Mode::BeforeHead | Mode::AfterHead => {
                self.start_before_body(mode, tag, name, self_closing)
            }
            Mode::InHead => self.start_in_head(tag, name, self_closing),
            Mode::InBody => self.start_in_body(tag, name, self_closing),
            Mode::Text => Err(Fallback::Unexpected),
            Mode::InTable => self.start_in_table(tag, name, self_closing),
            Mode::InCaption => self.start_in_caption(tag, name, self_closing),
            Mode::InColumnGroup => self.start_in_column_group(tag, name, self_closing),
            Mode::InTableBody => self.start_in_table_body(tag, name, self_closing),
            Mode::InRow => self.start_in_row(tag, name, self_closing),
            Mode::InCell => self.start_in_cell(tag, name, self_closing),
            Mode::AfterBody | Mode::AfterAfterBody => {
                if tag == Tag::Html {
                    return self.start_in_body(tag, name, self_closing);
                }
                Ok(Flow::Reprocess(Mode::InBody))
            }
        }
    }

    fn end_in(&mut self, mode: Mode, tag: Tag, name: &Cow<'a, str>) -> Step {
        match mode {
            Mode::Initial
            | Mode::BeforeHtml
            | Mode::BeforeHead
            | Mode::InHead
            | Mode::AfterHead => self.end_before_body(mode, tag),
            Mode::InBody => self.end_in_body(tag, name),
            Mode::Text => {
                self.pop();
                self.mode = self.original_mode;
                Ok(Flow::Done)
            }
            Mode::InTable => self.end_in_table(tag),
            Mode::InCaption => self.end_in_caption(tag, name),
            Mode::InColumnGroup => self.end_in_column_group(tag),
            Mode::InTableBody => self.end_in_table_body(tag),
            Mode::InRow => self.end_in_row(tag),
            Mode::InCell => self.end_in_cell(tag, name),
            Mode::AfterBody => {
                if tag == Tag::Html {
                    self.mode = Mode::AfterAfterBody;
                    return Ok(Flow::Done);
                }
                Ok(Flow::Reprocess(Mode::InBody))
            }
            Mode::AfterAfterBody => Ok(Flow::Reprocess(Mode::InBody)),
        }
    }
}
