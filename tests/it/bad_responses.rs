//! Malformed answers get a defined behaviour: a retry, one restart of a batch's listing, or a
//! failed batch or job with a message. Never a panic, never an endless loop, and the rest of the
//! project is exported exactly.

use playment_export::AnnotationMode;
use playment_export::fake::{FakeConfig, FaultKind, Faults, Quirk};

use crate::support::{assert_exact, assert_exact_except, config, quirky, read_ndjson, run, start};

/// The batch every quirk is served for.
const B: usize = 3;

async fn with_quirk(
    quirk: Quirk,
    mode: AnnotationMode,
) -> (playment_export::fake::FakeApi, tempfile::TempDir, playment_export::Summary) {
    let fake = start(FakeConfig { quirk: Some((quirk, B)), ..quirky(200, 6) }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = mode;
    c.retry.retries = 2;
    let summary = run(c).await.unwrap_or_else(|e| panic!("{quirk:?}: {e}"));
    (fake, dir, summary)
}

fn failure_text(summary: &playment_export::Summary) -> String {
    summary.failures.iter().map(|f| format!("{} {:?} {}\n", f.batch, f.job, f.error)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_listings_fail_their_batch_with_a_message() {
    for (quirk, says) in [
        (Quirk::DataMissing, "no `data`"),
        (Quirk::JobsNotList, "batch page"),
        (Quirk::TokenWrongType, "next_page_token"),
        (Quirk::TokenLoop, "repeats page token"),
    ] {
        let (fake, dir, summary) = with_quirk(quirk, AnnotationMode::None).await;
        assert_eq!(summary.state, "partial", "{quirk:?}");
        assert_eq!(summary.batches_failed, 1, "{quirk:?}");
        let text = failure_text(&summary);
        assert!(text.contains(fake.dataset().batch_id(B)) && text.contains(says), "{quirk:?}: {text}");
        assert_exact_except(&fake, dir.path(), AnnotationMode::None, &[B]);
        // What the batch did list is there once, with its results.
        let batch = dir.path().join("batches").join(fake.dataset().batch_id(B));
        let jobs = read_ndjson(&batch.join("jobs.ndjson"));
        let results = read_ndjson(&batch.join("results.ndjson"));
        assert_eq!(jobs.len(), results.len(), "{quirk:?}");
        if quirk == Quirk::TokenLoop {
            assert_eq!(jobs.len(), 20, "two pages before the loop");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_page_token_restarts_the_listing_once() {
    let (fake, dir, summary) = with_quirk(Quirk::InvalidTokenOnce, AnnotationMode::None).await;
    assert_eq!(summary.state, "complete", "{}", failure_text(&summary));
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redirects_and_html_results_fail_only_their_jobs() {
    for (quirk, says) in [
        (Quirk::RedirectNoLocation, "without a Location"),
        (Quirk::RedirectLoop, "another redirect"),
        (Quirk::HtmlOk, "unreadable response body"),
    ] {
        let (fake, dir, summary) = with_quirk(quirk, AnnotationMode::Files).await;
        let d = fake.dataset();
        let expected = if quirk == Quirk::HtmlOk {
            d.batch_size(B)
        } else {
            d.job_indices(B).filter(|&j| !d.result(B, j)["result"].as_str().unwrap().is_empty()).count()
        };
        assert_eq!(summary.failed as usize, expected, "{quirk:?}");
        let text = failure_text(&summary);
        assert!(text.contains(says), "{quirk:?}: {text}");
        assert_exact_except(&fake, dir.path(), AnnotationMode::Files, &[B]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_api_stops_the_run_instead_of_retrying_every_job() {
    let faults = Faults {
        fail_first: Some((FaultKind::Unavailable, u32::MAX)),
        only_path: Some("/jobs/".into()),
        ..Faults::default()
    };
    // Big pages, so the listing (whose successes earn retries and reset the count of failures
    // in a row) is over before the job calls start failing in earnest.
    let mut fc = FakeConfig { faults, ..quirky(2_000, 6) };
    fc.dataset.page_size = 1_000;
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let err = run(config(&fake, dir.path())).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("requests in a row"), "{err}");
    // The retry budget (200) and the give-up threshold bound the calls, far below 2,000 x 9.
    let calls = fake.counters().jobs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{calls} job calls against a dead API");
    assert!(calls < 400, "{calls} job calls against a dead API");
    let manifest = crate::support::read_json(&dir.path().join("manifest.json"));
    assert_eq!(manifest["state"], "partial");
}
