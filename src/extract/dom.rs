//! The DOM engine's side of extraction: html5ever's tree (through scraper) seen the way the
//! fast engine's tree is — template contents are not part of the document (as in a browser),
//! and text follows the rule of [`super::text`].

use std::fmt::Write;

use ego_tree::iter::Edge;
use scraper::{ElementRef, Html, Node};

use super::engine::Tree;
use super::fast::escape;
use super::text::{is_block, is_skipped};

fn is_html(element: &scraper::node::Element) -> bool {
    element.name.ns == html5ever::ns!(html)
}

impl<'a> Tree<'a> for ElementRef<'a> {
    fn descendants(self) -> impl Iterator<Item = Self> + 'a {
        // A template's contents hang below it as a document fragment: skip the fragment.
        let mut inside_fragment = 0usize;
        self.traverse().skip(1).filter_map(move |edge| match edge {
            Edge::Open(node) if node.value().is_fragment() => {
                inside_fragment += 1;
                None
            }
            Edge::Close(node) if node.value().is_fragment() => {
                inside_fragment -= 1;
                None
            }
            Edge::Open(node) if inside_fragment == 0 => ElementRef::wrap(node),
            _ => None,
        })
    }

    fn text(self, out: &mut String) {
        let mut skipping = 0usize;
        for edge in self.traverse().skip(1) {
            match edge {
                Edge::Open(node) => match node.value() {
                    Node::Fragment => skipping += 1,
                    Node::Element(e) if skipping > 0 || is_skipped(&e.name.local) => skipping += 1,
                    Node::Element(e) if is_html(e) && is_block(&e.name.local) => out.push(' '),
                    Node::Text(text) if skipping == 0 => out.push_str(text),
                    _ => {}
                },
                Edge::Close(node) => match node.value() {
                    Node::Fragment => skipping -= 1,
                    Node::Element(_) if skipping > 0 => skipping -= 1,
                    Node::Element(e) if is_html(e) && is_block(&e.name.local) => out.push(' '),
                    _ => {}
                },
            }
        }
    }

    fn attr(self, name: &str) -> Option<&'a str> {
        self.value().attr(name)
    }

    fn html_name(self) -> Option<&'a str> {
        let element = self.value();
        is_html(element).then(|| &*element.name.local)
    }

    fn markup(self, outer: bool) -> String {
        if outer {
            self.html()
        } else {
            self.inner_html()
        }
    }
}

/// html5ever's tree of `html`.
///
/// A byte order mark is dropped only at the start of the document, as a browser's decoder does.
/// html5ever's own `discard_bom` drops one at the start of every `feed`, and its driver feeds
/// again after each `</script>` and `<meta charset>`, which lost a U+FEFF written there.
pub(crate) fn parse(html: &str) -> Html {
    use html5ever::tendril::TendrilSink;
    let html = html.strip_prefix('\u{feff}').unwrap_or(html);
    let opts = html5ever::ParseOpts {
        tokenizer: html5ever::tokenizer::TokenizerOpts {
            discard_bom: false,
            ..Default::default()
        },
        ..Default::default()
    };
    html5ever::driver::parse_document(scraper::HtmlTreeSink::new(Html::new_document()), opts)
        .one(html)
}

/// A canonical dump of the tree (as `fast::dump` writes it), for comparing the engines.
pub(crate) fn dump(document: &Html) -> String {
    let mut out = String::new();
    let mut skipping = 0usize;
    for edge in document.root_element().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Fragment => skipping += 1,
                _ if skipping > 0 => {}
                Node::Element(e) => {
                    let mut attrs: Vec<String> = e
                        .attrs
                        .iter()
                        .map(|(name, value)| {
                            let ns = match &*name.ns {
                                "" => "None",
                                "http://www.w3.org/1999/xlink" => "Xlink",
                                "http://www.w3.org/XML/1998/namespace" => "Xml",
                                "http://www.w3.org/2000/xmlns/" => "Xmlns",
                                other => other,
                            };
                            format!(" {ns}:{}=\"{}\"", name.local, escape(value))
                        })
                        .collect();
                    attrs.sort();
                    let _ = write!(out, "<{}:{}{}>", ns_name(e), e.name.local, attrs.concat());
                }
                Node::Text(text) => out.push_str(&escape(text)),
                _ => {}
            },
            Edge::Close(node) => match node.value() {
                Node::Fragment => skipping -= 1,
                _ if skipping > 0 => {}
                Node::Element(e) => {
                    let _ = write!(out, "</{}:{}>", ns_name(e), e.name.local);
                }
                _ => {}
            },
        }
    }
    out
}

fn ns_name(element: &scraper::node::Element) -> &'static str {
    match &*element.name.ns {
        "http://www.w3.org/2000/svg" => "Svg",
        "http://www.w3.org/1998/Math/MathML" => "MathMl",
        _ => "Html",
    }
}
