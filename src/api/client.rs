//! The four endpoints of the API over one pooled HTTP client, plus a second client without
//! credentials for object storage. Every request goes through the limiter and the retry policy.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use serde_json::value::RawValue;
use url::Url;

use super::envelope::parse_envelope;
use super::retry::{RetryBudget, is_throttle, is_transient, parse_retry_after, retry_after};
use super::{ApiError, Limiter, RequestError};
use crate::config::{Config, RetryPolicy};
use crate::report::Reporter;

/// How often one job may ask for a fresh signed URL after storage refused one.
const MAX_URL_REFRESH: usize = 3;
/// Cool-down when a server throttles without saying for how long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(1);
const USER_AGENT: &str = concat!("playment-export/", env!("CARGO_PKG_VERSION"));

/// The endpoints, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Details = 0,
    Page = 1,
    Job = 2,
    Attachment = 3,
    Storage = 4,
}

/// Counters over the whole run.
#[derive(Default, Debug)]
pub struct Stats {
    requests: [AtomicU64; 5],
    retries: AtomicU64,
    throttled: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub details_requests: u64,
    pub page_requests: u64,
    pub job_requests: u64,
    pub attachment_requests: u64,
    pub storage_requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Requests per second in force at the end (`None` = no limit), after adapting to throttling.
    pub rate_limit: Option<f64>,
    /// The lowest rate the run slowed down to, if the server ever throttled.
    pub lowest_rate: Option<f64>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |e: Endpoint| self.requests[e as usize].load(Ordering::Relaxed);
        let per =
            [r(Endpoint::Details), r(Endpoint::Page), r(Endpoint::Job), r(Endpoint::Attachment), r(Endpoint::Storage)];
        StatsSnapshot {
            requests: per.iter().sum(),
            details_requests: per[0],
            page_requests: per[1],
            job_requests: per[2],
            attachment_requests: per[3],
            storage_requests: per[4],
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            rate_limit: None,
            lowest_rate: None,
        }
    }
}

/// One response, read in full.
struct RawResponse {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

/// The API client of one run.
pub struct ApiClient {
    http: reqwest::Client,
    storage: reqwest::Client,
    base: Url,
    project: String,
    limiter: Limiter,
    policy: RetryPolicy,
    stats: Stats,
    budget: RetryBudget,
    reporter: Arc<dyn Reporter>,
}

impl ApiClient {
    pub fn new(config: &Config, reporter: Arc<dyn Reporter>) -> Result<Self, reqwest::Error> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(config.api_key.expose()).unwrap_or_else(|_| HeaderValue::from_static(""));
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            // The attachments redirect is taken by hand so the key never reaches storage.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.concurrency.max(1))
            .build()?;
        // Storage gets nothing of ours: no key, no Referer, no redirects.
        let storage = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()?;
        Ok(Self {
            http,
            storage,
            base: config.base_url.clone(),
            project: config.project.clone(),
            limiter: Limiter::new(config.concurrency, config.rps),
            policy: config.retry.clone(),
            stats: Stats::default(),
            budget: RetryBudget::default(),
            reporter,
        })
    }

    /// Whether so many requests failed in a row, after their retries, that the API must be down.
    pub fn given_up(&self) -> bool {
        self.budget.given_up()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        (s.rate_limit, s.lowest_rate) = self.limiter.rate();
        s
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("the base URL is validated as http(s)").pop_if_empty().extend(segments);
        url
    }

    /// `data` of the project details.
    pub async fn project_details(&self) -> Result<Box<RawValue>, RequestError> {
        let url = self.url(&["v1", "projects", &self.project, "details"]);
        self.retrying("project details".into(), || self.get_data(Endpoint::Details, url.clone())).await
    }

    /// `data` of one page of a batch listing (`token` empty for the first page).
    pub async fn batch_page(&self, batch: &str, token: &str) -> Result<Box<RawValue>, RequestError> {
        let mut url = self.url(&["v1", "projects", &self.project, "batch", batch]);
        url.query_pairs_mut().append_pair("page_token", token);
        self.retrying(format!("listing batch {batch}"), || self.get_data(Endpoint::Page, url.clone())).await
    }

    /// `data` of one job result.
    pub async fn job_result(&self, job: &str) -> Result<Box<RawValue>, RequestError> {
        let url = self.url(&["v1", "projects", &self.project, "jobs", job]);
        self.retrying(format!("result of job {job}"), || self.get_data(Endpoint::Job, url.clone())).await
    }

    /// The annotation document behind a job's `result` URL, checked to be JSON.
    pub async fn annotation(&self, job: &str, result_url: &str) -> Result<Bytes, RequestError> {
        let mut url = self.url(&["v1", "attachments"]);
        url.query_pairs_mut().append_pair("url", result_url);
        let refreshes = Cell::new(0usize);
        self.retrying(format!("annotations of job {job}"), || async {
            match self.fetch_annotation(&url).await {
                Err(ApiError::Expired(status)) => {
                    refreshes.set(refreshes.get() + 1);
                    if refreshes.get() > MAX_URL_REFRESH {
                        Err(ApiError::Redirect(format!(
                            "storage refused {} fresh signed URLs (HTTP {status})",
                            refreshes.get()
                        )))
                    } else {
                        Err(ApiError::Expired(status))
                    }
                }
                other => other,
            }
        })
        .await
    }

    async fn fetch_annotation(&self, url: &Url) -> Result<Bytes, ApiError> {
        let resp = self.fetch(Endpoint::Attachment, &self.http, url.clone()).await?;
        let doc = if (300..400).contains(&resp.status) {
            let location = resp
                .headers
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| ApiError::Redirect(format!("HTTP {} without a Location", resp.status)))?;
            let target = url.join(location).map_err(|e| ApiError::Redirect(format!("unusable Location: {e}")))?;
            if !matches!(target.scheme(), "http" | "https") {
                return Err(ApiError::Redirect(format!("Location is not http(s): {}", target.scheme())));
            }
            let stored = self.fetch(Endpoint::Storage, &self.storage, target).await?;
            match stored.status {
                200..=299 => stored.body,
                401 | 403 => return Err(ApiError::Expired(stored.status)),
                300..=399 => return Err(ApiError::Redirect("storage answered with another redirect".into())),
                status => {
                    return Err(ApiError::Status {
                        status,
                        code: None,
                        message: "object storage".into(),
                        retry_after: None,
                    });
                }
            }
        } else if (200..300).contains(&resp.status) {
            // Served directly instead of redirected: accept it, unless it is an error envelope.
            if let Err(e @ ApiError::Status { .. }) = parse_envelope(resp.status, &resp.body) {
                return Err(e);
            }
            resp.body
        } else {
            return Err(parse_envelope(resp.status, &resp.body)
                .err()
                .unwrap_or_else(|| ApiError::Redirect(format!("HTTP {} instead of a redirect", resp.status))));
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(&doc)
            .map_err(|e| ApiError::Body(format!("annotation document is not JSON: {e}")))?;
        Ok(doc)
    }

    async fn get_data(&self, endpoint: Endpoint, url: Url) -> Result<Box<RawValue>, ApiError> {
        let resp = self.fetch(endpoint, &self.http, url).await?;
        parse_envelope(resp.status, &resp.body).map_err(|e| match e {
            ApiError::Status { status, code, message, .. } => ApiError::Status {
                status,
                code,
                message,
                retry_after: resp.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after),
            },
            other => other,
        })
    }

    /// One attempt: wait at the gate, send, read the whole body.
    async fn fetch(&self, endpoint: Endpoint, client: &reqwest::Client, url: Url) -> Result<RawResponse, ApiError> {
        let _permit = self.limiter.acquire().await;
        let sent = tokio::time::Instant::now();
        self.stats.requests[endpoint as usize].fetch_add(1, Ordering::Relaxed);
        let resp = client.get(url).send().await.map_err(ApiError::Transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status == 429 || (headers.contains_key(RETRY_AFTER) && status >= 400) {
            let wait = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
                .unwrap_or(DEFAULT_THROTTLE_WAIT)
                .min(self.policy.max_retry_after);
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            self.limiter.on_throttle(sent, wait);
            self.reporter.on_rate(self.limiter.rate().0);
        } else if status < 500
            && let Some(rate) = self.limiter.on_success()
        {
            self.reporter.on_rate(Some(rate));
        }
        let body = resp.bytes().await.map_err(ApiError::Transport)?;
        Ok(RawResponse { status, headers, body })
    }

    /// Run `attempt` under the retry policy: transient errors are retried with exponential
    /// backoff and jitter, honouring (capped) `Retry-After`; anything else returns at once.
    /// Retries of failures draw on the run's retry budget; retries of throttled requests do not
    /// (the cool-down and the adaptive rate deal with those).
    async fn retrying<T, F, Fut>(&self, what: String, attempt: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let started = Instant::now();
        let retries = Cell::new(0usize);
        let cap = self.policy.max_retry_after;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_delay)
            .with_max_delay(self.policy.max_delay)
            .with_max_times(self.policy.retries)
            .with_jitter();
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|err| is_transient(err) && (is_throttle(err) || self.budget.withdraw()))
            // `None` means the backoff is exhausted: keep it so, or the retries never end.
            .adjust(|err, delay| delay.map(|d| retry_after(err).map_or(d, |r| r.min(cap).max(d))))
            .notify(|err, delay| {
                retries.set(retries.get() + 1);
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("retrying {what} in {delay:?}: {err}");
                self.reporter.on_retry(&what, err, is_throttle(err));
            })
            .await
            .inspect(|_| self.budget.succeeded())
            .inspect_err(|err| self.budget.failed(err))
            .map_err(|source| RequestError {
                what: what.clone(),
                retries: retries.get(),
                elapsed: started.elapsed(),
                source,
            })
    }
}
