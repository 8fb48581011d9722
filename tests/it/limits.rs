//! Politeness, read from the fake's own counters: never more than `--concurrency` requests in
//! flight, never much more than `--rps` in any second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use playment_export::AnnotationMode;

use crate::support::{assert_exact, config, quirky, run, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_never_exceeds_concurrency() {
    let mut fc = quirky(300, 6);
    fc.latency = Duration::from_millis(5);
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.concurrency = 4;
    c.annotations = AnnotationMode::Inline;
    run(c).await.unwrap();
    let max = fake.counters().max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 4, "max in flight {max}");
    assert!(max >= 2, "the crawl should overlap requests (max in flight {max})");
    assert_exact(&fake, dir.path(), AnnotationMode::Inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_second_stay_within_the_limit() {
    let fake = start(quirky(90, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.rps = 40;
    c.concurrency = 16;
    run(c).await.unwrap();
    let burst = playment_export::api::burst(40) as u64;
    let max = fake.counters().max_per_second.load(Ordering::SeqCst);
    assert!(max <= 40 + burst, "max per second {max}");
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_server_limit_is_found_and_the_export_stays_exact() {
    let mut fc = quirky(150, 4);
    fc.server_rps = Some(40);
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.rps = 200;
    c.concurrency = 16;
    // Honour the server's `Retry-After: 1` as a user's run would.
    c.retry.max_retry_after = std::time::Duration::from_secs(1);
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    assert_exact(&fake, dir.path(), AnnotationMode::None);
    let throttled = fake.counters().throttled.load(Ordering::SeqCst);
    assert!(throttled > 0, "the server never throttled: the scenario did not happen");
    assert_eq!(summary.stats.throttled, throttled);
    let lowest = summary.stats.lowest_rate.expect("the rate adapted");
    assert!(lowest < 200.0);
    let ok = summary.stats.requests - throttled;
    eprintln!(
        "adaptive: {:.1} ok-requests/s, {:.1}% throttled, rate now {:?}, lowest {lowest:.1}",
        ok as f64 / summary.elapsed_secs,
        100.0 * throttled as f64 / summary.stats.requests as f64,
        summary.stats.rate_limit
    );
}
