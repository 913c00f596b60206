//! Templates: what to extract from a page, loaded from JSON or YAML and checked when loaded.
//!
//! The schema is documented in `docs/templates.md`. Loading compiles every selector and
//! regex once; a mistake is a [`TemplateError`] naming the template, the field and the
//! problem, raised at load time rather than on the first page.

use std::collections::HashSet;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::select::Selector;

/// A template that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("template {template}{}: {message}", field.as_ref().map(|f| format!(", field {f:?}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template's id (or the file it came from).
    pub template: String,
    /// The field at fault, when the problem is in one field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl TemplateError {
    fn new(template: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            template: template.to_owned(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Result alias of templates.
pub type TemplateResult<T> = Result<T, TemplateError>;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    id: String,
    #[serde(default)]
    item: Option<String>,
    fields: Vec<RawField>,
    #[serde(default)]
    links: Option<RawLinks>,
    #[serde(default)]
    pagination: Option<RawPagination>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Option<String>,
    selector: String,
    #[serde(default)]
    extract: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<serde_json::Value>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    absolute_url: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawLinks {
    selector: String,
    #[serde(default)]
    attr: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    max_depth: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    next: String,
    #[serde(default)]
    max_pages: Option<u32>,
}

/// What a field takes from each matching element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extract {
    /// The element's text, whitespace collapsed.
    Text,
    /// An attribute's value.
    Attr(String),
    /// The element's own HTML.
    Html,
    /// The HTML of its content.
    InnerHtml,
}

/// A compiled field.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key in each item.
    pub name: String,
    /// Where the value is: elements below the item that match.
    pub selector: Selector,
    /// What to take.
    pub extract: Extract,
    /// All matches as a list, or the first one.
    pub all: bool,
    /// An item without this field is not emitted.
    pub required: bool,
    /// The value when nothing matches.
    pub default: Option<serde_json::Value>,
    /// Cleans each value: capture group 1 if the pattern has one, else the whole match.
    pub regex: Option<Regex>,
    /// Resolve the value as a URL against the page's URL.
    pub absolute_url: bool,
}

/// Which discovered links are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkScope {
    /// Same registrable domain as the page (`shop.example.com` and `www.example.com`).
    SameDomain,
    /// Exactly the page's host.
    SameHost,
    /// The listed domains and their subdomains.
    AllowedDomains(Vec<String>),
    /// Any http(s) link.
    Any,
}

/// Links to follow.
#[derive(Debug, Clone)]
pub struct Links {
    /// Elements holding links.
    pub selector: Selector,
    /// The attribute with the URL (default `href`).
    pub attr: String,
    /// Which links are kept.
    pub scope: LinkScope,
    /// Depth limit from the crawl's seed pages (`None`: unlimited).
    pub max_depth: Option<u32>,
}

/// Next-page links.
#[derive(Debug, Clone)]
pub struct Pagination {
    /// The "next page" element (its `href`).
    pub next: Selector,
    /// Pages followed at most (`None`: unlimited).
    pub max_pages: Option<u32>,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The id jobs refer to (`template_id`).
    pub id: String,
    /// One item per match; `None`: one item per page.
    pub item: Option<Selector>,
    /// The fields, in order.
    pub fields: Vec<Field>,
    /// Links to follow.
    pub links: Option<Links>,
    /// Pagination.
    pub pagination: Option<Pagination>,
    /// True when a field takes HTML (`html`, `inner_html`): serialising markup is the DOM
    /// engine's, so every page of this template is parsed by html5ever.
    pub needs_dom: bool,
    /// 32 hex digits that change whenever the template's definition does (whatever the
    /// file's format, layout or comments): a crawl notices that its template changed.
    pub fingerprint: String,
}

impl Template {
    /// A template from JSON text; `origin` names it in errors until its id is known.
    pub fn from_json(text: &str, origin: &str) -> TemplateResult<Self> {
        let raw: RawTemplate = serde_json::from_str(text)
            .map_err(|e| TemplateError::new(origin, None, format!("invalid template: {e}")))?;
        Self::compile(raw)
    }

    /// A template from YAML text.
    pub fn from_yaml(text: &str, origin: &str) -> TemplateResult<Self> {
        let raw: RawTemplate = serde_norway::from_str(text)
            .map_err(|e| TemplateError::new(origin, None, format!("invalid template: {e}")))?;
        Self::compile(raw)
    }

    fn compile(raw: RawTemplate) -> TemplateResult<Self> {
        let fingerprint = format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(serde_json::to_string(&raw).unwrap_or_default().as_bytes())
        );
        let id = raw.id.trim().to_owned();
        if id.is_empty() {
            return Err(TemplateError::new(
                "<no id>",
                None,
                "the template needs an id",
            ));
        }
        let item = raw
            .item
            .as_deref()
            .map(|s| compile_selector(&id, s, None))
            .transpose()?;
        if raw.fields.is_empty() {
            return Err(TemplateError::new(&id, None, "the template has no fields"));
        }
        let mut names = HashSet::new();
        let mut fields = Vec::with_capacity(raw.fields.len());
        for (index, field) in raw.fields.into_iter().enumerate() {
            let field = compile_field(&id, index, field)?;
            if !names.insert(field.name.clone()) {
                return Err(TemplateError::new(
                    &id,
                    Some(&field.name),
                    "duplicate field name",
                ));
            }
            fields.push(field);
        }
        let links = raw.links.map(|l| compile_links(&id, l)).transpose()?;
        let pagination = raw
            .pagination
            .map(|p| -> TemplateResult<Pagination> {
                Ok(Pagination {
                    next: compile_selector(&id, &p.next, None)?,
                    max_pages: p.max_pages,
                })
            })
            .transpose()?;
        let needs_dom = fields
            .iter()
            .any(|f| matches!(f.extract, Extract::Html | Extract::InnerHtml));
        Ok(Self {
            id,
            item,
            fields,
            links,
            pagination,
            needs_dom,
            fingerprint,
        })
    }
}

fn compile_selector(id: &str, text: &str, field: Option<&str>) -> TemplateResult<Selector> {
    Selector::parse(text)
        .map_err(|e| TemplateError::new(id, field, format!("invalid CSS selector {text:?}: {e}")))
}

fn compile_field(id: &str, index: usize, field: RawField) -> TemplateResult<Field> {
    let Some(name) = field.name.filter(|n| !n.trim().is_empty()) else {
        return Err(TemplateError::new(
            id,
            None,
            format!("field #{} has no name", index + 1),
        ));
    };
    let extract = match field.extract.as_deref().unwrap_or("text") {
        "text" => Extract::Text,
        "html" => Extract::Html,
        "inner_html" => Extract::InnerHtml,
        other => match other.strip_prefix("attr:") {
            Some(attr) if !attr.is_empty() => Extract::Attr(attr.to_owned()),
            _ => {
                return Err(TemplateError::new(
                    id,
                    Some(&name),
                    format!("unknown extract {other:?}: use text, html, inner_html or attr:<name>"),
                ));
            }
        },
    };
    let regex = field
        .regex
        .as_deref()
        .map(|pattern| {
            Regex::new(pattern)
                .map_err(|e| TemplateError::new(id, Some(&name), format!("invalid regex: {e}")))
        })
        .transpose()?;
    let url_attr = matches!(&extract, Extract::Attr(a) if a == "href" || a == "src");
    Ok(Field {
        selector: compile_selector(id, &field.selector, Some(&name))?,
        absolute_url: field.absolute_url.unwrap_or(url_attr),
        name,
        extract,
        all: field.all,
        required: field.required,
        default: field.default,
        regex,
    })
}

fn compile_links(id: &str, links: RawLinks) -> TemplateResult<Links> {
    let scope = match links.scope.as_deref().unwrap_or("same_domain") {
        "same_domain" => LinkScope::SameDomain,
        "same_host" => LinkScope::SameHost,
        "any" => LinkScope::Any,
        "allowed_domains" if !links.allowed_domains.is_empty() => LinkScope::AllowedDomains(
            links
                .allowed_domains
                .iter()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
        ),
        other => {
            return Err(TemplateError::new(
                id,
                None,
                format!(
                    "links.scope {other:?}: use same_domain, same_host, any, or \
                     allowed_domains with a non-empty allowed_domains list"
                ),
            ));
        }
    };
    Ok(Links {
        selector: compile_selector(id, &links.selector, None)?,
        attr: links.attr.unwrap_or_else(|| "href".to_owned()),
        scope,
        max_depth: links.max_depth,
    })
}
