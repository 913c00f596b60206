//! Extracting many pages on all cores, handing each page's items over as soon as it is done.
//!
//! The pages are parsed on rayon's pool while the calling thread takes the finished ones off a
//! channel, in the order they finish, and turns them into whatever the caller needs (Python
//! objects, in the binding). That conversion is the serial part of a many-page call; here it
//! overlaps the parsing instead of following it, and the items it is done with are dropped on
//! the pool ([`Finished::discard`]), not on the calling thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::engine::Item;
use super::limits::{LimitError, Limits};
use super::template::Template;

/// A page's items, or the cap it broke.
pub type PageResult = Result<Vec<Item>, LimitError>;

/// The finished pages of one [`extract_parallel`] call, as they finish.
pub struct Finished<'s, 'scope> {
    receiver: mpsc::Receiver<(usize, PageResult)>,
    scope: &'s rayon::Scope<'scope>,
    stop: &'s AtomicBool,
}

impl Finished<'_, '_> {
    /// The next finished page, `(index in the input, result)`; blocks until one is done and
    /// is `None` once every page was handed over (or after [`Finished::stop`]).
    pub fn next_page(&mut self) -> Option<(usize, PageResult)> {
        self.receiver.recv().ok()
    }

    /// The next page already finished, without waiting.
    pub fn try_next_page(&mut self) -> Option<(usize, PageResult)> {
        self.receiver.try_recv().ok()
    }

    /// Drops `items` on the pool.
    pub fn discard(&self, items: Vec<Item>) {
        self.scope.spawn(move |_| drop(items));
    }

    /// Skips the pages not started yet (after an error, say).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Extracts the items of each `(html, base_url)` page of `pages` on rayon's pool, each within
/// the limits `limits()` gives when the page starts, and runs `consume` on the calling thread
/// with the pages as they finish. Returns what `consume` returns, once every page that was
/// started has finished.
pub fn extract_parallel<S, R>(
    template: &Template,
    pages: &[(S, S)],
    limits: impl Fn() -> Limits + Sync,
    consume: impl FnOnce(&mut Finished<'_, '_>) -> R,
) -> R
where
    S: AsRef<str> + Sync,
{
    use rayon::prelude::*;

    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel();
    rayon::in_place_scope(|scope| {
        let (stop, limits) = (&stop, &limits);
        scope.spawn(move |_| {
            pages
                .par_iter()
                .enumerate()
                .for_each_with(sender, |sender, (index, (html, base))| {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let result = template.extract_within(html.as_ref(), base.as_ref(), &limits());
                    // The receiver is gone only once `consume` returned: nobody wants it.
                    let _ = sender.send((index, result));
                });
        });
        let mut finished = Finished {
            receiver,
            scope,
            stop,
        };
        let result = consume(&mut finished);
        // Whatever `consume` left unread, the pages not started are not wanted any more.
        finished.stop();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str =
        r#"{"id": "t", "item": "li", "fields": [{"name": "name", "selector": "b"}]}"#;

    fn page(i: usize) -> String {
        use std::fmt::Write;
        let mut html = String::from("<ul>");
        for j in 0..i % 7 {
            let _ = write!(html, "<li><b>{i}-{j}</b></li>");
        }
        html + "</ul>"
    }

    #[test]
    fn every_page_is_handed_over_once_with_the_items_of_one_at_a_time_extraction() {
        let template = Template::from_json(TEMPLATE, "<test>").unwrap();
        let pages: Vec<(String, String)> = (0..300)
            .map(|i| (page(i), "https://example.com/".to_owned()))
            .collect();
        let mut got: Vec<Option<Vec<Item>>> = vec![None; pages.len()];
        extract_parallel(
            &template,
            &pages,
            || Limits::NONE,
            |finished| {
                while let Some((index, result)) = finished.next_page() {
                    let items = result.unwrap();
                    assert!(
                        got[index].replace(items.clone()).is_none(),
                        "page {index} twice"
                    );
                    finished.discard(items);
                }
            },
        );
        for (index, (html, base)) in pages.iter().enumerate() {
            assert_eq!(
                got[index].as_ref(),
                Some(&template.extract(html, base)),
                "page {index}"
            );
        }
    }

    #[test]
    fn stopping_early_returns_and_skips_the_pages_not_started() {
        let template = Template::from_json(TEMPLATE, "<test>").unwrap();
        let pages: Vec<(String, String)> = (0..2_000)
            .map(|i| (page(i), "https://example.com/".to_owned()))
            .collect();
        let seen = extract_parallel(
            &template,
            &pages,
            || Limits::NONE,
            |finished| {
                let first = finished.next_page().map(|(index, _)| index);
                finished.stop();
                first
            },
        );
        assert!(seen.is_some_and(|index| index < pages.len()));
    }
}
