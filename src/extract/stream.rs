//! The streaming engine: items extracted while the page is tokenized, without building a tree.
//!
//! `lol_html` matches CSS selectors on the token stream, several times faster than building
//! a DOM. It serves the templates it can answer exactly: an item selector, fields that take
//! text or an attribute, and selectors without selector lists (`a, b`) that `lol_html`
//! supports. Everything else (HTML fields, page-level items, selectors it cannot match) uses
//! the DOM engine. Both engines give the same items on the test corpus (tested), and the
//! values go through the same cleaning (whitespace, regex, URL resolution, defaults).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;

use lol_html::html_content::{Element, EndTag, TextChunk, TextType};
use lol_html::{ElementContentHandlers, EndTagHandler, HtmlRewriter, Settings};
use serde_json::{Map, Value};
use url::Url;

use super::engine::{Item, clean_value};
use super::template::{Extract, Field, Template};

/// The compiled selectors of a streamable template.
#[derive(Debug)]
pub struct StreamPlan {
    item: lol_html::Selector,
    /// Per field: `item field` (descendant), in field order.
    fields: Vec<lol_html::Selector>,
    /// The link and next-page selectors, when the template has them and the streaming engine
    /// can match them (else links and next pages come from the DOM).
    navigation: Option<Navigation>,
}

#[derive(Debug)]
struct Navigation {
    links: Option<(lol_html::Selector, String)>,
    next: Option<lol_html::Selector>,
}

/// What one streaming pass over a page found, before cleaning.
pub(crate) struct RawPage {
    pub(crate) items: Vec<Item>,
    /// Link attribute values in document order.
    pub(crate) hrefs: Vec<String>,
    /// `href`s of next-page elements in document order.
    pub(crate) next_hrefs: Vec<String>,
}

fn streamable(selector: &str) -> Option<lol_html::Selector> {
    if selector.contains(',') {
        return None;
    }
    lol_html::Selector::from_str(selector).ok()
}

impl StreamPlan {
    /// The plan for `template`, or `None` when the streaming engine cannot answer it exactly.
    pub fn for_template(template: &Template) -> Option<Self> {
        let item_text = template.item_text.as_deref()?;
        if item_text.contains(',') {
            return None;
        }
        let item = lol_html::Selector::from_str(item_text).ok()?;
        let mut fields = Vec::with_capacity(template.fields.len());
        for field in &template.fields {
            if !matches!(field.extract, Extract::Text | Extract::Attr(_))
                || field.selector_text.contains(',')
            {
                return None;
            }
            let scoped = format!("{item_text} {}", field.selector_text);
            fields.push(lol_html::Selector::from_str(&scoped).ok()?);
        }
        let links = template
            .links
            .as_ref()
            .map(|l| (streamable(&l.selector_text), l.attr.clone()));
        let next = template
            .pagination
            .as_ref()
            .map(|p| streamable(&p.next_text));
        let unstreamable = matches!(links, Some((None, _))) || matches!(next, Some(None));
        let navigation = (!unstreamable).then(|| Navigation {
            links: links.and_then(|(selector, attr)| selector.map(|s| (s, attr))),
            next: next.flatten(),
        });
        Some(Self {
            item,
            fields,
            navigation,
        })
    }

    /// True when links and next pages can be found on the stream too.
    pub fn covers_navigation(&self) -> bool {
        self.navigation.is_some()
    }
}

/// Raw values of one item while it is open: per field, the candidates in document order.
struct OpenItem {
    candidates: Vec<Vec<Option<String>>>,
}

/// A text field being captured: the item slots it fills, and the text so far.
struct Capture {
    id: u64,
    field: usize,
    slots: Vec<(usize, usize)>,
    text: String,
    pending_entities: String,
}

#[derive(Default)]
struct State {
    /// All items in document order; `None` once finished (moved to `done`).
    items: Vec<Option<OpenItem>>,
    /// Indexes of items whose element is open (innermost last).
    open: Vec<usize>,
    /// Open text captures, innermost last.
    captures: Vec<Capture>,
    next_capture: u64,
    done: Vec<(usize, Vec<Vec<Option<String>>>)>,
    hrefs: Vec<String>,
    next_hrefs: Vec<String>,
}

impl State {
    fn close_item(&mut self, index: usize) {
        self.open.retain(|i| *i != index);
        if let Some(item) = self.items[index].take() {
            self.done.push((index, item.candidates));
        }
    }

    fn finish_capture(&mut self, capture: Capture) {
        let mut text = capture.text;
        text.push_str(&htmlize::unescape(capture.pending_entities));
        for (item, slot) in capture.slots {
            if let Some(Some(open)) = self.items.get_mut(item) {
                open.candidates[capture.field][slot] = Some(text.clone());
            } else if let Some((_, candidates)) = self.done.iter_mut().find(|(i, _)| *i == item) {
                candidates[capture.field][slot] = Some(text.clone());
            }
        }
    }
}

type Shared = Rc<RefCell<State>>;
type Handlers<'s> = Settings<'static, 's>;

/// Runs `template` over `html` with the streaming engine.
pub fn extract(
    plan: &StreamPlan,
    template: &Template,
    html: &str,
    base: Option<&Url>,
) -> Vec<Item> {
    run(plan, template, html, base, false).items
}

/// Items, links and next pages in one streaming pass (the plan must cover navigation).
pub(crate) fn extract_page(
    plan: &StreamPlan,
    template: &Template,
    html: &str,
    base: Option<&Url>,
) -> RawPage {
    run(plan, template, html, base, true)
}

fn run(
    plan: &StreamPlan,
    template: &Template,
    html: &str,
    base: Option<&Url>,
    with_navigation: bool,
) -> RawPage {
    let state: Shared = Rc::new(RefCell::new(State::default()));
    let mut settings = item_handler(Settings::new(), plan, &state, template.fields.len());
    for (index, (field, selector)) in template.fields.iter().zip(&plan.fields).enumerate() {
        settings = field_handlers(settings, selector, field, index, &state);
    }
    if with_navigation && let Some(navigation) = &plan.navigation {
        settings = navigation_handlers(settings, navigation, &state);
    }
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    // The tokenizer does not fail on bad HTML; a failure here would be a handler error, and
    // the items found so far are still returned.
    let _ = rewriter.write(html.as_bytes());
    let _ = rewriter.end();

    let mut state = state.borrow_mut();
    // Unclosed elements at the end of the page end there, as in a browser.
    while let Some(capture) = state.captures.pop() {
        state.finish_capture(capture);
    }
    while let Some(&index) = state.open.last() {
        state.close_item(index);
    }
    let mut done = std::mem::take(&mut state.done);
    done.sort_by_key(|(index, _)| *index);
    let items = done
        .into_iter()
        .filter_map(|(_, candidates)| assemble(&template.fields, candidates, base))
        .collect();
    RawPage {
        items,
        hrefs: std::mem::take(&mut state.hrefs),
        next_hrefs: std::mem::take(&mut state.next_hrefs),
    }
}

/// Collects link attributes and next-page `href`s as their elements start.
fn navigation_handlers<'s>(
    mut settings: Handlers<'s>,
    navigation: &'s Navigation,
    state: &Shared,
) -> Handlers<'s> {
    if let Some((selector, attr)) = &navigation.links {
        let on_link = Rc::clone(state);
        let attr = attr.clone();
        settings = settings.append_element_content_handler((
            Cow::Borrowed(selector),
            ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
                if let Some(value) = el.get_attribute(&attr) {
                    let value = htmlize::unescape_attribute(value).into_owned();
                    on_link.borrow_mut().hrefs.push(value);
                }
                Ok(())
            }),
        ));
    }
    if let Some(selector) = &navigation.next {
        let on_next = Rc::clone(state);
        settings = settings.append_element_content_handler((
            Cow::Borrowed(selector),
            ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
                if let Some(value) = el.get_attribute("href") {
                    let value = htmlize::unescape_attribute(value).into_owned();
                    on_next.borrow_mut().next_hrefs.push(value);
                }
                Ok(())
            }),
        ));
    }
    settings
}

/// Opens an item at each match of the item selector and closes it at its end tag.
fn item_handler<'s>(
    settings: Handlers<'s>,
    plan: &'s StreamPlan,
    state: &Shared,
    field_count: usize,
) -> Handlers<'s> {
    let on_item = Rc::clone(state);
    settings.append_element_content_handler((
        Cow::Borrowed(&plan.item),
        ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
            let index = {
                let mut state = on_item.borrow_mut();
                let index = state.items.len();
                state.items.push(Some(OpenItem {
                    candidates: vec![Vec::new(); field_count],
                }));
                state.open.push(index);
                index
            };
            let on_end = Rc::clone(&on_item);
            match el.end_tag_handlers() {
                Some(handlers) => handlers.push(Box::new(move |_: &mut EndTag<'_>| {
                    on_end.borrow_mut().close_item(index);
                    Ok(())
                }) as EndTagHandler<'static>),
                None => on_item.borrow_mut().close_item(index),
            }
            Ok(())
        }),
    ))
}

/// Records a field's candidates for every open item: attribute values at once, text from
/// the element's start to its end tag.
fn field_handlers<'s>(
    settings: Handlers<'s>,
    selector: &'s lol_html::Selector,
    field: &Field,
    field_index: usize,
    state: &Shared,
) -> Handlers<'s> {
    let attr = match &field.extract {
        Extract::Attr(name) => Some(name.clone()),
        _ => None,
    };
    let is_text = attr.is_none();
    let on_element = Rc::clone(state);
    let settings = settings.append_element_content_handler((
        Cow::Borrowed(selector),
        ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
            let mut state = on_element.borrow_mut();
            let open = state.open.clone();
            if let Some(name) = &attr {
                let value = el
                    .get_attribute(name)
                    .map(|v| htmlize::unescape_attribute(v).trim().to_owned());
                for item in open {
                    if let Some(Some(open_item)) = state.items.get_mut(item) {
                        open_item.candidates[field_index].push(value.clone());
                    }
                }
                return Ok(());
            }
            let mut slots = Vec::with_capacity(open.len());
            for item in open {
                if let Some(Some(open_item)) = state.items.get_mut(item) {
                    open_item.candidates[field_index].push(None);
                    slots.push((item, open_item.candidates[field_index].len() - 1));
                }
            }
            state.next_capture += 1;
            let capture = Capture {
                id: state.next_capture,
                field: field_index,
                slots,
                text: String::new(),
                pending_entities: String::new(),
            };
            if !el.can_have_content() {
                state.finish_capture(capture);
                return Ok(());
            }
            let id = capture.id;
            state.captures.push(capture);
            drop(state);
            let on_end = Rc::clone(&on_element);
            if let Some(handlers) = el.end_tag_handlers() {
                handlers.push(Box::new(move |_: &mut EndTag<'_>| {
                    let mut state = on_end.borrow_mut();
                    if let Some(at) = state.captures.iter().position(|c| c.id == id) {
                        let capture = state.captures.remove(at);
                        state.finish_capture(capture);
                    }
                    Ok(())
                }) as EndTagHandler<'static>);
            }
            Ok(())
        }),
    ));
    if !is_text {
        return settings;
    }
    let on_text = Rc::clone(state);
    settings.append_element_content_handler((
        Cow::Borrowed(selector),
        ElementContentHandlers::default().text(move |chunk: &mut TextChunk<'_>| {
            let mut state = on_text.borrow_mut();
            let entity_text = matches!(chunk.text_type(), TextType::Data | TextType::RCData);
            for capture in state.captures.iter_mut().filter(|c| c.field == field_index) {
                if entity_text {
                    capture.pending_entities.push_str(chunk.as_str());
                } else {
                    let unescaped =
                        htmlize::unescape(std::mem::take(&mut capture.pending_entities));
                    capture.text.push_str(&unescaped);
                    capture.text.push_str(chunk.as_str());
                }
            }
            Ok(())
        }),
    ))
}

fn assemble(
    fields: &[Field],
    candidates: Vec<Vec<Option<String>>>,
    base: Option<&Url>,
) -> Option<Item> {
    let mut item = Map::with_capacity(fields.len());
    for (field, raw) in fields.iter().zip(candidates) {
        let mut values = raw
            .into_iter()
            .flatten()
            .filter_map(|value| clean_value(field, value, base));
        let value = if field.all {
            let all: Vec<Value> = values.map(Value::String).collect();
            (!all.is_empty()).then_some(Value::Array(all))
        } else {
            values.next().map(Value::String)
        };
        match value {
            Some(value) => {
                item.insert(field.name.clone(), value);
            }
            None if field.required => return None,
            None => {
                item.insert(
                    field.name.clone(),
                    field.default.clone().unwrap_or(Value::Null),
                );
            }
        }
    }
    Some(item)
}
