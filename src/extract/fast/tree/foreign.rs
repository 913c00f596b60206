//! SVG and MathML content: names and attributes adjusted as the standard lists them, the
//! HTML elements that break out of foreign content, integration points where HTML rules
//! apply again, and end tags matched case-insensitively up the stack.
#![allow(clippy::ptr_arg)]

use std::borrow::Cow;

use super::super::Fallback;
use super::super::tags::{Ns, Tag, svg_tag_name};
use super::{Builder, Flow};

impl<'a> Builder<'a> {
    pub(super) fn is_foreign_start(&self, name: &str) -> bool {
        let Some(&current) = self.stack.last() else {
            return false;
        };
        match self.doc.element(current) {
            Some((Ns::MathMl, _, "mi" | "mo" | "mn" | "ms" | "mtext")) => {
                matches!(name, "mglyph" | "malignmark")
            }
            Some((Ns::Html, ..) | (Ns::Svg, _, "foreignObject" | "desc" | "title")) | None => false,
            Some(_) => true,
        }
    }

    pub(super) fn foreign_start(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Result<(), Fallback> {
        let breaks_out = tag.breaks_out_of_foreign()
            || (tag == Tag::Font
                && self
                    .tok
                    .attrs
                    .iter()
                    .any(|a| matches!(&*a.name, "color" | "face" | "size")));
        if breaks_out {
            while let Some(&node) = self.stack.last() {
                if self.ns(node) == Ns::Html || self.is_integration_point(node) {
                    break;
                }
                self.stack.pop();
            }
            let mut mode = self.mode;
            loop {
                match self.start_in(mode, tag, name, self_closing)? {
                    Flow::Done => return Ok(()),
                    Flow::Reprocess(next) => {
                        self.mode = next;
                        mode = next;
                    }
                }
            }
        }
        let ns = self.ns(self.current());
        if ns == Ns::MathMl && name == "annotation-xml" {
            return Err(Fallback::ForeignContent);
        }
        let name = match ns {
            Ns::Svg => svg_tag_name(name).map_or_else(|| name.clone(), Cow::Borrowed),
            _ => name.clone(),
        };
        let attrs = self.take_attrs(ns);
        self.insert_with(ns, Tag::Other, name, attrs, !self_closing);
        Ok(())
    }

    pub(super) fn foreign_end(&mut self, tag: Tag, name: &Cow<'a, str>) -> Result<(), Fallback> {
        if matches!(tag, Tag::Br | Tag::P) {
            // `</br>` and `</p>` break out like the start tags.
            while let Some(&node) = self.stack.last() {
                if self.ns(node) == Ns::Html || self.is_integration_point(node) {
                    break;
                }
                self.stack.pop();
            }
            return self.end_html(tag, name);
        }
        let mut at = self.stack.len() - 1;
        let mut first = true;
        loop {
            if at == 0 {
                return Ok(());
            }
            let node = self.stack[at];
            let Some((ns, _, element)) = self.doc.element(node) else {
                return Ok(());
            };
            if !first && ns == Ns::Html {
                return self.end_html(tag, name);
            }
            if element.eq_ignore_ascii_case(name) {
                self.stack.truncate(at);
                return Ok(());
            }
            first = false;
            at -= 1;
        }
    }
}
