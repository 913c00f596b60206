//! Extraction: templates of CSS selectors turned into items, links and next pages.
//!
//! Owns the template schema and its validation ([`template`]), running a template over a
//! page ([`engine`], with the streaming engine [`stream`] for the templates it can serve) and
//! the directory of templates jobs refer to ([`registry`]).

pub mod engine;
pub mod registry;
pub mod stream;
pub mod template;

pub use engine::{Item, PageOutput};
pub use registry::TemplateRegistry;
pub use template::{Template, TemplateError, TemplateResult};
