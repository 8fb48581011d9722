//! Recovery from each kind of fault the API is known for: every run still ends with an exact
//! export, and what cannot be fetched is recorded and retried by the next run.

use std::sync::atomic::Ordering;
use std::time::Duration;

use playment_export::AnnotationMode;
use playment_export::fake::{FakeConfig, FaultKind, Faults};

use crate::support::{assert_exact, config, quirky, run, start};

fn failing_first(kind: FaultKind, n: u32) -> FakeConfig {
    FakeConfig {
        faults: Faults { fail_first: Some((kind, n)), retry_after_secs: 1, ..Faults::default() },
        ..quirky(60, 4)
    }
}

async fn recovers_from(kind: FaultKind) {
    let fake = start(failing_first(kind, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Inline;
    if kind == FaultKind::Hang {
        c.timeout = Duration::from_millis(300);
    }
    let summary = run(c).await.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    assert_eq!(summary.state, "complete", "{kind:?}: {:?}", summary.failures);
    assert!(summary.stats.retries > 0, "{kind:?}");
    // Every distinct API request failed once and was retried.
    assert!(fake.counters().faults.load(Ordering::Relaxed) >= 60, "{kind:?}");
    assert_exact(&fake, dir.path(), AnnotationMode::Inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_503() {
    recovers_from(FaultKind::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_http_400_try_again_codes() {
    recovers_from(FaultKind::Transient400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_200_with_success_false() {
    recovers_from(FaultKind::False200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_429_with_retry_after() {
    recovers_from(FaultKind::TooMany).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_connection_resets() {
    recovers_from(FaultKind::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_truncated_bodies() {
    recovers_from(FaultKind::Truncate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_html_error_pages() {
    recovers_from(FaultKind::Html502).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_hung_requests() {
    recovers_from(FaultKind::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_honoured() {
    let mut fc = failing_first(FaultKind::TooMany, 1);
    fc.faults.retry_after_as_date = true;
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = run(config(&fake, dir.path())).await.unwrap();
    assert!(summary.stats.throttled > 0);
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_signed_urls_are_asked_for_again() {
    let fake = start(FakeConfig { faults: Faults { expire_first: 2, ..Faults::default() }, ..quirky(40, 3) }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Files;
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    // Each document took three signed URLs: two refused, one served.
    let c = fake.counters();
    assert_eq!(c.attachments.load(Ordering::Relaxed), 3 * summary.annotations_written);
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_recorded_then_retried_by_the_rerun() {
    // Every job fails three times in a row; fewer jobs than it takes to give up on the API.
    let faults =
        Faults { fail_first: Some((FaultKind::Unavailable, 3)), only_path: Some("/jobs/".into()), ..Faults::default() };
    let fake = start(FakeConfig { faults, ..quirky(25, 3) }).await;
    let failing = fake.dataset().total_jobs() as u64;
    assert!(failing > 0 && failing < playment_export::api::GIVE_UP_AFTER);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.retry.retries = 1;
    let summary = run(c.clone()).await.unwrap();
    assert_eq!(summary.state, "partial");
    assert_eq!(summary.failed, failing);
    let manifest = crate::support::read_json(&dir.path().join("manifest.json"));
    assert_eq!(manifest["state"], "partial");
    assert_eq!(manifest["failures"].as_array().unwrap().len() as u64, failing);
    assert_eq!(std::fs::read_to_string(dir.path().join("failures.ndjson")).unwrap().lines().count() as u64, failing);

    let pages_before = fake.counters().pages.load(Ordering::Relaxed);
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    assert_eq!(summary.results_written, failing);
    assert_eq!(fake.counters().pages.load(Ordering::Relaxed), pages_before, "listings are not fetched again");
    assert!(!dir.path().join("failures.ndjson").exists());
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_fault_storm_still_gives_an_exact_export() {
    let random = vec![
        (FaultKind::Unavailable, 0.05),
        (FaultKind::Transient400, 0.02),
        (FaultKind::False200, 0.01),
        (FaultKind::TooMany, 0.02),
        (FaultKind::Reset, 0.01),
        (FaultKind::Truncate, 0.01),
        (FaultKind::Html502, 0.01),
        (FaultKind::Hang, 0.002),
    ];
    let fake =
        start(FakeConfig { faults: Faults { random, retry_after_secs: 1, ..Faults::default() }, ..quirky(400, 6) })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Inline;
    c.timeout = Duration::from_millis(500);
    c.retry.retries = 12;
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    assert!(fake.counters().faults.load(Ordering::Relaxed) > 20);
    assert_exact(&fake, dir.path(), AnnotationMode::Inline);
}
