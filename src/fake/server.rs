//! The fake API's HTTP side: two loopback listeners (the API, and object storage for the signed
//! URLs), the fault and latency knobs, and the counters tests read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::dataset::{Dataset, DatasetSpec, mix};

type Body = BoxBody<Bytes, std::io::Error>;

/// A fault the fake can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 503.
    Unavailable,
    /// HTTP 400 with a "try again" code.
    Transient400,
    /// HTTP 200 with `"success": false` and a "try again" code.
    False200,
    /// HTTP 429 with `Retry-After`.
    TooMany,
    /// The connection is closed with no response.
    Reset,
    /// Half the body, then the connection is closed.
    Truncate,
    /// A proxy's HTML 502 page.
    Html502,
    /// No answer until the client gives up.
    Hang,
}

/// Fault knobs. Probabilities apply to each API request independently.
#[derive(Clone, Debug)]
pub struct Faults {
    /// `(kind, probability)` pairs.
    pub random: Vec<(FaultKind, f64)>,
    /// Each distinct API request fails its first `n` attempts with this fault, then succeeds.
    pub fail_first: Option<(FaultKind, u32)>,
    /// Storage refuses (403, "expired") the first `n` signed URLs of each job.
    pub expire_first: u32,
    /// `Retry-After` seconds sent with 429s.
    pub retry_after_secs: u64,
    /// Send `Retry-After` as an HTTP date instead of seconds.
    pub retry_after_as_date: bool,
    /// Only requests whose path contains this get faults (all when `None`).
    pub only_path: Option<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            random: Vec::new(),
            fail_first: None,
            expire_first: 0,
            retry_after_secs: 1,
            retry_after_as_date: false,
            only_path: None,
        }
    }
}

/// A malformed answer the fake gives for one batch (its listing pages, or its jobs' results and
/// documents), to pin down how each is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quirk {
    /// Listing pages: `{"success": true}` with no `data`.
    DataMissing,
    /// Listing pages: `jobs` is an object, not a list.
    JobsNotList,
    /// Listing pages: `next_page_token` is an object.
    TokenWrongType,
    /// The second page names itself as the next page.
    TokenLoop,
    /// The first request with a page token is refused with `invalid_request_error`.
    InvalidTokenOnce,
    /// Attachments answer 302 without a Location.
    RedirectNoLocation,
    /// Storage answers 302 to itself.
    RedirectLoop,
    /// Job results come as an HTML page with status 200.
    HtmlOk,
}

/// Everything the fake serves and how.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub dataset: DatasetSpec,
    /// The key the fake accepts.
    pub api_key: String,
    /// Added to every response.
    pub latency: Duration,
    pub faults: Faults,
    /// Server-side limit on API requests per second (429 beyond it).
    pub server_rps: Option<u32>,
    /// Pretty-print some responses, as the documentation does.
    pub pretty: bool,
    /// A malformed answer for the batch of this index.
    pub quirk: Option<(Quirk, usize)>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetSpec::default(),
            api_key: "demo-key".into(),
            latency: Duration::ZERO,
            faults: Faults::default(),
            server_rps: None,
            pretty: true,
            quirk: None,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct Counters {
    pub details: AtomicU64,
    pub pages: AtomicU64,
    pub jobs: AtomicU64,
    pub attachments: AtomicU64,
    pub storage: AtomicU64,
    pub faults: AtomicU64,
    pub throttled: AtomicU64,
    pub auth_failures: AtomicU64,
    in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub max_per_second: AtomicU64,
    per_second: Mutex<(u64, u64)>,
    pub storage_saw_api_key: AtomicBool,
    pub storage_saw_referer: AtomicBool,
    /// Woken on every API request, for tests that wait for progress.
    progress: tokio::sync::Notify,
}

impl Counters {
    /// All API requests (storage excluded).
    pub fn api_requests(&self) -> u64 {
        [&self.details, &self.pages, &self.jobs, &self.attachments].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "details": g(&self.details), "pages": g(&self.pages), "jobs": g(&self.jobs),
            "attachments": g(&self.attachments), "storage": g(&self.storage),
            "api_requests": self.api_requests(), "faults": g(&self.faults), "throttled": g(&self.throttled),
            "auth_failures": g(&self.auth_failures),
            "max_in_flight": g(&self.max_in_flight), "max_per_second": g(&self.max_per_second),
            "storage_saw_api_key": self.storage_saw_api_key.load(Ordering::Relaxed),
            "storage_saw_referer": self.storage_saw_referer.load(Ordering::Relaxed),
        })
    }
}

impl Shared {
    fn dataset(&self) -> Arc<Dataset> {
        self.dataset.read().expect("dataset lock").clone()
    }

    /// Let time pass; returns the fewest requests a sync can then make.
    fn advance(&self) -> Value {
        let mut d = self.dataset.write().expect("dataset lock");
        let next = d.advanced();
        let minimum = next.sync_minimum(&d);
        *d = Arc::new(next);
        minimum
    }
}

struct Shared {
    config: FakeConfig,
    dataset: std::sync::RwLock<Arc<Dataset>>,
    counters: Arc<Counters>,
    storage_base: Url,
    started: Instant,
    draws: AtomicU64,
    refused_token: AtomicBool,
    attempts: Mutex<HashMap<String, u32>>,
    expired: Mutex<HashMap<String, u32>>,
    limit: Option<DefaultDirectRateLimiter>,
    stop: CancellationToken,
}

/// A running fake API. Dropping it stops both listeners.
pub struct FakeApi {
    pub base_url: Url,
    pub storage_url: Url,
    shared: Arc<Shared>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl FakeApi {
    /// Serve on ephemeral loopback ports.
    pub async fn start(config: FakeConfig) -> std::io::Result<Self> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serve the API on `addr` and storage on an ephemeral port of the same host.
    pub async fn start_on(config: FakeConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let api = TcpListener::bind(addr).await?;
        let storage = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let base_url = Url::parse(&format!("http://{}", api.local_addr()?)).expect("valid URL");
        let storage_url = Url::parse(&format!("http://{}", storage.local_addr()?)).expect("valid URL");
        let limit = config.server_rps.and_then(NonZeroU32::new).map(|r| {
            RateLimiter::direct(
                Quota::per_second(r).allow_burst(NonZeroU32::new((r.get() / 10).max(1)).expect("non-zero")),
            )
        });
        let shared = Arc::new(Shared {
            dataset: std::sync::RwLock::new(Arc::new(Dataset::new(config.dataset.clone()))),
            config,
            counters: Arc::new(Counters::default()),
            storage_base: storage_url.clone(),
            started: Instant::now(),
            draws: AtomicU64::new(0),
            refused_token: AtomicBool::new(false),
            attempts: Mutex::new(HashMap::new()),
            expired: Mutex::new(HashMap::new()),
            limit,
            stop: CancellationToken::new(),
        });
        tokio::spawn(serve(api, shared.clone(), false));
        tokio::spawn(serve(storage, shared.clone(), true));
        Ok(Self { base_url, storage_url, shared })
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The project as it is now.
    pub fn dataset(&self) -> Arc<Dataset> {
        self.shared.dataset()
    }

    /// Let time pass: the project changes as [`Dataset::advanced`] describes. Returns the
    /// fewest requests a sync can then make ([`Dataset::sync_minimum`]).
    pub fn advance(&self) -> Value {
        self.shared.advance()
    }

    pub fn project(&self) -> &str {
        &self.shared.config.dataset.project
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// Resolves once the fake has received at least `n` API requests in all.
    pub async fn wait_for_api_requests(&self, n: u64) {
        let c = &self.shared.counters;
        loop {
            let woken = c.progress.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if c.api_requests() >= n {
                return;
            }
            woken.await;
        }
    }

    /// Resolves when the fake is stopped.
    pub async fn stopped(&self) {
        self.shared.stop.cancelled().await;
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, storage: bool) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            () = shared.stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let stop = shared.stop.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(shared, req, storage).await }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Counters>);

impl InFlight {
    fn new(c: &Arc<Counters>, started: Instant) -> Self {
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let second = started.elapsed().as_secs();
        let mut ps = c.per_second.lock().expect("per-second lock");
        if ps.0 != second {
            *ps = (second, 0);
        }
        ps.1 += 1;
        c.max_per_second.fetch_max(ps.1, Ordering::SeqCst);
        Self(c.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, storage: bool) -> Result<Response<Body>, std::io::Error> {
    let counters = shared.counters.clone();
    let _in_flight = (!req.uri().path().starts_with("/admin")).then(|| InFlight::new(&counters, shared.started));
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if storage {
        return Ok(serve_storage(&shared, &req));
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if path == "/admin/counters" {
        return Ok(json_response(StatusCode::OK, &counters.snapshot(), false));
    }
    if path == "/admin/advance" {
        let minimum = shared.advance();
        let generation = shared.dataset().generation;
        return Ok(json_response(StatusCode::OK, &json!({"generation": generation, "minimum_sync": minimum}), false));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "projects", _, "details"] => counters.details.fetch_add(1, Ordering::Relaxed),
        ["v1", "projects", _, "batch", _] => counters.pages.fetch_add(1, Ordering::Relaxed),
        ["v1", "projects", _, "jobs", _] => counters.jobs.fetch_add(1, Ordering::Relaxed),
        ["v1", "attachments"] => counters.attachments.fetch_add(1, Ordering::Relaxed),
        _ => return Ok(error(StatusCode::NOT_FOUND, "GE_0000", "no such endpoint")),
    };
    counters.progress.notify_waiters();
    if req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) != Some(shared.config.api_key.as_str()) {
        counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Ok(error(StatusCode::BAD_REQUEST, "auth-failure", "The authentication key provided is incorrect"));
    }
    if let Some(limit) = &shared.limit
        && limit.check().is_err()
    {
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        return Ok(too_many(&shared.config.faults));
    }
    if let Some(fault) = draw_fault(&shared, &format!("{path}?{query}")) {
        counters.faults.fetch_add(1, Ordering::Relaxed);
        if fault == FaultKind::TooMany {
            counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        return inject(&shared, fault).await;
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    Ok(route(&shared, &segments, &params))
}

fn route(shared: &Shared, segments: &[&str], params: &HashMap<String, String>) -> Response<Body> {
    let d = &shared.dataset();
    let pretty = shared.config.pretty;
    let ok = |data: Value, pretty: bool| json_response(StatusCode::OK, &json!({"data": data, "success": true}), pretty);
    let project_ok = |p: &str| p == d.spec.project;
    match segments {
        ["v1", "projects", p, ..] if !project_ok(p) => {
            error(StatusCode::BAD_REQUEST, "unauthorized", "You do not have access to this project")
        }
        ["v1", "projects", _, "details"] => ok(d.details(), pretty),
        ["v1", "projects", _, "batch", batch] => {
            let Some(b) = d.batch_index(batch) else {
                return error(StatusCode::BAD_REQUEST, "GE_0001", "batch_id is invalid");
            };
            let token = params.get("page_token").map(String::as_str).unwrap_or("");
            let quirk = shared.config.quirk.filter(|(_, qb)| *qb == b).map(|(q, _)| q);
            if quirk == Some(Quirk::InvalidTokenOnce)
                && !token.is_empty()
                && !shared.refused_token.swap(true, Ordering::SeqCst)
            {
                return error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid pageToken");
            }
            match (d.page(b, token), quirk) {
                (None, _) => error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid pageToken"),
                (Some(_), Some(Quirk::DataMissing)) => json_response(StatusCode::OK, &json!({"success": true}), false),
                (Some(mut page), Some(Quirk::JobsNotList)) => {
                    page["jobs"] = page["jobs"][0].clone();
                    ok(page, false)
                }
                (Some(mut page), Some(Quirk::TokenWrongType)) => {
                    page["next_page_token"] = json!({"token": 1});
                    ok(page, false)
                }
                (Some(mut page), Some(Quirk::TokenLoop)) if !token.is_empty() => {
                    page["next_page_token"] = json!(token);
                    ok(page, false)
                }
                (Some(page), _) => ok(page, false),
            }
        }
        ["v1", "projects", _, "jobs", job] => match d.locate(job) {
            Some((b, _)) if shared.config.quirk == Some((Quirk::HtmlOk, b)) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/html")
                .body(full(Bytes::from_static(b"<html><body>Maintenance</body></html>")))
                .expect("valid response"),
            Some((b, j)) => ok(d.result(b, j), pretty && j % 2 == 1),
            None => error(StatusCode::BAD_REQUEST, "GE_0001", "job_id is invalid"),
        },
        ["v1", "attachments"] => {
            let target = params.get("url").map(String::as_str).unwrap_or("");
            let job = target.rsplit('/').next().unwrap_or("").trim_end_matches(".json");
            match d.locate(job) {
                Some((b, _)) if shared.config.quirk == Some((Quirk::RedirectNoLocation, b)) => {
                    Response::builder().status(StatusCode::FOUND).body(empty()).expect("valid response")
                }
                Some((b, _)) => {
                    let n = shared.draws.fetch_add(1, Ordering::Relaxed);
                    let path = if shared.config.quirk == Some((Quirk::RedirectLoop, b)) { "loop" } else { "signed" };
                    let mut loc = shared.storage_base.clone();
                    loc.set_path(&format!("/{path}/{job}.json"));
                    loc.query_pairs_mut()
                        .append_pair("X-Signature", &format!("{:016x}", mix(n)))
                        .append_pair("Expires", "300");
                    Response::builder()
                        .status(StatusCode::FOUND)
                        .header("location", loc.as_str())
                        .body(empty())
                        .expect("valid response")
                }
                None => error(StatusCode::BAD_REQUEST, "FS_0007", "attachment could not be accessed"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "GE_0000", "no such endpoint"),
    }
}

fn serve_storage(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let c = &shared.counters;
    c.storage.fetch_add(1, Ordering::Relaxed);
    if req.headers().contains_key("x-api-key") {
        c.storage_saw_api_key.store(true, Ordering::SeqCst);
    }
    if req.headers().contains_key("referer") {
        c.storage_saw_referer.store(true, Ordering::SeqCst);
    }
    if req.uri().path().starts_with("/loop/") {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", req.uri().to_string())
            .body(empty())
            .expect("valid response");
    }
    let job = req.uri().path().trim_start_matches("/signed/").trim_end_matches(".json").to_owned();
    let dataset = shared.dataset();
    let Some((b, j)) = dataset.locate(&job) else {
        return plain(StatusCode::NOT_FOUND, "NoSuchKey");
    };
    if shared.config.faults.expire_first > 0 {
        let mut expired = shared.expired.lock().expect("expired lock");
        let n = expired.entry(job).or_default();
        if *n < shared.config.faults.expire_first {
            *n += 1;
            c.faults.fetch_add(1, Ordering::Relaxed);
            return plain(
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            );
        }
    }
    json_response(StatusCode::OK, &dataset.document(b, j), j % 3 == 0)
}

fn draw_fault(shared: &Shared, key: &str) -> Option<FaultKind> {
    let faults = &shared.config.faults;
    if faults.only_path.as_deref().is_some_and(|p| !key.contains(p)) {
        return None;
    }
    if let Some((kind, n)) = faults.fail_first {
        let mut attempts = shared.attempts.lock().expect("attempts lock");
        let seen = attempts.entry(key.to_owned()).or_default();
        if *seen < n {
            *seen += 1;
            return Some(kind);
        }
    }
    if faults.random.is_empty() {
        return None;
    }
    let n = shared.draws.fetch_add(1, Ordering::Relaxed);
    let mut x = (mix(shared.config.dataset.seed ^ n.wrapping_mul(0x5851_f42d)) >> 11) as f64 / (1u64 << 53) as f64;
    for &(kind, p) in &faults.random {
        if x < p {
            return Some(kind);
        }
        x -= p;
    }
    None
}

async fn inject(shared: &Shared, fault: FaultKind) -> Result<Response<Body>, std::io::Error> {
    let again = "Something went wrong on our end. Please try again after some time.";
    Ok(match fault {
        FaultKind::Unavailable => plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        FaultKind::Transient400 => error(StatusCode::BAD_REQUEST, "FS_0008", again),
        FaultKind::False200 => error(StatusCode::OK, "api_error", again),
        FaultKind::TooMany => too_many(&shared.config.faults),
        FaultKind::Html502 => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .header("content-type", "text/html")
            .body(full(Bytes::from_static(
                b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
            )))
            .expect("valid response"),
        FaultKind::Reset => {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"));
        }
        FaultKind::Truncate => {
            let body =
                serde_json::to_vec(&json!({"data": {"padding": "x".repeat(200)}, "success": true})).expect("json");
            let half = Bytes::copy_from_slice(&body[..body.len() / 2]);
            let stream = futures::stream::iter(vec![
                Ok(Frame::data(half)),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected truncation")),
            ]);
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("content-length", body.len())
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("valid response")
        }
        FaultKind::Hang => {
            shared.stop.cancelled().await;
            return Err(std::io::Error::other("stopped while hanging"));
        }
    })
}

fn too_many(faults: &Faults) -> Response<Body> {
    let value = if faults.retry_after_as_date {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(faults.retry_after_secs))
    } else {
        faults.retry_after_secs.to_string()
    };
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests");
    resp.headers_mut().insert("retry-after", value.parse().expect("valid header"));
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"success": false, "error": {"code": code, "message": message}}), false)
}

fn json_response(status: StatusCode, value: &Value, pretty: bool) -> Response<Body> {
    let body = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) }.expect("json");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(Bytes::from(body)))
        .expect("valid response")
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder().status(status).body(full(Bytes::from_static(text.as_bytes()))).expect("valid response")
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never: Infallible| match never {}).boxed()
}

fn empty() -> Body {
    full(Bytes::new())
}
