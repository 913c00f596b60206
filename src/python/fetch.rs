//! Bindings of [`crate::fetch`]: the `Fetcher` handle and `Response` records.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::bridge::{block_on, into_awaitable};
use super::errors::PyErrorClass;
use super::extract::PyTemplate;
use super::stream::{Inner, PyFetchStream};
use crate::config::ConfigError;
use crate::extract::Template;
use crate::fetch::stream;
use crate::fetch::{Extracted, FetchConfig, FetchError, Fetcher, Page};

impl From<FetchError> for PyErr {
    fn from(error: FetchError) -> Self {
        PyErrorClass::Fetch.raise((
            error.to_string(),
            error.kind.as_str(),
            error.url,
            error.status,
        ))
    }
}

/// A fetched page.
#[pyclass(frozen, name = "Response", module = "scraperv4._core")]
pub(crate) struct PyResponse {
    page: Page,
}

impl From<Page> for PyResponse {
    fn from(page: Page) -> Self {
        Self { page }
    }
}

#[pymethods]
impl PyResponse {
    /// The URL asked for.
    #[getter]
    fn url(&self) -> &str {
        &self.page.url
    }
    /// The URL after redirects.
    #[getter]
    fn final_url(&self) -> &str {
        &self.page.final_url
    }
    /// HTTP status.
    #[getter]
    fn status(&self) -> u16 {
        self.page.status
    }
    /// The protocol of the final response (`HTTP/1.1`, `HTTP/2.0`).
    #[getter]
    fn http_version(&self) -> &'static str {
        self.page.http_version
    }
    /// Response headers as `(name, value)` pairs, names lowercase.
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.page.headers.clone()
    }
    /// The body, decompressed.
    #[getter]
    fn content<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.page.body)
    }
    /// The body decoded to text (charset from a BOM, the header, `<meta>` or detection).
    #[getter]
    fn text(&self, py: Python<'_>) -> String {
        py.detach(|| self.page.text().0)
    }
    /// The encoding used for `text`.
    #[getter]
    fn encoding(&self) -> &'static str {
        self.page.text().1
    }
    /// Seconds from the first request to the last byte (retries and waits included).
    #[getter]
    fn elapsed(&self) -> f64 {
        self.page.elapsed.as_secs_f64()
    }
    /// Body bytes received on the wire (compressed).
    #[getter]
    fn wire_bytes(&self) -> u64 {
        self.page.wire_bytes
    }

    fn __repr__(&self) -> String {
        format!(
            "Response(status={}, url={:?}, bytes={})",
            self.page.status,
            self.page.final_url,
            self.page.body.len()
        )
    }
}

/// One result of `fetch_many`: a response or the error, in input order.
enum Outcome {
    Page(Page),
    Failed(FetchError),
}

impl<'py> IntoPyObject<'py> for Outcome {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self {
            Self::Page(page) => Ok(Bound::new(py, PyResponse { page })?.into_any()),
            Self::Failed(error) => Ok(PyErr::from(error).into_value(py).into_bound(py).into_any()),
        }
    }
}

/// One result of `fetch_extract_many`: the items of a page, or the error.
struct ExtractOutcome(Extracted);

impl<'py> IntoPyObject<'py> for ExtractOutcome {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self.0 {
            Extracted::Items(items) => Ok(super::extract::items_to_python(py, &items)?.into_any()),
            Extracted::Failed(error) => {
                Ok(PyErr::from(error).into_value(py).into_bound(py).into_any())
            }
            Extracted::Refused(error) => {
                Ok(PyErr::from(error).into_value(py).into_bound(py).into_any())
            }
        }
    }
}

async fn fetch_extract_all(
    fetcher: Arc<Fetcher>,
    template: Arc<Template>,
    urls: Vec<String>,
) -> Vec<ExtractOutcome> {
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            tokio::spawn(stream::fetch_extract(
                Arc::clone(&fetcher),
                Arc::clone(&template),
                url,
            ))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(ExtractOutcome(task.await.unwrap_or_else(|error| {
            Extracted::Failed(stream::task_failed(&error))
        })));
    }
    outcomes
}

/// Each URL is its own task, so the fetches spread over every runtime thread (one future
/// polling them all would run on one thread).
async fn fetch_all(fetcher: Arc<Fetcher>, urls: Vec<String>) -> Vec<Outcome> {
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let fetcher = Arc::clone(&fetcher);
            tokio::spawn(async move { fetcher.fetch(&url).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(match task.await {
            Ok(result) => result.map_or_else(Outcome::Failed, Outcome::Page),
            Err(error) => Outcome::Failed(stream::task_failed(&error)),
        });
    }
    outcomes
}

/// A polite, bounded, SSRF-guarded HTTP fetcher.
#[pyclass(frozen, name = "Fetcher", module = "scraperv4._core")]
pub(crate) struct PyFetcher {
    fetcher: Arc<Fetcher>,
}

#[pymethods]
impl PyFetcher {
    /// A fetcher configured by `config_json` (a JSON object of `FetchConfig` fields).
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config: FetchConfig = serde_json::from_str(config_json)
            .map_err(|e| ConfigError::invalid("fetch config", config_json, e.to_string()))?;
        Ok(Self {
            fetcher: Arc::new(Fetcher::new(config)?),
        })
    }

    fn fetch(&self, py: Python<'_>, url: String) -> PyResult<PyResponse> {
        let fetcher = Arc::clone(&self.fetcher);
        block_on(py, async move {
            fetcher.fetch(&url).await.map(|page| PyResponse { page })
        })
    }

    fn fetch_async<'py>(&self, py: Python<'py>, url: String) -> PyResult<Bound<'py, PyAny>> {
        let fetcher = Arc::clone(&self.fetcher);
        into_awaitable(py, async move {
            fetcher.fetch(&url).await.map(|page| PyResponse { page })
        })
    }

    fn fetch_many<'py>(
        &self,
        py: Python<'py>,
        urls: Vec<String>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let fetcher = Arc::clone(&self.fetcher);
        let outcomes = block_on(py, async move {
            Ok::<_, FetchError>(fetch_all(fetcher, urls).await)
        })?;
        outcomes.into_iter().map(|o| o.into_pyobject(py)).collect()
    }

    /// Fetch every URL and extract its items with `template`, all in Rust: one list of
    /// items (or the `FetchError`) per URL, in order.
    fn fetch_extract_many<'py>(
        &self,
        py: Python<'py>,
        urls: Vec<String>,
        template: &PyTemplate,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let fetcher = Arc::clone(&self.fetcher);
        let template = template.shared();
        let outcomes = block_on(py, async move {
            Ok::<_, FetchError>(fetch_extract_all(fetcher, template, urls).await)
        })?;
        outcomes.into_iter().map(|o| o.into_pyobject(py)).collect()
    }

    fn fetch_many_async<'py>(
        &self,
        py: Python<'py>,
        urls: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fetcher = Arc::clone(&self.fetcher);
        into_awaitable(py, async move {
            Ok::<_, FetchError>(fetch_all(fetcher, urls).await)
        })
    }

    /// A stream over URLs pushed one by one: at most `in_flight` fetched at once, at most
    /// `in_flight + buffered` pushed and not yet taken. Results are `(url, Response |
    /// FetchError)` pairs in completion order.
    fn stream(&self, in_flight: usize, buffered: usize) -> PyFetchStream {
        PyFetchStream::new(Inner::Fetch(stream::fetching(
            Arc::clone(&self.fetcher),
            in_flight,
            buffered,
        )))
    }

    /// [`PyFetcher::stream`] with each page's items extracted by `template`: results are
    /// `(url, items | FetchError | ExtractError)` pairs.
    fn stream_extract(
        &self,
        template: &PyTemplate,
        in_flight: usize,
        buffered: usize,
    ) -> PyFetchStream {
        PyFetchStream::new(Inner::Extract(stream::extracting(
            Arc::clone(&self.fetcher),
            template.shared(),
            in_flight,
            buffered,
        )))
    }
}
