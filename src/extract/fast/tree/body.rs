//! The "in body" insertion mode: implied end tags and optional tags, blocks and paragraphs,
//! lists, headings, forms, buttons, formatting elements, void and raw text elements,
//! `select`/`option`, ruby, and where SVG and MathML start.
#![allow(clippy::ptr_arg)]

use std::borrow::Cow;

use super::super::Fallback;
use super::super::tags::{Ns, Tag};
use super::super::tokenizer::{Quirks, RawKind};
use super::{Builder, Flow, Formatting, Mode, Step};

impl<'a> Builder<'a> {
    // One arm per rule of the standard's "in body" start tags, in its order.
    #[allow(clippy::too_many_lines)]
    pub(super) fn start_in_body(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match tag {
            Tag::Html => {
                let root = self.stack.first().copied();
                self.merge_attributes(root)?;
            }
            Tag::Base
            | Tag::Basefont
            | Tag::Bgsound
            | Tag::Link
            | Tag::Meta
            | Tag::Noframes
            | Tag::Script
            | Tag::Style
            | Tag::Template
            | Tag::Title => return self.start_in_head(tag, name, self_closing),
            Tag::Body => {
                let body = self
                    .stack
                    .get(1)
                    .copied()
                    .filter(|&n| self.is(n, Tag::Body));
                let target = body.filter(|_| self.stack.len() != 1);
                self.merge_attributes(target)?;
            }
            Tag::Frameset => return Err(Fallback::Frameset),
            _ if tag.is_block_start() => {
                self.close_p_in_button_scope();
                self.insert(tag, name);
            }
            _ if tag.is_heading() => {
                self.close_p_in_button_scope();
                if self.tag(self.current()).is_heading() {
                    self.pop();
                }
                self.insert(tag, name);
            }
            Tag::Pre | Tag::Listing => {
                self.close_p_in_button_scope();
                self.insert(tag, name);
                self.ignore_leading_newline(true)?;
            }
            Tag::Form => {
                if self.form.is_none() {
                    self.close_p_in_button_scope();
                    let node = self.insert(tag, name);
                    self.form = Some(node);
                } else {
                    self.tok.attrs.clear();
                }
            }
            Tag::Li | Tag::Dd | Tag::Dt => {
                let mut to_close = None;
                for &node in self.stack.iter().rev() {
                    let t = self.tag(node);
                    let closes = if tag == Tag::Li {
                        t == Tag::Li
                    } else {
                        matches!(t, Tag::Dd | Tag::Dt)
                    };
                    if closes {
                        to_close = Some(t);
                        break;
                    }
                    if t.is_special() && !matches!(t, Tag::Address | Tag::Div | Tag::P) {
                        break;
                    }
                }
                if let Some(t) = to_close {
                    self.generate_implied_end_tags(Some(t));
                    self.pop_until_tag(t);
                }
                self.close_p_in_button_scope();
                self.insert(tag, name);
            }
            Tag::Plaintext => return Err(Fallback::Plaintext),
            Tag::Button => {
                if self.in_scope(Tag::Button) {
                    self.generate_implied_end_tags(None);
                    self.pop_until_tag(Tag::Button);
                }
                self.reconstruct_formatting();
                self.insert(tag, name);
            }
            Tag::A => {
                if let Some((_, node)) = self.formatting_named(Tag::A) {
                    self.adoption_agency(Tag::A, "a")?;
                    if let Some(at) = self
                        .formatting
                        .iter()
                        .position(|&e| e == Formatting::Element(node))
                    {
                        self.formatting.remove(at);
                    }
                    self.remove_from_stack(node);
                }
                self.reconstruct_formatting();
                self.insert_formatting(tag, name);
            }
            _ if tag.is_formatting() => {
                self.reconstruct_formatting();
                self.insert_formatting(tag, name);
            }
            Tag::Nobr => {
                self.reconstruct_formatting();
                if self.in_scope(Tag::Nobr) {
                    self.adoption_agency(Tag::Nobr, "nobr")?;
                    self.reconstruct_formatting();
                }
                self.insert_formatting(tag, name);
            }
            Tag::Applet | Tag::Marquee | Tag::Object => {
                self.reconstruct_formatting();
                self.insert(tag, name);
                self.formatting.push(Formatting::Marker);
            }
            Tag::Table => {
                if self.quirks != Quirks::Yes && self.in_button_scope(Tag::P) {
                    if self.quirks == Quirks::Unknown {
                        return Err(Fallback::Quirks);
                    }
                    self.close_p_element();
                }
                self.insert(tag, name);
                self.mode = Mode::InTable;
            }
            Tag::Area | Tag::Br | Tag::Embed | Tag::Img | Tag::Keygen | Tag::Wbr => {
                self.reconstruct_formatting();
                self.insert_void(tag, name);
            }
            Tag::Image => {
                self.reconstruct_formatting();
                self.insert_void(Tag::Img, &Cow::Borrowed("img"));
            }
            Tag::Input => {
                if self.in_scope(Tag::Select) {
                    self.pop_until_tag(Tag::Select);
                }
                self.reconstruct_formatting();
                self.insert_void(tag, name);
            }
            Tag::Param | Tag::Source | Tag::Track => {
                self.insert_void(tag, name);
            }
            Tag::Hr => {
                self.close_p_in_button_scope();
                if self.in_scope(Tag::Select) {
                    self.generate_implied_end_tags(None);
                }
                self.insert_void(tag, name);
            }
            Tag::Textarea => {
                self.ignore_leading_newline(false)?;
                return Ok(self.raw_element(tag, name, RawKind::Rcdata));
            }
            Tag::Xmp => {
                self.close_p_in_button_scope();
                self.reconstruct_formatting();
                return Ok(self.raw_element(tag, name, RawKind::Rawtext));
            }
            Tag::Iframe | Tag::Noembed | Tag::Noscript => {
                return Ok(self.raw_element(tag, name, RawKind::Rawtext));
            }
            Tag::Select if self.in_scope(Tag::Select) => {
                self.pop_until_tag(Tag::Select);
                self.tok.attrs.clear();
            }
            Tag::Option | Tag::Optgroup => {
                if self.in_scope(Tag::Select) {
                    let except = (tag == Tag::Option).then_some(Tag::Optgroup);
                    self.generate_implied_end_tags(except);
                } else if self.current_is(Tag::Option) {
                    self.pop();
                }
                self.reconstruct_formatting();
                self.insert(tag, name);
            }
            Tag::Rb | Tag::Rtc => {
                if self.in_scope(Tag::Ruby) {
                    self.generate_implied_end_tags(None);
                }
                self.insert(tag, name);
            }
            Tag::Rp | Tag::Rt => {
                if self.in_scope(Tag::Ruby) {
                    self.generate_implied_end_tags(Some(Tag::Rtc));
                }
                self.insert(tag, name);
            }
            Tag::Math | Tag::Svg => {
                self.reconstruct_formatting();
                let ns = if tag == Tag::Svg { Ns::Svg } else { Ns::MathMl };
                let attrs = self.take_attrs(ns);
                self.insert_with(ns, Tag::Other, name.clone(), attrs, !self_closing);
            }
            Tag::Caption
            | Tag::Col
            | Tag::Colgroup
            | Tag::Frame
            | Tag::Head
            | Tag::Tbody
            | Tag::Td
            | Tag::Tfoot
            | Tag::Th
            | Tag::Thead
            | Tag::Tr => self.tok.attrs.clear(),
            _ => {
                self.reconstruct_formatting();
                self.insert(tag, name);
            }
        }
        Ok(Flow::Done)
    }

    pub(super) fn end_in_body(&mut self, tag: Tag, name: &Cow<'a, str>) -> Step {
        match tag {
            Tag::Template => return self.end_before_body(Mode::InHead, tag),
            Tag::Body => {
                if self.in_scope(Tag::Body) {
                    self.mode = Mode::AfterBody;
                }
            }
            Tag::Html => {
                if self.in_scope(Tag::Body) {
                    return Ok(Flow::Reprocess(Mode::AfterBody));
                }
            }
            _ if tag.is_block_end() => {
                if self.in_scope(tag) {
                    self.generate_implied_end_tags(None);
                    self.pop_until_tag(tag);
                }
            }
            Tag::Form => {
                let Some(node) = self.form.take() else {
                    return Ok(Flow::Done);
                };
                if !self.in_scope_with(Self::default_scope, |_, n| n == node) {
                    return Ok(Flow::Done);
                }
                self.generate_implied_end_tags(None);
                self.remove_from_stack(node);
            }
            Tag::P => {
                if !self.in_button_scope(Tag::P) {
                    self.insert_phantom(Tag::P);
                }
                self.close_p_element();
            }
            Tag::Li | Tag::Dd | Tag::Dt => {
                let in_scope = if tag == Tag::Li {
                    self.in_list_item_scope(tag)
                } else {
                    self.in_scope(tag)
                };
                if in_scope {
                    self.generate_implied_end_tags(Some(tag));
                    self.pop_until_tag(tag);
                }
            }
            _ if tag.is_heading() => {
                if self.in_scope_with(Self::default_scope, |b, n| b.tag(n).is_heading()) {
                    self.generate_implied_end_tags(None);
                    self.pop_until(|b, n| b.tag(n).is_heading());
                }
            }
            Tag::A | Tag::Nobr => self.adoption_agency(tag, name)?,
            _ if tag.is_formatting() => self.adoption_agency(tag, name)?,
            Tag::Applet | Tag::Marquee | Tag::Object => {
                if self.in_scope(tag) {
                    self.generate_implied_end_tags(None);
                    self.pop_until_tag(tag);
                    self.clear_formatting_to_marker();
                }
            }
            Tag::Br => {
                self.reconstruct_formatting();
                let end = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
                self.insert_with(Ns::Html, Tag::Br, Cow::Borrowed("br"), (end, end), false);
            }
            _ => self.end_tag_in_body(name),
        }
        Ok(Flow::Done)
    }

    /// "Any other end tag" in the body.
    pub(super) fn end_tag_in_body(&mut self, name: &str) {
        let mut found = None;
        for (at, &node) in self.stack.iter().enumerate().rev() {
            if let Some((Ns::Html, tag, element)) = self.doc.element(node) {
                if element == name {
                    found = Some(at);
                    break;
                }
                if tag.is_special() {
                    return;
                }
            }
        }
        let Some(at) = found else {
            return;
        };
        let except = Tag::of(name);
        while let Some(&node) = self.stack.last() {
            let tag = self.tag(node);
            let is_named = self
                .doc
                .element(node)
                .is_some_and(|(ns, _, n)| ns == Ns::Html && n == name);
            if !tag.is_cursory_implied_end() || (except != Tag::Other && tag == except) || is_named
            {
                break;
            }
            self.stack.pop();
        }
        self.stack.truncate(at);
    }
}
