//! The validated run configuration: what `cli` produces and `pipeline::run` consumes.
//! Nothing here knows about clap; tests build a `Config` directly.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// Requests in flight over all endpoints.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Requests per second over all endpoints (`0` = no client-side limit).
pub const DEFAULT_RPS: u32 = 10;
/// Retries per request after the first attempt.
pub const DEFAULT_RETRIES: usize = 8;
/// Per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.playment.io";
/// Longest wait a server may impose through `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// The API key. Its `Debug` and `Display` never show the secret.
#[derive(Clone, Default)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The secret itself, for the one header that carries it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What to do with the annotation document behind each job result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationMode {
    /// Do not fetch documents.
    None,
    /// Embed the document in the result line under `"annotations"`.
    Inline,
    /// Write the document to `annotations/{job_id}.json`.
    Files,
}

impl AnnotationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Inline => "inline",
            Self::Files => "files",
        }
    }
}

/// How retries are paced. Tests shrink the delays; users get the defaults.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Cap on what a server may ask for with `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: DEFAULT_RETRIES,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

/// What a run does with an existing export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Continue where the last run stopped; finished batches are not looked at again.
    #[default]
    Export,
    /// Bring the directory up to date: re-list changed batches, fetch new and changed jobs, drop
    /// what left the project. `full` re-lists every batch whatever its summary says.
    Sync { full: bool },
}

/// Everything one `export` or `sync` run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub project: String,
    pub out: PathBuf,
    pub base_url: Url,
    pub api_key: ApiKey,
    pub concurrency: usize,
    /// Requests per second over all endpoints; `0` means no client-side limit.
    pub rps: u32,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub annotations: AnnotationMode,
    /// Only these batches (empty = all).
    pub batches: Vec<String>,
    pub mode: Mode,
}

impl Config {
    /// A configuration with the documented defaults.
    pub fn new(project: impl Into<String>, out: impl Into<PathBuf>, base_url: Url, api_key: ApiKey) -> Self {
        Self {
            project: project.into(),
            out: out.into(),
            base_url,
            api_key,
            concurrency: DEFAULT_CONCURRENCY,
            rps: DEFAULT_RPS,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            annotations: AnnotationMode::None,
            batches: Vec::new(),
            mode: Mode::Export,
        }
    }
}
