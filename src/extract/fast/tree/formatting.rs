//! The list of active formatting elements: reconstructing them where markup left them open,
//! the "Noah's Ark" limit, and the adoption agency algorithm for the cases where it only pops
//! (a nested `<a>`, `</b>` with inline elements open); where it would move elements, the
//! page goes to the DOM engine.
#![allow(clippy::ptr_arg)]

use std::borrow::Cow;

use super::super::Fallback;
use super::super::node::Data;
use super::super::tags::Tag;
use super::{Builder, Formatting};

impl<'a> Builder<'a> {
    pub(super) fn is_open(&self, entry: Formatting) -> bool {
        match entry {
            Formatting::Marker => true,
            Formatting::Element(node) => self.stack.iter().rev().any(|&n| n == node),
        }
    }

    pub(super) fn reconstruct_formatting(&mut self) {
        let Some(&last) = self.formatting.last() else {
            return;
        };
        if self.is_open(last) {
            return;
        }
        let mut index = self.formatting.len() - 1;
        while index > 0 {
            index -= 1;
            if self.is_open(self.formatting[index]) {
                index += 1;
                break;
            }
        }
        loop {
            let Formatting::Element(old) = self.formatting[index] else {
                return;
            };
            let Data::Element { ns, tag, name, .. } = &self.doc.nodes[old as usize].data else {
                return;
            };
            let (ns, tag, name) = (*ns, *tag, name.clone());
            let copied = self.doc.attrs_of(old).to_vec();
            let start = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
            self.doc.attrs.extend(copied);
            let end = u32::try_from(self.doc.attrs.len()).unwrap_or(u32::MAX);
            let new = self.insert_with(ns, tag, name, (start, end), true);
            self.formatting[index] = Formatting::Element(new);
            if index == self.formatting.len() - 1 {
                return;
            }
            index += 1;
        }
    }

    /// Same name and the same attributes in any order.
    pub(super) fn same_formatting(&self, a: u32, b: u32) -> bool {
        let (Some((_, _, na)), Some((_, _, nb))) = (self.doc.element(a), self.doc.element(b))
        else {
            return false;
        };
        let (aa, ab) = (self.doc.attrs_of(a), self.doc.attrs_of(b));
        na == nb
            && aa.len() == ab.len()
            && aa.iter().all(|x| {
                ab.iter()
                    .any(|y| x.ns == y.ns && x.name == y.name && x.value == y.value)
            })
    }

    pub(super) fn insert_formatting(&mut self, tag: Tag, name: &Cow<'a, str>) {
        let node = self.insert(tag, name);
        // The "Noah's Ark" clause: at most three equal entries after the last marker.
        let mut earliest = None;
        let mut count = 0;
        for index in (0..self.formatting.len()).rev() {
            let Formatting::Element(other) = self.formatting[index] else {
                break;
            };
            if self.same_formatting(node, other) {
                earliest = Some(index);
                count += 1;
            }
        }
        if count >= 3
            && let Some(index) = earliest
        {
            self.formatting.remove(index);
        }
        self.formatting.push(Formatting::Element(node));
    }

    pub(super) fn clear_formatting_to_marker(&mut self) {
        while let Some(entry) = self.formatting.pop() {
            if entry == Formatting::Marker {
                break;
            }
        }
    }

    /// The last formatting element named `tag` after the last marker: (index, node).
    pub(super) fn formatting_named(&self, tag: Tag) -> Option<(usize, u32)> {
        for index in (0..self.formatting.len()).rev() {
            match self.formatting[index] {
                Formatting::Marker => return None,
                Formatting::Element(node) if self.is(node, tag) => return Some((index, node)),
                Formatting::Element(_) => {}
            }
        }
        None
    }

    /// The adoption agency algorithm, for the cases where it only pops (no element is moved).
    pub(super) fn adoption_agency(&mut self, tag: Tag, name: &str) -> Result<(), Fallback> {
        let current = self.current();
        if self.is(current, tag) && !self.formatting.contains(&Formatting::Element(current)) {
            self.pop();
            return Ok(());
        }
        let Some((index, node)) = self.formatting_named(tag) else {
            self.end_tag_in_body(name);
            return Ok(());
        };
        let Some(at) = self.stack.iter().rposition(|&n| n == node) else {
            self.formatting.remove(index);
            return Ok(());
        };
        if !self.in_scope_with(Self::default_scope, |_, n| n == node) {
            return Ok(());
        }
        let furthest_block = self.stack[at + 1..]
            .iter()
            .any(|&n| self.tag(n).is_special());
        if furthest_block {
            return Err(Fallback::MisnestedFormatting);
        }
        self.stack.truncate(at);
        self.formatting.remove(index);
        Ok(())
    }
}
