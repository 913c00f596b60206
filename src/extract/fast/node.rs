//! The fast engine's document: elements and text in one vector, in tree order, borrowing
//! names, attribute values and text from the page; and the `selectors::Element` view of it,
//! matching exactly as scraper's `ElementRef` does for the DOM engine.

use std::borrow::Cow;

use html5ever::{Namespace, ns};
use scraper::selector::{CssLocalName, CssString, NonTSPseudoClass, PseudoElement, Simple};
use selectors::attr::{AttrSelectorOperation, CaseSensitivity, NamespaceConstraint};
use selectors::bloom::BloomFilter;
use selectors::matching::{ElementSelectorFlags, MatchingContext};
use selectors::{Element, OpaqueElement};

use super::tags::{AttrNs, Ns, Tag};

/// No node (a missing link).
pub(crate) const NONE: u32 = u32::MAX;

/// An attribute of an element.
#[derive(Debug, Clone)]
pub(crate) struct Attr<'a> {
    pub(crate) ns: AttrNs,
    pub(crate) name: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
}

#[derive(Debug)]
pub(crate) enum Data<'a> {
    /// The document node (index 0), parent of the `html` element.
    Document,
    Element {
        ns: Ns,
        tag: Tag,
        name: Cow<'a, str>,
        /// Range in [`Document::attrs`].
        attrs: (u32, u32),
    },
    Text(Cow<'a, str>),
}

#[derive(Debug)]
pub(crate) struct Node<'a> {
    pub(crate) data: Data<'a>,
    pub(crate) parent: u32,
    pub(crate) first_child: u32,
    pub(crate) last_child: u32,
    pub(crate) prev_sibling: u32,
    pub(crate) next_sibling: u32,
    /// The last node of this node's subtree (nodes are in tree order).
    pub(crate) subtree_end: u32,
}

/// A parsed page.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    pub(crate) nodes: Vec<Node<'a>>,
    pub(crate) attrs: Vec<Attr<'a>>,
}

impl<'a> Document<'a> {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut nodes = Vec::with_capacity(capacity);
        nodes.push(Node {
            data: Data::Document,
            parent: NONE,
            first_child: NONE,
            last_child: NONE,
            prev_sibling: NONE,
            next_sibling: NONE,
            subtree_end: 0,
        });
        Self {
            nodes,
            attrs: Vec::new(),
        }
    }

    /// Appends `data` as the last child of `parent`; returns its index.
    pub(crate) fn append(&mut self, parent: u32, data: Data<'a>) -> u32 {
        let index = u32::try_from(self.nodes.len()).unwrap_or(NONE);
        let previous = self.nodes[parent as usize].last_child;
        self.nodes.push(Node {
            data,
            parent,
            first_child: NONE,
            last_child: NONE,
            prev_sibling: previous,
            next_sibling: NONE,
            subtree_end: index,
        });
        if previous == NONE {
            self.nodes[parent as usize].first_child = index;
        } else {
            self.nodes[previous as usize].next_sibling = index;
        }
        self.nodes[parent as usize].last_child = index;
        index
    }

    /// Fills in `subtree_end` once the tree is complete (children follow their parent).
    pub(crate) fn finish(&mut self) {
        for index in (1..self.nodes.len()).rev() {
            let end = self.nodes[index].subtree_end;
            let parent = self.nodes[index].parent as usize;
            if self.nodes[parent].subtree_end < end {
                self.nodes[parent].subtree_end = end;
            }
        }
    }

    pub(crate) fn element(&self, index: u32) -> Option<(Ns, Tag, &str)> {
        match &self.nodes.get(index as usize)?.data {
            Data::Element { ns, tag, name, .. } => Some((*ns, *tag, name)),
            _ => None,
        }
    }

    pub(crate) fn attrs_of(&self, index: u32) -> &[Attr<'a>] {
        match &self.nodes[index as usize].data {
            Data::Element { attrs, .. } => &self.attrs[attrs.0 as usize..attrs.1 as usize],
            _ => &[],
        }
    }

    /// The `html` element, if the page has one (every parsed page does).
    pub(crate) fn root(&self) -> Option<FastNode<'_, 'a>> {
        let first = self.nodes.first()?.first_child;
        self.node(first)
    }

    pub(crate) fn node(&self, index: u32) -> Option<FastNode<'_, 'a>> {
        matches!(self.nodes.get(index as usize)?.data, Data::Element { .. })
            .then_some(FastNode { doc: self, index })
    }
}

/// An element of a [`Document`].
#[derive(Clone, Copy)]
pub(crate) struct FastNode<'d, 'a> {
    pub(crate) doc: &'d Document<'a>,
    pub(crate) index: u32,
}

impl std::fmt::Debug for FastNode<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FastNode({})", self.index)
    }
}

impl<'d, 'a> FastNode<'d, 'a> {
    fn raw(&self) -> &'d Node<'a> {
        &self.doc.nodes[self.index as usize]
    }

    fn parts(&self) -> (Ns, &'d str) {
        match &self.raw().data {
            Data::Element { ns, name, .. } => (*ns, name),
            _ => (Ns::Html, ""),
        }
    }

    pub(crate) fn attrs(&self) -> &'d [Attr<'a>] {
        self.doc.attrs_of(self.index)
    }

    /// The value of the attribute `name` (no namespace), as scraper's `Element::attr`.
    pub(crate) fn attr(&self, name: &str) -> Option<&'d str> {
        self.attrs()
            .iter()
            .find(|a| a.ns == AttrNs::None && a.name == name)
            .map(|a| &*a.value)
    }

    fn sibling_element(&self, mut index: u32, forward: bool) -> Option<Self> {
        while index != NONE {
            if let Some(node) = self.doc.node(index) {
                return Some(node);
            }
            let raw = &self.doc.nodes[index as usize];
            index = if forward {
                raw.next_sibling
            } else {
                raw.prev_sibling
            };
        }
        None
    }
}

fn namespace_of(ns: Ns) -> Namespace {
    match ns {
        Ns::Html => ns!(html),
        Ns::Svg => ns!(svg),
        Ns::MathMl => ns!(mathml),
    }
}

fn attr_namespace(ns: AttrNs) -> Namespace {
    match ns {
        AttrNs::None => ns!(),
        AttrNs::Xlink => ns!(xlink),
        AttrNs::Xml => ns!(xml),
        AttrNs::Xmlns => ns!(xmlns),
    }
}

impl Element for FastNode<'_, '_> {
    type Impl = Simple;

    fn opaque(&self) -> OpaqueElement {
        OpaqueElement::new(self.raw())
    }

    fn parent_element(&self) -> Option<Self> {
        self.doc.node(self.raw().parent)
    }

    fn parent_node_is_shadow_root(&self) -> bool {
        false
    }

    fn containing_shadow_host(&self) -> Option<Self> {
        None
    }

    fn is_pseudo_element(&self) -> bool {
        false
    }

    fn prev_sibling_element(&self) -> Option<Self> {
        self.sibling_element(self.raw().prev_sibling, false)
    }

    fn next_sibling_element(&self) -> Option<Self> {
        self.sibling_element(self.raw().next_sibling, true)
    }

    fn first_element_child(&self) -> Option<Self> {
        self.sibling_element(self.raw().first_child, true)
    }

    fn is_html_element_in_html_document(&self) -> bool {
        self.parts().0 == Ns::Html
    }

    fn has_local_name(&self, local_name: &CssLocalName) -> bool {
        self.parts().1 == &*local_name.0
    }

    fn has_namespace(&self, ns: &Namespace) -> bool {
        namespace_of(self.parts().0) == *ns
    }

    fn is_same_type(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }

    fn attr_matches(
        &self,
        ns: &NamespaceConstraint<&Namespace>,
        local_name: &CssLocalName,
        operation: &AttrSelectorOperation<&CssString>,
    ) -> bool {
        self.attrs().iter().any(|attr| {
            !matches!(*ns, NamespaceConstraint::Specific(url) if *url != attr_namespace(attr.ns))
                && *local_name.0 == *attr.name
                && operation.eval_str(&attr.value)
        })
    }

    fn match_non_ts_pseudo_class(
        &self,
        _pc: &NonTSPseudoClass,
        _context: &mut MatchingContext<'_, Self::Impl>,
    ) -> bool {
        false
    }

    fn match_pseudo_element(
        &self,
        _pe: &PseudoElement,
        _context: &mut MatchingContext<'_, Self::Impl>,
    ) -> bool {
        false
    }

    fn apply_selector_flags(&self, _flags: ElementSelectorFlags) {}

    fn is_link(&self) -> bool {
        self.parts().1 == "link"
    }

    fn is_html_slot_element(&self) -> bool {
        // As scraper's `ElementRef` answers (the engines must match alike).
        true
    }

    fn has_id(&self, id: &CssLocalName, case_sensitivity: CaseSensitivity) -> bool {
        self.attrs()
            .iter()
            .find(|a| a.name == "id")
            .is_some_and(|a| case_sensitivity.eq(id.0.as_bytes(), a.value.as_bytes()))
    }

    fn has_class(&self, name: &CssLocalName, case_sensitivity: CaseSensitivity) -> bool {
        self.attrs()
            .iter()
            .filter(|a| a.name == "class")
            .flat_map(|a| a.value.split_ascii_whitespace())
            .any(|class| case_sensitivity.eq(class.as_bytes(), name.0.as_bytes()))
    }

    fn has_custom_state(&self, _name: &CssLocalName) -> bool {
        false
    }

    fn imported_part(&self, _name: &CssLocalName) -> Option<CssLocalName> {
        None
    }

    fn is_part(&self, _name: &CssLocalName) -> bool {
        false
    }

    fn is_empty(&self) -> bool {
        self.raw().first_child == NONE
    }

    fn is_root(&self) -> bool {
        self.raw().parent == 0
    }

    fn add_element_unique_hashes(&self, _filter: &mut BloomFilter) -> bool {
        false
    }
}
