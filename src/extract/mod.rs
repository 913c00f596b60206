//! Extraction: templates of CSS selectors turned into items, links and next pages.
//!
//! Owns the template schema and its validation ([`template`]), compiled selectors
//! ([`select`]), running a template over a page ([`engine`]) on the tree of the fast engine
//! ([`fast`]) or of html5ever ([`dom`]) — the same tree either way — with the text rule of
//! [`text`], the caps on what one page may produce and cost ([`limits`]), many pages on all
//! cores ([`parallel`]), the counters of
//! which engine parsed what ([`stats`]) and the directory of templates jobs refer to
//! ([`registry`]).

mod dom;
pub mod engine;
pub mod fast;
pub mod limits;
pub mod parallel;
pub mod registry;
pub mod report;
pub mod select;
pub mod stats;
pub mod template;
pub mod text;

pub use engine::{Item, PageOutput};
pub use fast::Fallback;
pub use limits::{LimitError, Limits};
pub use registry::TemplateRegistry;
pub use report::{FieldReport, PageReport};
pub use stats::{Engine, EngineStats, engine_stats};
pub use template::{Template, TemplateError, TemplateResult};

/// Canonical dumps of a page's tree from the fast engine (`None` when it falls back) and
/// from html5ever, for the differential tests: equal when the engines agree.
pub fn tree_dumps(html: &str) -> (Result<String, Fallback>, String) {
    let fast =
        fast::prepare(html).and_then(|prepared| fast::parse(&prepared).map(|doc| fast::dump(&doc)));
    (fast, dom::dump(&dom::parse(html)))
}
