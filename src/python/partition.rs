//! Bindings of [`crate::partition`].
//!
//! URLs are copied into Rust strings first, the work runs without the GIL, and the result
//! lists hold the caller's original string objects (no copies back). A list item that is not
//! a string is reported as invalid, never dropped.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::partition::{self, INVALID, Partitioner, Strategy};

/// The caller's URL objects and their UTF-8 text, copied into one buffer.
struct Urls<'py> {
    objects: Vec<Bound<'py, PyAny>>,
    arena: String,
    /// Byte range of each object's text in `arena` (empty for a non-`str` item).
    spans: Vec<(usize, usize)>,
    not_strings: Vec<(usize, String)>,
}

impl Urls<'_> {
    fn texts(&self) -> Vec<&str> {
        self.spans
            .iter()
            .map(|&(start, end)| &self.arena[start..end])
            .collect()
    }
}

fn collect_urls<'py>(urls: &Bound<'py, PyAny>) -> PyResult<Urls<'py>> {
    let capacity = urls.len().unwrap_or(0);
    let mut objects = Vec::with_capacity(capacity);
    let mut arena = Vec::with_capacity(capacity * 64);
    let mut spans = Vec::with_capacity(capacity);
    let mut not_strings = Vec::new();
    // One buffer for all texts: a million URLs are a million fewer allocations.
    let mut push = |index: usize, item: Bound<'py, PyAny>| {
        let start = arena.len();
        match item.cast::<PyString>().map(PyStringMethods::encode_utf8) {
            Ok(Ok(bytes)) => arena.extend_from_slice(bytes.as_bytes()),
            Ok(Err(_)) => not_strings.push((index, "not encodable as UTF-8".to_owned())),
            Err(_) => {
                let type_name = item
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |name| name.to_string());
                not_strings.push((index, format!("not a string (got {type_name})")));
            }
        }
        spans.push((start, arena.len()));
        objects.push(item);
    };
    if let Ok(list) = urls.cast::<PyList>() {
        for (index, item) in list.iter().enumerate() {
            push(index, item);
        }
    } else {
        for (index, item) in urls.try_iter()?.enumerate() {
            push(index, item?);
        }
    }
    let arena = String::from_utf8(arena).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err("str.encode produced invalid UTF-8")
    })?;
    Ok(Urls {
        objects,
        arena,
        spans,
        not_strings,
    })
}

/// Assigns partitions with the GIL released; the non-`str` items are marked invalid.
fn assign_detached(
    py: Python<'_>,
    urls: &Urls<'_>,
    partitioner: Partitioner,
    weights: &[f64],
) -> partition::Assignment {
    let texts = urls.texts();
    let started = std::time::Instant::now();
    let mut assignment = py.detach(|| partitioner.assign(&texts, weights));
    tracing::debug!(urls = texts.len(), elapsed = ?started.elapsed(), "assigned partitions");
    if !urls.not_strings.is_empty() {
        for (index, _) in &urls.not_strings {
            assignment.partition_of[*index] = INVALID;
        }
        // The empty stand-in text was reported as an invalid URL; report the real reason.
        assignment
            .invalid
            .retain(|(index, _)| !urls.not_strings.iter().any(|(i, _)| i == index));
        assignment.invalid.extend(urls.not_strings.iter().cloned());
        assignment.invalid.sort_by_key(|(index, _)| *index);
    }
    assignment
}

fn partitioner(strategy: &str, grouping: &str) -> PyResult<Partitioner> {
    Ok(Partitioner {
        strategy: Strategy::parse(strategy)?,
        grouping: partition::parse_grouping(grouping)?,
    })
}

type InvalidList<'py> = Vec<(Bound<'py, PyAny>, String)>;

fn invalid_with_objects<'py>(urls: &Urls<'py>, invalid: Vec<(usize, String)>) -> InvalidList<'py> {
    invalid
        .into_iter()
        .map(|(index, reason)| (urls.objects[index].clone(), reason))
        .collect()
}

fn lists_of<'py>(
    py: Python<'py>,
    objects: &[Bound<'py, PyAny>],
    partition_of: &[i32],
    partitions: usize,
) -> PyResult<Bound<'py, PyList>> {
    let mut buckets: Vec<Vec<&Bound<'py, PyAny>>> = vec![Vec::new(); partitions];
    for (object, &partition) in objects.iter().zip(partition_of) {
        if let Ok(index) = usize::try_from(partition) {
            buckets[index].push(object);
        }
    }
    let lists = buckets
        .into_iter()
        .map(|bucket| PyList::new(py, bucket))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, lists)
}

/// Checks the settings, copies the URLs and assigns them (shared by both outputs).
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
    let urls = collect_urls(urls)?;
    let assignment = assign_detached(py, &urls, partitioner, &weights);
    Ok((urls, assignment))
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
    let lists = lists_of(py, &urls.objects, &assignment.partition_of, num_partitions)?;
    Ok((lists, invalid_with_objects(&urls, assignment.invalid)))
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
        invalid_with_objects(&urls, assignment.invalid),
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
    let mut flat = Urls {
        objects: Vec::new(),
        arena: String::new(),
        spans: Vec::new(),
        not_strings: Vec::new(),
    };
    for part in &partitions {
        let urls = collect_urls(part)?;
        lengths.push(urls.objects.len());
        let (offset, arena_offset) = (flat.objects.len(), flat.arena.len());
        flat.not_strings.extend(
            urls.not_strings
                .into_iter()
                .map(|(index, reason)| (index + offset, reason)),
        );
        flat.objects.extend(urls.objects);
        flat.arena.push_str(&urls.arena);
        flat.spans.extend(
            urls.spans
                .iter()
                .map(|&(start, end)| (start + arena_offset, end + arena_offset)),
        );
    }
    let texts = flat.texts();
    let mut optimized =
        py.detach(|| partition::optimize(&texts, &lengths, &weights, grouping, tolerance))?;
    for (index, reason) in &flat.not_strings {
        if let Some(entry) = optimized.invalid.iter_mut().find(|(i, _)| i == index) {
            entry.1.clone_from(reason);
        }
    }
    let lists = lists_of(py, &flat.objects, &optimized.partition_of, partitions.len())?;
    let report = pyo3::types::PyDict::new(py);
    report.set_item("balanced", optimized.report.balanced)?;
    report.set_item("max_load_ratio", optimized.report.max_load_ratio)?;
    report.set_item("tolerance", tolerance)?;
    report.set_item("moved_domains", optimized.report.moved_groups)?;
    report.set_item("oversized_domains", optimized.report.oversized)?;
    Ok((
        lists,
        report.into_any(),
        invalid_with_objects(&flat, optimized.invalid),
    ))
}
