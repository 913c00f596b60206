//! Tables: "in table", "in caption", "in column group", "in table body", "in row", "in
//! cell" — implied `tbody`, `tr` and `colgroup`, cells and rows closed by the next one, the
//! insertion mode reset after `</table>`. Content that the standard moves out of the table
//! (foster parenting) sends the page to the DOM engine.
#![allow(clippy::ptr_arg)]

use std::borrow::Cow;

use super::super::Fallback;
use super::super::tags::{Ns, Tag};
use super::{Builder, Flow, Formatting, Mode, Step};

/// The elements "clear the stack back to a table body context" stops at.
const TABLE_BODY_CONTEXT: [Tag; 5] = [Tag::Tbody, Tag::Tfoot, Tag::Thead, Tag::Template, Tag::Html];
/// The elements "clear the stack back to a table row context" stops at.
const TABLE_ROW_CONTEXT: [Tag; 3] = [Tag::Tr, Tag::Template, Tag::Html];

impl<'a> Builder<'a> {
    /// Start tags in a caption: table structure closes it, anything else is body content.
    pub(super) fn start_in_caption(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        if matches!(
            tag,
            Tag::Caption
                | Tag::Col
                | Tag::Colgroup
                | Tag::Tbody
                | Tag::Td
                | Tag::Tfoot
                | Tag::Th
                | Tag::Thead
                | Tag::Tr
        ) {
            if !self.in_table_scope(|t| t == Tag::Caption) {
                return Ok(Flow::Done);
            }
            self.close_caption();
            return Ok(Flow::Reprocess(Mode::InTable));
        }
        self.start_in_body(tag, name, self_closing)
    }

    pub(super) fn end_in_caption(&mut self, tag: Tag, name: &Cow<'a, str>) -> Step {
        match tag {
            Tag::Caption | Tag::Table => {
                if !self.in_table_scope(|t| t == Tag::Caption) {
                    return Ok(Flow::Done);
                }
                self.close_caption();
                if tag == Tag::Caption {
                    self.mode = Mode::InTable;
                    return Ok(Flow::Done);
                }
                Ok(Flow::Reprocess(Mode::InTable))
            }
            Tag::Body
            | Tag::Col
            | Tag::Colgroup
            | Tag::Html
            | Tag::Tbody
            | Tag::Td
            | Tag::Tfoot
            | Tag::Th
            | Tag::Thead
            | Tag::Tr => Ok(Flow::Done),
            _ => self.end_in_body(tag, name),
        }
    }

    pub(super) fn start_in_column_group(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match tag {
            Tag::Html => self.start_in_body(tag, name, self_closing),
            Tag::Col => {
                self.insert_void(tag, name);
                Ok(Flow::Done)
            }
            Tag::Template => Err(Fallback::Template),
            _ => {
                if self.current_is(Tag::Colgroup) {
                    self.pop();
                    return Ok(Flow::Reprocess(Mode::InTable));
                }
                Ok(Flow::Done)
            }
        }
    }

    pub(super) fn end_in_column_group(&mut self, tag: Tag) -> Step {
        match tag {
            Tag::Colgroup => {
                if self.current_is(Tag::Colgroup) {
                    self.pop();
                    self.mode = Mode::InTable;
                }
                Ok(Flow::Done)
            }
            Tag::Col => Ok(Flow::Done),
            Tag::Template => self.end_before_body(Mode::InHead, tag),
            _ => {
                if self.current_is(Tag::Colgroup) {
                    self.pop();
                    return Ok(Flow::Reprocess(Mode::InTable));
                }
                Ok(Flow::Done)
            }
        }
    }

    pub(super) fn start_in_table_body(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match tag {
            Tag::Tr => {
                self.pop_until_current(&TABLE_BODY_CONTEXT);
                self.insert(tag, name);
                self.mode = Mode::InRow;
                Ok(Flow::Done)
            }
            Tag::Th | Tag::Td => {
                self.pop_until_current(&TABLE_BODY_CONTEXT);
                self.insert_phantom(Tag::Tr);
                Ok(Flow::Reprocess(Mode::InRow))
            }
            Tag::Caption | Tag::Col | Tag::Colgroup | Tag::Tbody | Tag::Tfoot | Tag::Thead => {
                Ok(self.leave_table_body())
            }
            _ => self.start_in_table(tag, name, self_closing),
        }
    }

    pub(super) fn end_in_table_body(&mut self, tag: Tag) -> Step {
        match tag {
            Tag::Tbody | Tag::Tfoot | Tag::Thead => {
                if self.in_table_scope(|t| t == tag) {
                    self.pop_until_current(&TABLE_BODY_CONTEXT);
                    self.pop();
                    self.mode = Mode::InTable;
                }
                Ok(Flow::Done)
            }
            Tag::Table => Ok(self.leave_table_body()),
            Tag::Body
            | Tag::Caption
            | Tag::Col
            | Tag::Colgroup
            | Tag::Html
            | Tag::Td
            | Tag::Th
            | Tag::Tr => Ok(Flow::Done),
            _ => self.end_in_table(tag),
        }
    }

    pub(super) fn start_in_row(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        match tag {
            Tag::Th | Tag::Td => {
                self.pop_until_current(&TABLE_ROW_CONTEXT);
                self.insert(tag, name);
                self.mode = Mode::InCell;
                self.formatting.push(Formatting::Marker);
                Ok(Flow::Done)
            }
            Tag::Caption
            | Tag::Col
            | Tag::Colgroup
            | Tag::Tbody
            | Tag::Tfoot
            | Tag::Thead
            | Tag::Tr => Ok(self.leave_row()),
            _ => self.start_in_table(tag, name, self_closing),
        }
    }

    pub(super) fn end_in_row(&mut self, tag: Tag) -> Step {
        match tag {
            Tag::Tr => {
                if self.in_table_scope(|t| t == Tag::Tr) {
                    self.pop_until_current(&TABLE_ROW_CONTEXT);
                    self.pop();
                    self.mode = Mode::InTableBody;
                }
                Ok(Flow::Done)
            }
            Tag::Table => Ok(self.leave_row()),
            Tag::Tbody | Tag::Tfoot | Tag::Thead => {
                if !self.in_table_scope(|t| t == tag) || !self.in_table_scope(|t| t == Tag::Tr) {
                    return Ok(Flow::Done);
                }
                self.pop_until_current(&TABLE_ROW_CONTEXT);
                self.pop();
                Ok(Flow::Reprocess(Mode::InTableBody))
            }
            Tag::Body | Tag::Caption | Tag::Col | Tag::Colgroup | Tag::Html | Tag::Td | Tag::Th => {
                Ok(Flow::Done)
            }
            _ => self.end_in_table(tag),
        }
    }

    pub(super) fn start_in_cell(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        if matches!(
            tag,
            Tag::Caption
                | Tag::Col
                | Tag::Colgroup
                | Tag::Tbody
                | Tag::Td
                | Tag::Tfoot
                | Tag::Th
                | Tag::Thead
                | Tag::Tr
        ) {
            if !self.in_table_scope(|t| matches!(t, Tag::Td | Tag::Th)) {
                return Ok(Flow::Done);
            }
            self.close_cell();
            return Ok(Flow::Reprocess(Mode::InRow));
        }
        self.start_in_body(tag, name, self_closing)
    }

    pub(super) fn end_in_cell(&mut self, tag: Tag, name: &Cow<'a, str>) -> Step {
        match tag {
            Tag::Td | Tag::Th => {
                if !self.in_table_scope(|t| t == tag) {
                    return Ok(Flow::Done);
                }
                self.generate_implied_end_tags(None);
                self.pop_until_tag(tag);
                self.clear_formatting_to_marker();
                self.mode = Mode::InRow;
                Ok(Flow::Done)
            }
            Tag::Body | Tag::Caption | Tag::Col | Tag::Colgroup | Tag::Html => Ok(Flow::Done),
            Tag::Table | Tag::Tbody | Tag::Tfoot | Tag::Thead | Tag::Tr => {
                if !self.in_table_scope(|t| t == tag) {
                    return Ok(Flow::Done);
                }
                self.close_cell();
                Ok(Flow::Reprocess(Mode::InRow))
            }
            _ => self.end_in_body(tag, name),
        }
    }

    pub(super) fn start_in_table(
        &mut self,
        tag: Tag,
        name: &Cow<'a, str>,
        self_closing: bool,
    ) -> Step {
        const TABLE_CONTEXT: [Tag; 3] = [Tag::Table, Tag::Template, Tag::Html];
        match tag {
            Tag::Caption => {
                self.pop_until_current(&TABLE_CONTEXT);
                self.formatting.push(Formatting::Marker);
                self.insert(tag, name);
                self.mode = Mode::InCaption;
                Ok(Flow::Done)
            }
            Tag::Colgroup => {
                self.pop_until_current(&TABLE_CONTEXT);
                self.insert(tag, name);
                self.mode = Mode::InColumnGroup;
                Ok(Flow::Done)
            }
            Tag::Col => {
                self.pop_until_current(&TABLE_CONTEXT);
                self.insert_phantom(Tag::Colgroup);
                Ok(Flow::Reprocess(Mode::InColumnGroup))
            }
            Tag::Tbody | Tag::Tfoot | Tag::Thead => {
                self.pop_until_current(&TABLE_CONTEXT);
                self.insert(tag, name);
                self.mode = Mode::InTableBody;
                Ok(Flow::Done)
            }
            Tag::Td | Tag::Th | Tag::Tr => {
                self.pop_until_current(&TABLE_CONTEXT);
                self.insert_phantom(Tag::Tbody);
                Ok(Flow::Reprocess(Mode::InTableBody))
            }
            Tag::Table => {
                if self.in_table_scope(|t| t == Tag::Table) {
                    self.pop_until_tag(Tag::Table);
                    return Ok(Flow::Reprocess(self.reset_mode()?));
                }
                Ok(Flow::Done)
            }
            Tag::Style | Tag::Script | Tag::Template => self.start_in_head(tag, name, self_closing),
            Tag::Input => {
                let hidden = self
                    .tok
                    .attrs
                    .iter()
                    .find(|a| a.name == "type")
                    .is_some_and(|a| a.value.eq_ignore_ascii_case("hidden"));
                if !hidden {
                    return Err(Fallback::FosterParenting);
                }
                self.insert_void(tag, name);
                Ok(Flow::Done)
            }
            Tag::Form => {
                if self.form.is_none() {
                    let node = self.insert_void(tag, name);
                    self.form = Some(node);
                } else {
                    self.tok.attrs.clear();
                }
                Ok(Flow::Done)
            }
            _ => Err(Fallback::FosterParenting),
        }
    }

    pub(super) fn end_in_table(&mut self, tag: Tag) -> Step {
        match tag {
            Tag::Table => {
                if self.in_table_scope(|t| t == Tag::Table) {
                    self.pop_until_tag(Tag::Table);
                    self.mode = self.reset_mode()?;
                }
                Ok(Flow::Done)
            }
            Tag::Body
            | Tag::Caption
            | Tag::Col
            | Tag::Colgroup
            | Tag::Html
            | Tag::Tbody
            | Tag::Td
            | Tag::Tfoot
            | Tag::Th
            | Tag::Thead
            | Tag::Tr => Ok(Flow::Done),
            Tag::Template => self.end_before_body(Mode::InHead, tag),
            _ => Err(Fallback::FosterParenting),
        }
    }

    pub(super) fn close_caption(&mut self) {
        self.generate_implied_end_tags(None);
        self.pop_until_tag(Tag::Caption);
        self.clear_formatting_to_marker();
    }

    pub(super) fn close_cell(&mut self) {
        self.generate_implied_end_tags(None);
        self.pop_until(|b, n| matches!(b.tag(n), Tag::Td | Tag::Th));
        self.clear_formatting_to_marker();
    }

    /// `caption`, `col`, ... or `</table>` in a table body: close the section, go on in the table.
    pub(super) fn leave_table_body(&mut self) -> Flow {
        if !self.in_table_scope(|t| matches!(t, Tag::Table | Tag::Tbody | Tag::Tfoot)) {
            return Flow::Done;
        }
        self.pop_until_current(&TABLE_BODY_CONTEXT);
        self.pop();
        Flow::Reprocess(Mode::InTable)
    }

    /// A new row or section (or `</table>`) in a row: close the row, go on in the body.
    pub(super) fn leave_row(&mut self) -> Flow {
        if !self.in_table_scope(|t| t == Tag::Tr) {
            return Flow::Done;
        }
        self.pop_until_current(&TABLE_ROW_CONTEXT);
        self.pop();
        Flow::Reprocess(Mode::InTableBody)
    }

    /// "Reset the insertion mode appropriately".
    pub(super) fn reset_mode(&self) -> Result<Mode, Fallback> {
        for (at, &node) in self.stack.iter().enumerate().rev() {
            let last = at == 0;
            let Some((Ns::Html, tag, _)) = self.doc.element(node) else {
                continue;
            };
            return Ok(match tag {
                Tag::Td | Tag::Th if !last => Mode::InCell,
                Tag::Tr => Mode::InRow,
                Tag::Tbody | Tag::Thead | Tag::Tfoot => Mode::InTableBody,
                Tag::Caption => Mode::InCaption,
                Tag::Colgroup => Mode::InColumnGroup,
                Tag::Table => Mode::InTable,
                Tag::Template => return Err(Fallback::Template),
                Tag::Head if !last => Mode::InHead,
                Tag::Body => Mode::InBody,
                Tag::Frameset => return Err(Fallback::Frameset),
                Tag::Html => {
                    if self.head.is_some() {
                        Mode::AfterHead
                    } else {
                        Mode::BeforeHead
                    }
                }
                _ => continue,
            });
        }
        Ok(Mode::InBody)
    }
}
