//! Exact exports of a quirky project, in each annotations mode, and the guard rails around IDs
//! and credentials.

use std::sync::atomic::Ordering;

use playment_export::AnnotationMode;
use playment_export::fake::FakeConfig;

use crate::support::{assert_exact, config, files_under, quirky, run, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_exact_in_every_annotation_mode() {
    let fake = start(quirky(437, 7)).await;
    for mode in [AnnotationMode::None, AnnotationMode::Inline, AnnotationMode::Files] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(&fake, dir.path());
        c.annotations = mode;
        let summary = run(c).await.expect("export succeeds");
        assert_eq!(summary.state, "complete", "{mode:?}");
        assert_eq!(summary.jobs, 437);
        assert_eq!(summary.results_written, 437);
        assert_eq!(summary.failed, 0);
        assert_exact(&fake, dir.path(), mode);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_export_rerun_makes_only_the_details_call() {
    let fake = start(quirky(120, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    run(config(&fake, dir.path())).await.unwrap();
    let before = fake.counters().api_requests();
    let summary = run(config(&fake, dir.path())).await.unwrap();
    assert_eq!(fake.counters().api_requests() - before, 1);
    assert_eq!(summary.stats.requests, 1);
    assert_eq!(summary.results_written, 0);
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_filter_exports_only_the_named_batches() {
    let fake = start(quirky(200, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let wanted = fake.dataset().batch_ids()[3].clone();
    let mut c = config(&fake, dir.path());
    c.batches = vec![wanted.clone()];
    let summary = run(c).await.unwrap();
    assert_eq!(summary.batches, 1);
    let dirs: Vec<_> = std::fs::read_dir(dir.path().join("batches")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(dirs, vec![std::ffi::OsString::from(&wanted)]);
    assert_eq!(summary.jobs as usize, fake.dataset().batch_size(3));

    let mut c = config(&fake, dir.path());
    c.batches = vec!["no-such-batch".into()];
    let err = run(c).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("no-such-batch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_write_nothing_outside_the_export() {
    let mut fc = quirky(60, 4);
    fc.dataset.hostile_ids = true;
    let fake = start(fc).await;
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("a").join("b").join("out");
    let mut c = config(&fake, &out);
    c.annotations = AnnotationMode::Files;
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "partial");
    assert_eq!(summary.failed, 2, "{:?}", summary.failures);
    for f in files_under(root.path()) {
        assert!(f.starts_with(&out), "{} is outside the export", f.display());
        assert!(!f.to_string_lossy().contains("escaped"), "{}", f.display());
    }
    let failures = std::fs::read_to_string(out.join("failures.ndjson")).unwrap();
    assert!(failures.contains("escaped-batch") && failures.contains("escaped-job"), "{failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_never_sees_the_key_or_a_referer() {
    let fake = start(quirky(80, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Files;
    run(c).await.unwrap();
    let counters = fake.counters();
    assert!(counters.storage.load(Ordering::Relaxed) > 0);
    assert!(!counters.storage_saw_api_key.load(Ordering::Relaxed));
    assert!(!counters.storage_saw_referer.load(Ordering::Relaxed));
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_in_no_file() {
    let fake = start(FakeConfig { api_key: "sEcReT-kEy-123".into(), ..quirky(50, 3) }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Inline;
    run(c).await.unwrap();
    assert!(!format!("{:?}", config(&fake, dir.path())).contains("sEcReT"));
    for f in files_under(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("sEcReT-kEy-123"), "{}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_stops_after_one_request() {
    let fake = start(quirky(50, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.api_key = playment_export::ApiKey::new("wrong");
    let err = run(c).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("API key was refused"), "{err}");
    assert_eq!(fake.counters().api_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_project_is_one_clear_error() {
    let fake = start(quirky(10, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.project = "no-such-project".into();
    let err = run(c).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("no access to project no-such-project"), "{err}");
    assert_eq!(fake.counters().api_requests(), 1);
}
