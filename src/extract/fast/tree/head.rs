//! The modes before the body — "initial", "before html", "before head", "in head", "after
//! head" — and the raw text elements (`title`, `style`, `script`, ...).
#![allow(clippy::ptr_arg)]

use std::borrow::Cow;

use super::super::Fallback;
use super::super::node::Data;
use super::super::tags::{Ns, Tag};
use super::super::tokenizer::{Quirks, RawKind};
use super::{Builder, Flow, Mode, Step};

impl<'a> Builder<'a> {
    /// Start tags in the modes before the body.
    pub(super) fn start_before_body(
        &mut self,
        mode: Mode,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match mode {
            Mode::Initial => {
                self.quirks = Quirks::Yes;
                Ok(Flow::Reprocess(Mode::BeforeHtml))
            }
            Mode::BeforeHtml => {
                if tag == Tag::Html {
                    self.create_root(true);
                    self.mode = Mode::BeforeHead;
                    return Ok(Flow::Done);
                }
                self.create_root(false);
                Ok(Flow::Reprocess(Mode::BeforeHead))
            }
            Mode::BeforeHead => match tag {
                Tag::Html => self.start_in_body(tag, name, self_closing),
                Tag::Head => {
                    self.head = Some(self.insert(tag, name));
                    self.mode = Mode::InHead;
                    Ok(Flow::Done)
                }
                _ => {
                    self.head = Some(self.insert_phantom(Tag::Head));
                    Ok(Flow::Reprocess(Mode::InHead))
                }
            },
            _ => match tag {
                Tag::Html => self.start_in_body(tag, name, self_closing),
                Tag::Body => {
                    self.insert(tag, name);
                    self.mode = Mode::InBody;
                    Ok(Flow::Done)
                }
                Tag::Frameset => Err(Fallback::Frameset),
                Tag::Base
                | Tag::Basefont
                | Tag::Bgsound
                | Tag::Link
                | Tag::Meta
                | Tag::Noframes
                | Tag::Script
                | Tag::Style
                | Tag::Template
                | Tag::Title => {
                    // After `</head>`, these still go into the head.
                    let Some(head) = self.head else {
                        return Err(Fallback::Unexpected);
                    };
                    self.stack.push(head);
                    let flow = self.start_in_head(tag, name, self_closing)?;
                    self.remove_from_stack(head);
                    Ok(flow)
                }
                Tag::Head => Ok(Flow::Done),
                _ => {
                    self.insert_phantom(Tag::Body);
                    Ok(Flow::Reprocess(Mode::InBody))
                }
            },
        }
    }

    /// End tags in the modes before the body (the head included).
    pub(super) fn end_before_body(&mut self, mode: Mode, tag: Tag) -> Step {
        let implies_more = matches!(tag, Tag::Head | Tag::Body | Tag::Html | Tag::Br);
        match mode {
            Mode::Initial => {
                self.quirks = Quirks::Yes;
                Ok(Flow::Reprocess(Mode::BeforeHtml))
            }
            Mode::BeforeHtml if implies_more => {
                self.create_root(false);
                Ok(Flow::Reprocess(Mode::BeforeHead))
            }
            Mode::BeforeHead if implies_more => {
                self.head = Some(self.insert_phantom(Tag::Head));
                Ok(Flow::Reprocess(Mode::InHead))
            }
            Mode::InHead => match tag {
                Tag::Head => {
                    self.pop();
                    self.mode = Mode::AfterHead;
                    Ok(Flow::Done)
                }
                Tag::Body | Tag::Html | Tag::Br => {
                    self.pop();
                    Ok(Flow::Reprocess(Mode::AfterHead))
                }
                Tag::Template if self.in_stack(Tag::Template) => Err(Fallback::Template),
                _ => Ok(Flow::Done),
            },
            Mode::AfterHead => match tag {
                Tag::Template => self.end_before_body(Mode::InHead, tag),
                Tag::Body | Tag::Html | Tag::Br => {
                    self.insert_phantom(Tag::Body);
                    Ok(Flow::Reprocess(Mode::InBody))
                }
                _ => Ok(Flow::Done),
            },
            _ => Ok(Flow::Done),
        }
    }

    /// The "anything else" steps of the modes before the body (html, head, body implied).
    pub(super) fn anything_else_before_body(&mut self) {
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
            _ => {}
        }
    }

    pub(super) fn create_root(&mut self, with_attrs: bool) {
        let attrs = if with_attrs {
            self.take_attrs(Ns::Html)
        } else {
            let end = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
            (end, end)
        };
        let node = self.doc.append(
            0,
            Data::Element {
                ns: Ns::Html,
                tag: Tag::Html,
                name: Cow::Borrowed("html"),
                attrs,
            },
        );
        self.stack.push(node);
    }

    pub(super) fn start_in_head(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match tag {
            Tag::Html => self.start_in_body(tag, name, self_closing),
            Tag::Base | Tag::Basefont | Tag::Bgsound | Tag::Link | Tag::Meta => {
                self.insert_void(tag, name);
                Ok(Flow::Done)
            }
            Tag::Title => Ok(self.raw_element(tag, name, RawKind::Rcdata)),
            Tag::Noframes | Tag::Style | Tag::Noscript => {
                Ok(self.raw_element(tag, name, RawKind::Rawtext))
            }
            Tag::Script => Ok(self.raw_element(tag, name, RawKind::Script)),
            Tag::Template => Err(Fallback::Template),
            Tag::Head => Ok(Flow::Done),
            _ => {
                self.pop();
                Ok(Flow::Reprocess(Mode::AfterHead))
            }
        }
    }

    /// An element whose content is raw text up to its end tag.
    pub(super) fn raw_element(&mut self, tag: Tag, name: &Cow<'a, str>, kind: RawKind) -> Flow {
        self.insert(tag, name);
        self.tok.switch_to_raw(kind, tag.name());
        self.original_mode = self.mode;
        self.mode = Mode::Text;
        Flow::Done
    }

    pub(super) fn merge_attributes(&mut self, target: Option<u32>) -> Result<(), Fallback> {
        if self.tok.attrs.is_empty() {
            return Ok(());
        }
        let Some(target) = target else {
            self.tok.attrs.clear();
            return Ok(());
        };
        let present = self.doc.attrs_of(target);
        if self
            .tok
            .attrs
            .iter()
            .all(|raw| present.iter().any(|a| a.name == raw.name))
        {
            self.tok.attrs.clear();
            return Ok(());
        }
        Err(Fallback::AttributeMerge)
    }
}
