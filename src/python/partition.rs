//! Bindings of [`crate::partition`].
//!
//! URLs are read in place (`PyBackedStr`: the UTF-8 text CPython keeps in each `str`, no copy
//! for ASCII), the work runs without the GIL, and the result lists hold the caller's original
//! string objects: the reference taken on each `str` while reading the input is moved into its
//! list, not copied. A list item that is not a string is reported as invalid, never dropped.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::partition::{self, INVALID, Partitioner, Strategy};

/// The caller's URLs, each holding a reference to its `str` and borrowing its text.
struct Urls<'py> {
    /// One per input item; a non-`str` item has an empty stand-in (an invalid URL).
    texts: Vec<PyBackedStr>,
    /// `(index, object, reason)` of each item that is not a UTF-8 encodable `str`, by index.
    not_strings: Vec<(usize, Bound<'py, PyAny>, String)>,
    stand_in: Bound<'py, PyString>,
}

impl<'py> Urls<'py> {
    fn new(py: Python<'py>, capacity: usize) -> Self {
        Self {
            texts: Vec::with_capacity(capacity),
            not_strings: Vec::new(),
            stand_in: PyString::new(py, ""),
        }
    }

    fn push(&mut self, item: Bound<'py, PyAny>) {
        let index = self.texts.len();
        let (reason, object) = match item.cast_into::<PyString>() {
            Ok(text) => match PyBackedStr::try_from(text.clone()) {
                Ok(text) => {
                    self.texts.push(text);
                    return;
                }
                Err(_) => ("not encodable as UTF-8".to_owned(), text.into_any()),
            },
            Err(error) => {
                let item = error.into_inner();
                let type_name = item
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |name| name.to_string());
                (format!("not a string (got {type_name})"), item)
            }
        };
        self.not_strings.push((index, object, reason));
        self.texts
            .push(PyBackedStr::try_from(self.stand_in.clone()).expect("an empty str is UTF-8"));
    }

    fn extend(&mut self, urls: &Bound<'py, PyAny>) -> PyResult<()> {
        if let Ok(list) = urls.cast::<PyList>() {
            self.texts.reserve(list.len());
            for item in list.iter() {
                self.push(item);
            }
        } else {
            for item in urls.try_iter()? {
                self.push(item?);
            }
        }
        Ok(())
    }

    /// The caller's object at `index`.
    fn object(&self, index: usize) -> Bound<'py, PyAny> {
        match self
            .not_strings
            .binary_search_by_key(&index, |(i, _, _)| *i)
        {
            Ok(found) => self.not_strings[found].1.clone(),
            Err(_) => self.texts[index]
                .as_py_str()
                .bind(self.stand_in.py())
                .clone()
                .into_any(),
        }
    }

    /// `(object, reason)` of each invalid URL (`invalid` holds indices, in order).
    fn invalid_objects(&self, invalid: Vec<(usize, String)>) -> InvalidList<'py> {
        invalid
            .into_iter()
            .map(|(index, reason)| (self.object(index), reason))
            .collect()
    }

    /// Gives the non-`str` items their own reason (their stand-in text was reported as an
    /// invalid URL).
    fn correct_reasons(&self, invalid: &mut [(usize, String)]) {
        if self.not_strings.is_empty() {
            return;
        }
        for (index, reason) in invalid.iter_mut() {
            if let Ok(found) = self.not_strings.binary_search_by_key(index, |(i, _, _)| *i) {
                reason.clone_from(&self.not_strings[found].2);
            }
        }
    }

    /// The partitions as lists, in input order within each, moving each URL's reference into
    /// its list (items with partition [`INVALID`] are left out).
    fn into_lists(self, partition_of: &[i32], partitions: usize) -> PyResult<Bound<'py, PyList>> {
        let py = self.stand_in.py();
        let mut sizes = vec![0_usize; partitions];
        for &partition in partition_of {
            if let Ok(index) = usize::try_from(partition) {
                sizes[index] += 1;
            }
        }
        let mut buckets: Vec<Vec<Bound<'py, PyAny>>> =
            sizes.into_iter().map(Vec::with_capacity).collect();
        let mut not_strings = self.not_strings.into_iter().peekable();
        for (index, (text, &partition)) in self.texts.into_iter().zip(partition_of).enumerate() {
            let object = match not_strings.next_if(|(i, _, _)| *i == index) {
                Some((_, object, _)) => object,
                None => text.into_pyobject(py)?.into_any(),
            };
            if let Ok(partition) = usize::try_from(partition) {
                buckets[partition].push(object);
            }
        }
        let lists = buckets
            .into_iter()
            .map(|bucket| PyList::new(py, bucket))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }
}

/// Assigns partitions with the GIL released; the non-`str` items are marked invalid.
fn assign_detached(
    py: Python<'_>,
    urls: &Urls<'_>,
    partitioner: Partitioner,
    weights: &[f64],
) -> partition::Assignment {
    let texts = &urls.texts;
    let started = std::time::Instant::now();
    let mut assignment = py.detach(|| partitioner.assign(texts, weights));
    tracing::debug!(urls = texts.len(), elapsed = ?started.elapsed(), "assigned partitions");
    for (index, _, _) in &urls.not_strings {
        assignment.partition_of[*index] = INVALID;
    }
    urls.correct_reasons(&mut assignment.invalid);
    assignment
}

fn partitioner(strategy: &str, grouping: &str) -> PyResult<Partitioner> {
    Ok(Partitioner {
        strategy: Strategy::parse(strategy)?,
        grouping: partition::parse_grouping(grouping)?,
    })
}

type InvalidList<'py> = Vec<(Bound<'py, PyAny>, String)>;

/// Checks the settings, reads the URLs and assigns them (shared by both outputs).
fn assign<'py>(
    py: Python<'py>,
    urls: &Bound<'py, PyAny>,
    num_partitions: usize,
    strategy: &str,
    grouping: &str,
    weights: Option<Vec<f64>>,
) -> PyResult<(Urls<'py>, partition::Assignment)> {
    let partitioner = partitioner(strategy, grouping)?;
    let weights = partition::weights_for(num_partitions, weights)?;
    let mut read = Urls::new(py, 0);
    read.extend(urls)?;
    let assignment = assign_detached(py, &read, partitioner, &weights);
    Ok((read, assignment))
}

/// Partitions `urls` into lists: `(partitions, [(invalid_url, reason), ...])`.
#[pyfunction]
#[pyo3(signature = (urls, num_partitions, strategy = "domain_hash", grouping = "registrable_domain", weights = None))]
pub(crate) fn partition_lists<'py>(
    py: Python<'py>,
    urls: &Bound<'py, PyAny>,
    num_partitions: usize,
    strategy: &str,
    grouping: &str,
    weights: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyList>, InvalidList<'py>)> {
    let (urls, assignment) = assign(py, urls, num_partitions, strategy, grouping, weights)?;
    let invalid = urls.invalid_objects(assignment.invalid);
    let lists = urls.into_lists(&assignment.partition_of, num_partitions)?;
    Ok((lists, invalid))
}

/// Partition index per URL as native-endian int32 bytes (`-1` for invalid), and the invalid
/// ones with their reasons.
#[pyfunction]
#[pyo3(signature = (urls, num_partitions, strategy = "domain_hash", grouping = "registrable_domain", weights = None))]
pub(crate) fn partition_indices<'py>(
    py: Python<'py>,
    urls: &Bound<'py, PyAny>,
    num_partitions: usize,
    strategy: &str,
    grouping: &str,
    weights: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyBytes>, InvalidList<'py>)> {
    let (urls, assignment) = assign(py, urls, num_partitions, strategy, grouping, weights)?;
    let bytes: Vec<u8> = assignment
        .partition_of
        .iter()
        .flat_map(|p| p.to_ne_bytes())
        .collect();
    Ok((
        PyBytes::new(py, &bytes),
        urls.invalid_objects(assignment.invalid),
    ))
}

/// Rebalances `partitions` (a list of lists of URLs) by moving whole domains.
///
/// Returns `(partitions, report, invalid)` where `report` is a dict with `balanced`,
/// `max_load_ratio`, `tolerance`, `moved_domains` and `oversized_domains`.
#[pyfunction]
#[pyo3(signature = (partitions, tolerance = 0.1, grouping = "registrable_domain", weights = None))]
pub(crate) fn optimize_partitions<'py>(
    py: Python<'py>,
    partitions: Vec<Bound<'py, PyAny>>,
    tolerance: f64,
    grouping: &str,
    weights: Option<Vec<f64>>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>, InvalidList<'py>)> {
    let grouping = partition::parse_grouping(grouping)?;
    let tolerance = partition::check_tolerance(tolerance)?;
    let weights = partition::weights_for(partitions.len(), weights)?;
    let mut lengths = Vec::with_capacity(partitions.len());
    let mut flat = Urls::new(py, 0);
    for part in &partitions {
        let before = flat.texts.len();
        flat.extend(part)?;
        lengths.push(flat.texts.len() - before);
    }
    let texts = &flat.texts;
    let mut optimized =
        py.detach(|| partition::optimize(texts, &lengths, &weights, grouping, tolerance))?;
    flat.correct_reasons(&mut optimized.invalid);
    let invalid = flat.invalid_objects(optimized.invalid);
    let lists = flat.into_lists(&optimized.partition_of, partitions.len())?;
    let report = PyDict::new(py);
    report.set_item("balanced", optimized.report.balanced)?;
    report.set_item("max_load_ratio", optimized.report.max_load_ratio)?;
    report.set_item("tolerance", tolerance)?;
    report.set_item("moved_domains", optimized.report.moved_groups)?;
    report.set_item("oversized_domains", optimized.report.oversized)?;
    Ok((lists, report.into_any(), invalid))
}
