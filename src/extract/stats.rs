//! How pages were parsed: counters for the whole process (the worker's `/metrics` and
//! `scraperv4.extract.engine_stats()` read them).

use std::sync::atomic::{AtomicU64, Ordering};

use super::fast::Fallback;

/// Which engine parsed a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The fast engine built the page's tree.
    Fast,
    /// The template has HTML fields: html5ever parses every page.
    DomByTemplate,
    /// The page needed a rule the fast engine does not carry out: html5ever parsed it.
    Fallback(Fallback),
}

impl Engine {
    /// `fast`, or `dom` (with the fallback reason, if the fast engine handed the page over).
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Self::Fast => ("fast", ""),
            Self::DomByTemplate => ("dom", "template_needs_dom"),
            Self::Fallback(reason) => ("dom", reason.as_str()),
        }
    }
}

static FAST: AtomicU64 = AtomicU64::new(0);
static DOM_BY_TEMPLATE: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: [AtomicU64; Fallback::ALL.len()] =
    [const { AtomicU64::new(0) }; Fallback::ALL.len()];

pub(crate) fn record(engine: Engine) {
    let counter = match engine {
        Engine::Fast => &FAST,
        Engine::DomByTemplate => &DOM_BY_TEMPLATE,
        Engine::Fallback(reason) => {
            let index = Fallback::ALL.iter().position(|&r| r == reason).unwrap_or(0);
            &FALLBACKS[index]
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Pages parsed since the process started, by engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Pages whose tree the fast engine built.
    pub fast: u64,
    /// Pages of templates with HTML fields (always html5ever).
    pub dom_by_template: u64,
    /// Pages the fast engine handed to html5ever, by reason.
    pub fallbacks: Vec<(&'static str, u64)>,
}

/// The counters now.
pub fn engine_stats() -> EngineStats {
    EngineStats {
        fast: FAST.load(Ordering::Relaxed),
        dom_by_template: DOM_BY_TEMPLATE.load(Ordering::Relaxed),
        fallbacks: Fallback::ALL
            .iter()
            .zip(&FALLBACKS)
            .map(|(reason, count)| (reason.as_str(), count.load(Ordering::Relaxed)))
            .collect(),
    }
}
