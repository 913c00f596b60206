//! Bindings of [`crate::extract`]: `Template` and `TemplateRegistry`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;

use super::errors::PyErrorClass;
use crate::extract::parallel::extract_parallel;
use crate::extract::{Item, LimitError, Limits, Template, TemplateError, TemplateRegistry};

impl From<TemplateError> for PyErr {
    fn from(error: TemplateError) -> Self {
        PyErrorClass::Template.raise((error.to_string(), error.template, error.field))
    }
}

/// The caps of one page extracted from Python: the defaults, and a minute at most.
fn page_limits() -> Limits {
    Limits::within(std::time::Duration::from_secs(60))
}

impl From<LimitError> for PyErr {
    fn from(error: LimitError) -> Self {
        PyErrorClass::ExtractionLimit.raise((error.to_string(),))
    }
}

pub(crate) fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(f)) => f.into_pyobject(py)?.into_any(),
            (None, None) => n.to_string().into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

pub(crate) fn items_to_python<'py>(
    py: Python<'py>,
    items: &[Item],
) -> PyResult<Bound<'py, PyList>> {
    items_to_python_with(py, items, &mut FieldNames::default())
}

/// Python strings of the field names, made once per call: every item has the same keys, and
/// a reused key object also keeps its cached hash for the dict insertions. Made from the
/// template's fields, the `i`-th key of an item is found at position `i` (one comparison).
#[derive(Default)]
pub(crate) struct FieldNames<'py> {
    names: Vec<(String, Bound<'py, PyString>)>,
}

impl<'py> FieldNames<'py> {
    fn of(py: Python<'py>, template: &Template) -> Self {
        Self {
            names: template
                .fields
                .iter()
                .map(|field| (field.name.clone(), PyString::new(py, &field.name)))
                .collect(),
        }
    }

    fn get(&mut self, py: Python<'py>, position: usize, key: &str) -> Bound<'py, PyString> {
        if let Some((text, name)) = self.names.get(position)
            && text == key
        {
            return name.clone();
        }
        if let Some((_, name)) = self.names.iter().find(|(text, _)| text == key) {
            return name.clone();
        }
        let name = PyString::new(py, key);
        self.names.push((key.to_owned(), name.clone()));
        name
    }
}

pub(crate) fn items_to_python_with<'py>(
    py: Python<'py>,
    items: &[Item],
    names: &mut FieldNames<'py>,
) -> PyResult<Bound<'py, PyList>> {
    let dicts = items
        .iter()
        .map(|item| {
            let dict = PyDict::new(py);
            for (position, (key, value)) in item.iter().enumerate() {
                dict.set_item(names.get(py, position, key), to_python(py, value)?)?;
            }
            Ok(dict)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, dicts)
}

/// A compiled extraction template.
#[pyclass(frozen, name = "Template", module = "scraperv4._core")]
pub(crate) struct PyTemplate {
    template: Arc<Template>,
}

impl PyTemplate {
    pub(crate) fn shared(&self) -> Arc<Template> {
        Arc::clone(&self.template)
    }
}

#[pymethods]
impl PyTemplate {
    /// A template from JSON text (`origin` names it in errors).
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<json>"))]
    fn from_json(text: &str, origin: &str) -> PyResult<Self> {
        Ok(Self {
            template: Arc::new(Template::from_json(text, origin)?),
        })
    }

    /// A template from YAML text.
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<yaml>"))]
    fn from_yaml(text: &str, origin: &str) -> PyResult<Self> {
        Ok(Self {
            template: Arc::new(Template::from_yaml(text, origin)?),
        })
    }

    /// The template's id.
    #[getter]
    fn id(&self) -> &str {
        &self.template.id
    }

    /// Field names, in order.
    #[getter]
    fn field_names(&self) -> Vec<String> {
        self.template
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    /// Items of one page (parsing runs without the GIL), within the default page caps.
    fn extract<'py>(
        &self,
        py: Python<'py>,
        html: String,
        base_url: String,
    ) -> PyResult<Bound<'py, PyList>> {
        let template = Arc::clone(&self.template);
        let items = py.detach(move || template.extract_within(&html, &base_url, &page_limits()))?;
        items_to_python(py, &items)
    }

    /// Changes whenever the template's definition does.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.template.fingerprint
    }

    /// What each field matched on one page: `item_elements`, and per field `name`,
    /// `selector`, `items_matched` and `page_matches` (parsing runs without the GIL).
    fn field_report<'py>(&self, py: Python<'py>, html: String) -> PyResult<Bound<'py, PyAny>> {
        let template = Arc::clone(&self.template);
        let report = py.detach(move || template.field_report(&html));
        to_python(py, &serde_json::to_value(report).unwrap_or_default())
    }

    /// `"fast"` when pages go to the fast engine first (html5ever takes the pages it cannot
    /// parse exactly), `"dom"` when a field takes HTML and html5ever parses every page.
    #[getter]
    fn engine(&self) -> &'static str {
        if self.template.needs_dom {
            "dom"
        } else {
            "fast"
        }
    }

    /// Items of one page from the DOM engine, whatever the template (engine parity checks).
    fn _extract_dom<'py>(
        &self,
        py: Python<'py>,
        html: String,
        base_url: String,
    ) -> PyResult<Bound<'py, PyList>> {
        let template = Arc::clone(&self.template);
        let items = py.detach(move || {
            template.extract_with_dom(&html, url::Url::parse(&base_url).ok().as_ref())
        });
        items_to_python(py, &items)
    }

    /// Items, links and next page of one page from the DOM engine (engine parity checks).
    fn _analyse_dom<'py>(
        &self,
        py: Python<'py>,
        html: String,
        base_url: String,
    ) -> PyResult<(Bound<'py, PyList>, Vec<String>, Option<String>)> {
        let template = Arc::clone(&self.template);
        let output = py.detach(move || template.analyse_with_dom(&html, &base_url));
        Ok((
            items_to_python(py, &output.items)?,
            output.links,
            output.next_page,
        ))
    }

    /// Items, links and next page of one page, as the worker sees them.
    fn _analyse<'py>(
        &self,
        py: Python<'py>,
        html: String,
        base_url: String,
    ) -> PyResult<(Bound<'py, PyList>, Vec<String>, Option<String>)> {
        let template = Arc::clone(&self.template);
        let (output, _) =
            py.detach(move || template.analyse_within(&html, &base_url, &page_limits()))?;
        Ok((
            items_to_python(py, &output.items)?,
            output.links,
            output.next_page,
        ))
    }

    /// Items of many `(html, base_url)` pages, on all cores without the GIL.
    ///
    /// The pages are read in place (no copy of their text). Each finished page is turned
    /// into Python objects here while the other pages are still being parsed, and its Rust
    /// items are dropped on the pool; this thread waits for the next page without the GIL.
    fn extract_many<'py>(
        &self,
        py: Python<'py>,
        pages: Vec<(PyBackedStr, PyBackedStr)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let template = &self.template;
        // The GIL is held only while pages are turned into Python objects: not while this
        // thread waits for pages, nor at the end, when the pool's last tasks (the items
        // dropped there) are waited for — a page being parsed for another thread may need
        // the GIL to log a warning through Python's logging.
        let list: PyResult<Py<PyList>> = py.detach(|| {
            extract_parallel(template, &pages, page_limits, |finished| {
                Python::attach(|py| {
                    let list = PyList::new(py, (0..pages.len()).map(|_| py.None()))?;
                    let mut names = FieldNames::of(py, template);
                    let mut convert = || -> PyResult<()> {
                        loop {
                            // Pages already done are taken with the GIL held (one switch
                            // per wait, not per page); the wait for the next one is without.
                            let next = match finished.try_next_page() {
                                Some(page) => Some(page),
                                None => py.detach(|| finished.next_page()),
                            };
                            let Some((index, result)) = next else {
                                return Ok(());
                            };
                            let items = result?;
                            list.set_item(index, items_to_python_with(py, &items, &mut names)?)?;
                            finished.discard(items);
                        }
                    };
                    let outcome = convert();
                    if outcome.is_err() {
                        // The call returns once the pages still being parsed are done: wait
                        // for them without the GIL.
                        finished.stop();
                        py.detach(|| while finished.next_page().is_some() {});
                    }
                    outcome.map(|()| list.unbind())
                })
            })
        });
        Ok(list?.into_bound(py))
    }

    /// Links to follow from one page (absolute, in scope, deduplicated).
    fn links(&self, py: Python<'_>, html: String, base_url: String) -> PyResult<Vec<String>> {
        let template = Arc::clone(&self.template);
        Ok(py.detach(move || template.links_within(&html, &base_url, &page_limits()))?)
    }

    /// The next page, if any.
    fn next_page(&self, py: Python<'_>, html: String, base_url: String) -> Option<String> {
        let template = Arc::clone(&self.template);
        py.detach(move || template.next_page(&html, &base_url))
    }

    fn __repr__(&self) -> String {
        format!(
            "Template(id={:?}, fields={})",
            self.template.id,
            self.template.fields.len()
        )
    }
}

/// Templates of a directory, by id.
#[pyclass(frozen, name = "TemplateRegistry", module = "scraperv4._core")]
pub(crate) struct PyTemplateRegistry {
    registry: TemplateRegistry,
}

#[pymethods]
impl PyTemplateRegistry {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let registry = py.detach(|| TemplateRegistry::load(&path))?;
        Ok(Self { registry })
    }

    /// The template with `template_id`; `TemplateError` when unknown.
    fn get(&self, template_id: &str) -> PyResult<PyTemplate> {
        Ok(PyTemplate {
            template: self.registry.get(template_id)?,
        })
    }

    /// The ids, sorted.
    fn ids(&self) -> Vec<String> {
        self.registry.ids()
    }
}

/// Pages parsed by each engine since the process started: `{"fast": n, "dom_by_template": n,
/// "fallbacks": {reason: n}}`.
#[pyfunction]
pub(crate) fn extraction_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let stats = crate::extract::engine_stats();
    let dict = PyDict::new(py);
    dict.set_item("fast", stats.fast)?;
    dict.set_item("dom_by_template", stats.dom_by_template)?;
    let fallbacks = PyDict::new(py);
    for (reason, count) in stats.fallbacks {
        fallbacks.set_item(reason, count)?;
    }
    dict.set_item("fallbacks", fallbacks)?;
    Ok(dict)
}

/// The page's tree from each engine as canonical dumps (tests compare them with a browser's):
/// `(fast_dump or None, fallback reason or None, html5ever_dump)`.
#[pyfunction]
pub(crate) fn _tree_dumps(
    py: Python<'_>,
    html: String,
) -> (Option<String>, Option<&'static str>, String) {
    let (fast, dom) = py.detach(move || crate::extract::tree_dumps(&html));
    match fast {
        Ok(dump) => (Some(dump), None, dom),
        Err(reason) => (None, Some(reason.as_str()), dom),
    }
}
