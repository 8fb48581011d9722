//! Everything that talks to the annotation API: the HTTP client, the response envelope,
//! the one place that decides what is retried, and the shared request limiter.

mod client;
mod envelope;
mod error;
mod limiter;
mod retry;

pub use client::{ApiClient, Endpoint, Stats, StatsSnapshot};
pub use envelope::{BatchPage, parse_details, parse_envelope, parse_page};
pub use error::{ApiError, RequestError};
pub use limiter::{Limiter, burst};
pub use retry::{GIVE_UP_AFTER, RetryBudget, is_bad_page_token, is_fatal, is_transient, retry_after};
