//! The one place that decides what is retried, what stops the whole run, and how long a server
//! asked us to wait. Everything else asks these functions.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use super::ApiError;

/// API error codes that mean "something went wrong on our end, please try again".
const TRANSIENT_CODES: &[&str] = &["FS_0000", "FS_0008", "api_error"];
/// API error codes that mean the key is wrong or has no access: no request can succeed.
const AUTH_CODES: &[&str] = &["auth-failure", "unauthorized", "core.webutil.auther", "core.webutil.token_auth"];

/// Whether another attempt of the same request may succeed.
pub fn is_transient(err: &ApiError) -> bool {
    match err {
        ApiError::Status { status, code, .. } => {
            if is_fatal(err) {
                return false;
            }
            if let Some(code) = code
                && TRANSIENT_CODES.contains(&code.as_str())
            {
                return true;
            }
            // The official SDK also retries the non-standard 443 and 444.
            matches!(status, 408 | 429 | 443 | 444 | 500..=599)
        }
        ApiError::Transport(e) => transport_is_transient(e),
        // A body cut short or replaced by a proxy's page is worth another try.
        ApiError::Body(_) => true,
        ApiError::Shape(_) | ApiError::Redirect(_) => false,
        // The caller asks the attachments endpoint for a fresh URL.
        ApiError::Expired(_) => true,
    }
}

/// Whether the error means no request of this run can succeed (bad key, no access): stop at once.
pub fn is_fatal(err: &ApiError) -> bool {
    match err {
        ApiError::Status { status, code, .. } => match code {
            Some(code) => AUTH_CODES.contains(&code.as_str()) || code.starts_with("core.webutil."),
            None => matches!(status, 401 | 403),
        },
        _ => false,
    }
}

/// Whether the API refused a page token (`invalid_request_error`).
pub fn is_bad_page_token(err: &ApiError) -> bool {
    matches!(err, ApiError::Status { code: Some(c), .. } if c == "invalid_request_error")
}

/// How long the server asked us to wait, if it did.
pub fn retry_after(err: &ApiError) -> Option<Duration> {
    match err {
        ApiError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// Whether the server is throttling us: the whole crawler should slow down, not just this request.
pub fn is_throttle(err: &ApiError) -> bool {
    match err {
        ApiError::Status { status, retry_after, .. } => *status == 429 || retry_after.is_some(),
        _ => false,
    }
}

/// Retries every run may make before earning any: a short outage is ridden out in full.
const BUDGET_START: f64 = 200.0;
/// Retries earned per successful request: retries stay within a fifth of the traffic, so a dying
/// server gets one attempt per request, not `--retries` + 1.
const BUDGET_PER_SUCCESS: f64 = 0.2;
/// Most retries that can be saved up.
const BUDGET_MAX: f64 = 1000.0;
/// Requests in a row that fail after their retries, with the budget spent, before the run gives
/// up on the API.
pub const GIVE_UP_AFTER: u64 = 32;

/// A global retry budget, and the count of requests that failed in a row.
pub struct RetryBudget {
    tokens: std::sync::Mutex<f64>,
    failed_in_a_row: std::sync::atomic::AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self { tokens: std::sync::Mutex::new(BUDGET_START), failed_in_a_row: Default::default() }
    }
}

impl RetryBudget {
    /// Take one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let mut t = self.tokens.lock().expect("budget lock");
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }

    /// A request succeeded.
    pub fn succeeded(&self) {
        let mut t = self.tokens.lock().expect("budget lock");
        *t = (*t + BUDGET_PER_SUCCESS).min(BUDGET_MAX);
        self.failed_in_a_row.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// A request failed after its retries with `err`.
    pub fn failed(&self, err: &ApiError) {
        if is_transient(err) {
            self.failed_in_a_row.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the API must be down: the retry budget is spent and the last requests all failed.
    /// A run then stops rather than send one doomed attempt per remaining job.
    pub fn given_up(&self) -> bool {
        self.failed_in_a_row.load(std::sync::atomic::Ordering::Relaxed) >= GIVE_UP_AFTER
            && *self.tokens.lock().expect("budget lock") < 1.0
    }
}

/// Parse `Retry-After`: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Walk the error's causes: connection and protocol failures are transient, a refused
/// certificate or a malformed request is not.
fn transport_is_transient(err: &reqwest::Error) -> bool {
    if err.is_builder() || err.is_redirect() {
        return false;
    }
    if err.is_timeout() || err.is_connect() {
        return true;
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io_is_transient(io);
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled() || h.is_timeout())
        {
            return true;
        }
        source = cause.source();
    }
    // Any other failure to get a complete response (body read, decode): try again, bounded.
    err.is_request() || err.is_body() || err.is_decode()
}

fn io_is_transient(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionReset
            | ConnectionAborted
            | ConnectionRefused
            | BrokenPipe
            | UnexpectedEof
            | TimedOut
            | Interrupted
            | NotConnected
            | WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> ApiError {
        ApiError::Status { status, code: code.map(str::to_owned), message: String::new(), retry_after: None }
    }

    #[test]
    fn classification_follows_the_documented_codes() {
        assert!(is_transient(&status(400, Some("FS_0000"))));
        assert!(is_transient(&status(200, Some("api_error"))));
        assert!(is_transient(&status(503, None)));
        assert!(is_transient(&status(429, None)));
        assert!(is_transient(&status(408, None)));
        assert!(!is_transient(&status(400, Some("GE_0001"))));
        assert!(!is_transient(&status(404, None)));
        for code in AUTH_CODES {
            assert!(is_fatal(&status(400, Some(code))), "{code}");
            assert!(!is_transient(&status(400, Some(code))), "{code}");
        }
        assert!(is_fatal(&status(401, None)));
        assert!(!is_fatal(&status(400, Some("invalid_request_error"))));
    }

    #[test]
    fn the_budget_runs_out_and_is_earned_back() {
        let b = RetryBudget::default();
        let spent = (0..1000).take_while(|_| b.withdraw()).count();
        assert_eq!(spent, BUDGET_START as usize);
        for _ in 0..GIVE_UP_AFTER {
            assert!(!b.given_up());
            b.failed(&status(503, None));
        }
        assert!(b.given_up());
        for _ in 0..5 {
            b.succeeded();
        }
        assert!(!b.given_up());
        assert!(b.withdraw());
        assert!(!b.withdraw());
        for _ in 0..GIVE_UP_AFTER {
            b.failed(&status(400, Some("FS_0000")));
        }
        assert!(b.given_up());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(28), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
