//! Caps on what extracting one page may produce and cost.
//!
//! A template runs each field's selector inside each item, so a page can make the work and
//! the output grow faster than itself: `'<div class=p>' * 50_000 + '<h2>' + 'A' * 5_000_000`
//! with item `.p` and field `h2` gives 50,000 nested items, each with its own copy of 5 MB of
//! text (gigabytes), found by walking the rest of the page for each (quadratic). [`Limits`]
//! bound a page's item candidates, links and output bytes (a multiple of the page's size),
//! its work (elements visited, a multiple of the page's size and the template's fields: a
//! legitimate page visits each element once per field, a few times over when items nest)
//! and its time (a deadline, checked every few thousand elements visited); extraction stops
//! at the first one broken with a [`LimitError`] naming it — the worker fails such a job for
//! good instead of retrying it on the next worker.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// The caps of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most elements matching the item selector (candidates, before required fields
    /// filter them).
    pub max_items: usize,
    /// Most links to follow.
    pub max_links: usize,
    /// Output bytes (field values) per byte of page...
    pub output_per_page_byte: usize,
    /// ...plus this many.
    pub output_floor: usize,
    /// Elements visited per byte of page and per field of the template (plus four: items,
    /// links, next page, base URL)...
    pub visits_per_page_byte: u64,
    /// ...plus this many.
    pub visit_floor: u64,
    /// Refuse pages nesting elements deeper than [`super::fast::MAX_DEPTH`] (else html5ever
    /// builds their tree, in time quadratic in the depth).
    pub refuse_deep: bool,
    /// Stop when this instant passes.
    pub deadline: Option<Instant>,
}

impl Limits {
    /// The defaults: 50,000 items, 20,000 links, 8 bytes of output per byte of page plus
    /// 1 MiB, 4 element visits per byte of page and field plus 4 million, no nesting deeper
    /// than 1024, no deadline.
    pub const DEFAULT: Self = Self {
        max_items: 50_000,
        max_links: 20_000,
        output_per_page_byte: 8,
        output_floor: 1 << 20,
        visits_per_page_byte: 4,
        visit_floor: 4 << 20,
        refuse_deep: true,
        deadline: None,
    };

    /// No caps at all (tests, fuzzing, trusted pages).
    pub const NONE: Self = Self {
        max_items: usize::MAX,
        max_links: usize::MAX,
        output_per_page_byte: usize::MAX,
        output_floor: usize::MAX,
        visits_per_page_byte: u64::MAX,
        visit_floor: u64::MAX,
        refuse_deep: false,
        deadline: None,
    };

    /// The defaults with a deadline `within` from now.
    pub fn within(within: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(within),
            ..Self::DEFAULT
        }
    }

    /// The output bytes allowed for a page of `page_bytes`.
    pub fn max_output(&self, page_bytes: usize) -> usize {
        page_bytes
            .saturating_mul(self.output_per_page_byte)
            .saturating_add(self.output_floor)
    }

    /// The element visits allowed for a page of `page_bytes` and a template of `fields`.
    pub fn max_visits(&self, page_bytes: usize, fields: usize) -> u64 {
        let bytes = u64::try_from(page_bytes).unwrap_or(u64::MAX);
        let fields = u64::try_from(fields).unwrap_or(u64::MAX).saturating_add(4);
        bytes
            .saturating_mul(fields)
            .saturating_mul(self.visits_per_page_byte)
            .saturating_add(self.visit_floor)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A cap a page broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Too many elements match the item selector.
    #[error("the page has more than {limit} item elements (the per-page cap): not extracted")]
    Items {
        /// The cap.
        limit: usize,
    },
    /// Too many links to follow.
    #[error("the page has more than {limit} links to follow (the per-page cap): not extracted")]
    Links {
        /// The cap.
        limit: usize,
    },
    /// The values extracted are too large for the page's size (nested items copying the
    /// same text, typically).
    #[error(
        "the page's extracted values pass {limit} bytes ({page_bytes}-byte page; nested items \
         repeating its text?): not extracted"
    )]
    Output {
        /// The cap.
        limit: usize,
        /// The page's size.
        page_bytes: usize,
    },
    /// Too much work for the page's size (nested items searching the same elements again
    /// and again, typically).
    #[error(
        "extracting the page visits more than {limit} elements ({page_bytes}-byte page; \
         nested items?): not extracted"
    )]
    Work {
        /// The cap.
        limit: u64,
        /// The page's size.
        page_bytes: usize,
    },
    /// Elements nested deeper than browsers nest them (building such a tree takes time
    /// quadratic in its depth).
    #[error("the page nests elements more than {limit} deep: not extracted")]
    Depth {
        /// The cap.
        limit: usize,
    },
    /// The deadline passed.
    #[error("extraction was stopped at its deadline (the page takes too long to extract)")]
    Deadline,
}

/// How often (elements visited) the clock is read.
const CLOCK_EVERY: u32 = 4096;

/// What is left of a page's limits while it is extracted; shared by the iterator chains
/// (interior mutability), and sticky once a cap is broken.
pub(crate) struct Budget {
    deadline: Option<Instant>,
    output_left: Cell<usize>,
    output_limit: usize,
    page_bytes: usize,
    max_items: usize,
    max_links: usize,
    visits_left: Cell<u64>,
    visit_limit: u64,
    ticks: Cell<u32>,
    broken: RefCell<Option<LimitError>>,
}

impl Budget {
    pub(crate) fn new(limits: &Limits, page_bytes: usize, fields: usize) -> Self {
        let output_limit = limits.max_output(page_bytes);
        let visit_limit = limits.max_visits(page_bytes, fields);
        Self {
            visits_left: Cell::new(visit_limit),
            visit_limit,
            deadline: limits.deadline,
            output_left: Cell::new(output_limit),
            output_limit,
            page_bytes,
            max_items: limits.max_items,
            max_links: limits.max_links,
            ticks: Cell::new(0),
            broken: RefCell::new(None),
        }
    }

    /// One element visited: false once any cap is broken (iteration stops).
    pub(crate) fn visit(&self) -> bool {
        if self.broken.borrow().is_some() {
            return false;
        }
        let Some(left) = self.visits_left.get().checked_sub(1) else {
            self.fail(LimitError::Work {
                limit: self.visit_limit,
                page_bytes: self.page_bytes,
            });
            return false;
        };
        self.visits_left.set(left);
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks.is_multiple_of(CLOCK_EVERY)
            && let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            self.fail(LimitError::Deadline);
            return false;
        }
        true
    }

    /// `bytes` more of output: false (and broken) past the cap.
    pub(crate) fn spend(&self, bytes: usize) -> bool {
        if let Some(left) = self.output_left.get().checked_sub(bytes) {
            self.output_left.set(left);
            true
        } else {
            self.fail(LimitError::Output {
                limit: self.output_limit,
                page_bytes: self.page_bytes,
            });
            false
        }
    }

    /// The item candidates allowed.
    pub(crate) fn max_items(&self) -> usize {
        self.max_items
    }

    /// `count` item candidates: false (and broken) past the cap.
    pub(crate) fn items(&self, count: usize) -> bool {
        if count > self.max_items {
            self.fail(LimitError::Items {
                limit: self.max_items,
            });
            return false;
        }
        true
    }

    /// `count` links: false (and broken) past the cap.
    pub(crate) fn links(&self, count: usize) -> bool {
        if count > self.max_links {
            self.fail(LimitError::Links {
                limit: self.max_links,
            });
            return false;
        }
        true
    }

    fn fail(&self, error: LimitError) {
        self.broken.borrow_mut().get_or_insert(error);
    }

    /// The first cap broken, if any.
    pub(crate) fn check(&self) -> Result<(), LimitError> {
        match self.broken.borrow().as_ref() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_breaks_once_and_stays_broken() {
        let budget = Budget::new(&Limits::DEFAULT, 100, 1);
        assert_eq!(Limits::DEFAULT.max_output(100), 800 + (1 << 20));
        assert!(budget.spend(1 << 20));
        assert!(!budget.spend(1000));
        assert!(!budget.visit(), "iteration stops after a broken cap");
        assert!(matches!(budget.check(), Err(LimitError::Output { .. })));
        assert!(!budget.items(0) || budget.check().is_err());
    }

    #[test]
    fn the_deadline_is_read_every_few_thousand_visits() {
        let limits = Limits {
            deadline: Some(Instant::now()),
            ..Limits::DEFAULT
        };
        let budget = Budget::new(&limits, 10, 1);
        let visited = (0..100_000).take_while(|_| budget.visit()).count();
        assert_eq!(visited, CLOCK_EVERY as usize - 1);
        assert_eq!(budget.check(), Err(LimitError::Deadline));
        let none = Budget::new(&Limits::NONE, 10, 1);
        assert!((0..100_000).all(|_| none.visit()) && none.spend(usize::MAX / 2));
    }

    #[test]
    fn work_is_capped_by_page_size_and_fields() {
        let limits = Limits {
            visit_floor: 10,
            ..Limits::DEFAULT
        };
        assert_eq!(limits.max_visits(100, 1), 100 * 5 * 4 + 10);
        let budget = Budget::new(&limits, 100, 1);
        let visited = (0..1_000_000).take_while(|_| budget.visit()).count();
        assert_eq!(visited, 2010);
        assert!(matches!(
            budget.check(),
            Err(LimitError::Work { limit: 2010, .. })
        ));
    }
}
