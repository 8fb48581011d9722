//! Errors of one API request, and the final error after its retries.

use std::time::Duration;

/// What went wrong with one attempt of one request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered, but not with success: a non-2xx status, or a 200 whose envelope says
    /// `"success": false`.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status { status: u16, code: Option<String>, message: String, retry_after: Option<Duration> },
    /// No complete response: connection refused or reset, timeout, body cut short.
    #[error("request failed: {}", chain(.0))]
    Transport(#[source] reqwest::Error),
    /// The body is not the JSON it should be (truncated, an HTML page, ...).
    #[error("unreadable response body: {0}")]
    Body(String),
    /// Valid JSON of the wrong shape (`data` missing, `jobs` not a list, ...).
    #[error("unexpected response: {0}")]
    Shape(String),
    /// The attachments endpoint did not redirect as documented.
    #[error("bad redirect: {0}")]
    Redirect(String),
    /// Object storage refused a signed URL (it expired); ask the attachments endpoint again.
    #[error("signed URL refused by storage (HTTP {0})")]
    Expired(u16),
}

/// The final error of a request, after its retries.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed{}: {source}", retried(*.retries, *.elapsed))]
pub struct RequestError {
    pub what: String,
    pub retries: usize,
    pub elapsed: Duration,
    #[source]
    pub source: ApiError,
}

fn retried(retries: usize, elapsed: Duration) -> String {
    if retries == 0 { String::new() } else { format!(" after {retries} retries in {:.1} s", elapsed.as_secs_f64()) }
}

/// reqwest's own Display hides the cause ("error sending request"); show the whole chain.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    // reqwest puts the URL in its message; it never contains the key, which travels in a header.
    out
}
