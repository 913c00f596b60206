//! The DOM engine's side of extraction: html5ever's tree (through scraper) seen the way the
//! fast engine's tree is — template contents are not part of the document (as in a browser),
//! and text follows the rule of [`super::text`].

use std::fmt::Write;

use std::time::Instant;

use ego_tree::iter::Edge;
use html5ever::tendril::{StrTendril, TendrilSink};
use scraper::{ElementRef, Html, HtmlTreeSink, Node};

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
    // No deadline: the chunks only cost a few calls.
    parse_before(html, None).unwrap_or_else(|()| Html::new_document())
}

/// Bytes html5ever is given at a time: the deadline is read between two.
const CHUNK_BYTES: usize = 16 * 1024;

/// html5ever's tree of `html`, fed in chunks so that `deadline` can stop it: html5ever
/// cannot be interrupted, and some pages make it work quadratically (every start tag searches
/// the stack of open elements, and a hostile page nests thousands deep). The tree is the
/// one-shot parse's: html5ever's tokenizer resumes exactly where a chunk ends, and its
/// `discard_bom` is off (it would drop a U+FEFF at the start of every chunk): only the
/// document's leading BOM is dropped, here.
pub(crate) fn parse_before(html: &str, deadline: Option<Instant>) -> Result<Html, ()> {
    let html = html.strip_prefix('\u{feff}').unwrap_or(html);
    let opts = html5ever::ParseOpts {
        tokenizer: html5ever::tokenizer::TokenizerOpts {
            discard_bom: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut parser =
        html5ever::driver::parse_document(HtmlTreeSink::new(Html::new_document()), opts);
    let mut rest = html;
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        parser.process(StrTendril::from_slice(chunk));
        rest = tail;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(());
        }
    }
    Ok(parser.finish())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_parsing_builds_the_one_shot_tree() {
        // Chunk boundaries inside tags, attributes, character references, comments, scripts
        // and multi-byte characters.
        let unit = "<p class='a b'>caf\u{e9} &amp; &eacute;l\u{e8}ve<!-- c -->\
                    <script>if (a < b) {}</script><table><tr><td>\u{1f600}x</td></tr></table>\
                    <textarea>\n&lt;t&gt;</textarea><svg><path d='M0 0'/></svg>";
        for prefix in ["", "x", "\u{e9}", "\u{1f600}\u{1f600}a"] {
            let html = format!("<!doctype html>{prefix}{}", unit.repeat(400));
            assert!(html.len() > 4 * CHUNK_BYTES);
            let chunked = parse_before(&html, None).expect("no deadline");
            assert_eq!(dump(&chunked), dump(&Html::parse_document(&html)));
        }
    }

    #[test]
    fn a_bom_at_a_chunk_boundary_is_kept_and_only_the_leading_one_dropped() {
        // html5ever's discard_bom would drop a U+FEFF at the start of every chunk.
        let head = "<p>";
        let filler = "a".repeat(CHUNK_BYTES - head.len());
        let html = format!("\u{feff}{head}{filler}\u{feff}b</p>");
        // The second U+FEFF starts exactly at the second chunk (after the leading BOM).
        assert_eq!(
            html.strip_prefix('\u{feff}').unwrap().find("\u{feff}"),
            Some(CHUNK_BYTES)
        );
        let document = parse_before(&html, None).expect("no deadline");
        let text: String = ElementRef::text(&document.root_element()).collect();
        assert_eq!(text, format!("{filler}\u{feff}b"), "the inner BOM is text");
        assert_eq!(
            text.matches('\u{feff}').count(),
            1,
            "the leading BOM is dropped"
        );
    }
}
