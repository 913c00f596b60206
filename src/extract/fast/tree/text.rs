//! Character tokens in every insertion mode: leading whitespace split off where the modes
//! treat it apart, `html`/`head`/`body` implied by text, foster parenting detected.

use std::borrow::Cow;

use super::super::Fallback;
use super::super::tags::{Ns, Tag};
use super::{Builder, Mode, slice_from, split_whitespace};

impl<'a> Builder<'a> {
    pub(super) fn text(&mut self, mut text: Cow<'a, str>) -> Result<(), Fallback> {
        loop {
            if text.is_empty() {
                return Ok(());
            }
            let current = self.current();
            if !self.stack.is_empty()
                && self.ns(current) != Ns::Html
                && !self.is_integration_point(current)
            {
                self.append_text(text);
                return Ok(());
            }
            let leading = split_whitespace(&text);
            match self.mode {
                Mode::Initial | Mode::BeforeHtml | Mode::BeforeHead => {
                    text = slice_from(text, leading);
                    if text.is_empty() {
                        return Ok(());
                    }
                    self.anything_else_before_body();
                }
                Mode::InHead | Mode::AfterHead => {
                    if leading > 0 {
                        let rest = match &text {
                            Cow::Borrowed(s) => {
                                (Cow::Borrowed(&s[..leading]), Cow::Borrowed(&s[leading..]))
                            }
                            Cow::Owned(s) => (
                                Cow::Owned(s[..leading].to_owned()),
                                Cow::Owned(s[leading..].to_owned()),
                            ),
                        };
                        if self.mode == Mode::AfterHead {
                            self.after_head_whitespace.push(rest.0);
                        } else {
                            self.append_text(rest.0);
                        }
                        text = rest.1;
                        continue;
                    }
                    self.anything_else_before_body();
                }
                Mode::InBody | Mode::InCaption | Mode::InCell => {
                    self.reconstruct_formatting();
                    self.append_text(text);
                    return Ok(());
                }
                Mode::Text => {
                    self.append_text(text);
                    return Ok(());
                }
                Mode::InTable | Mode::InTableBody | Mode::InRow => {
                    let table_context = matches!(
                        self.tag(current),
                        Tag::Table | Tag::Tbody | Tag::Tfoot | Tag::Thead | Tag::Tr
                    );
                    if !table_context || leading < text.len() {
                        return Err(Fallback::FosterParenting);
                    }
                    self.append_text(text);
                    return Ok(());
                }
                Mode::InColumnGroup => {
                    if leading > 0 {
                        let ws = match &text {
                            Cow::Borrowed(s) => Cow::Borrowed(&s[..leading]),
                            Cow::Owned(s) => Cow::Owned(s[..leading].to_owned()),
                        };
                        self.append_text(ws);
                        text = slice_from(text, leading);
                        continue;
                    }
                    if !self.current_is(Tag::Colgroup) {
                        return Ok(());
                    }
                    self.pop();
                    self.mode = Mode::InTable;
                }
                Mode::AfterBody | Mode::AfterAfterBody => {
                    if leading == text.len() {
                        self.reconstruct_formatting();
                        self.append_text(text);
                        return Ok(());
                    }
                    if leading > 0 {
                        let ws = match &text {
                            Cow::Borrowed(s) => Cow::Borrowed(&s[..leading]),
                            Cow::Owned(s) => Cow::Owned(s[..leading].to_owned()),
                        };
                        self.reconstruct_formatting();
                        self.append_text(ws);
                        text = slice_from(text, leading);
                    }
                    self.mode = Mode::InBody;
                }
            }
        }
    }
}
