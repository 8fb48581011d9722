//! Nightly sync: an idle night costs one request, a busy one only what changed, and the files
//! end exactly as a fresh export of the project at that moment.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use playment_export::fake::FakeApi;
use playment_export::{AnnotationMode, Config, Mode};
use serde_json::Value;

use crate::support::{assert_exact, bin_cmd, config, files_under, quirky, run, start};

fn sync(fake: &FakeApi, out: &Path, full: bool) -> Config {
    let mut c = config(fake, out);
    c.annotations = AnnotationMode::Files;
    c.mode = Mode::Sync { full };
    c
}

fn batch_bytes(out: &Path, id: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files_under(&out.join("batches").join(id))
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_on_an_empty_directory_is_a_full_export_and_an_idle_sync_is_one_request() {
    let fake = start(quirky(300, 7)).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = run(sync(&fake, dir.path(), false)).await.unwrap();
    assert_eq!(summary.results_written, 300);
    assert_eq!(summary.sync.as_ref().unwrap().batches_new, 7);
    assert_exact(&fake, dir.path(), AnnotationMode::Files);

    let before_requests = fake.counters().api_requests();
    let before_files: Vec<_> = files_under(dir.path()).into_iter().filter(|p| !p.ends_with("manifest.json")).collect();
    let summary = run(sync(&fake, dir.path(), false)).await.unwrap();
    assert_eq!(fake.counters().api_requests() - before_requests, 1, "an idle sync is the details call alone");
    let counts = summary.sync.unwrap();
    assert_eq!((counts.batches_unchanged, counts.batches_changed, counts.batches_new), (7, 0, 0));
    let after_files: Vec<_> = files_under(dir.path()).into_iter().filter(|p| !p.ends_with("manifest.json")).collect();
    assert_eq!(before_files, after_files);
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_changes_fetches_only_them_and_ends_as_a_fresh_export() {
    let fake = start(quirky(500, 8)).await;
    let dir = tempfile::tempdir().unwrap();
    run(sync(&fake, dir.path(), false)).await.unwrap();
    let old = fake.dataset();
    let untouched = old.batch_id(5).to_owned();
    let untouched_before = batch_bytes(dir.path(), &untouched);
    let gone = old.batch_id(7).to_owned();

    let minimum = fake.advance();
    let new = fake.dataset();
    let c = fake.counters();
    let (pages0, jobs0, att0) =
        (c.pages.load(Ordering::Relaxed), c.jobs.load(Ordering::Relaxed), c.attachments.load(Ordering::Relaxed));
    let summary = run(sync(&fake, dir.path(), false)).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    assert_exact(&fake, dir.path(), AnnotationMode::Files);

    // Listing calls: the changed batches 2, 3, 4 and the new batch 8, nothing else.
    let want_pages: u64 = [2, 3, 4, 8].iter().map(|&b| new.pages(b)).sum();
    assert_eq!(c.pages.load(Ordering::Relaxed) - pages0, want_pages);
    // Job-result calls: the new and changed jobs, nothing else.
    let changed = new.changed_jobs(&old);
    assert_eq!(c.jobs.load(Ordering::Relaxed) - jobs0, changed.len() as u64);
    let docs = changed.iter().filter(|&&(b, j)| !new.result(b, j)["result"].as_str().unwrap().is_empty()).count();
    assert_eq!(c.attachments.load(Ordering::Relaxed) - att0, docs as u64);

    assert_eq!(summary.stats.requests, minimum["requests_with_documents"].as_u64().unwrap(), "{minimum}");
    let counts = summary.sync.unwrap();
    assert_eq!(
        (counts.batches_unchanged, counts.batches_changed, counts.batches_new, counts.batches_removed),
        (4, 3, 1, 1)
    );
    assert_eq!(counts.jobs_new + counts.jobs_changed, changed.len() as u64);
    assert_eq!(counts.jobs_removed, 1);
    // An unchanged batch is byte-identical; the departed one is kept under removed/.
    assert_eq!(batch_bytes(dir.path(), &untouched), untouched_before);
    assert!(dir.path().join("removed").join(&gone).join("jobs.ndjson").exists());
    let manifest = crate::support::read_json(&dir.path().join("manifest.json"));
    assert_eq!(manifest["removed_batches"][0]["id"], gone.as_str());
    assert!(manifest["batches"].get(&gone).is_none());
    assert!(
        !dir.path().join(".staging").exists()
            || std::fs::read_dir(dir.path().join(".staging")).unwrap().next().is_none()
    );
    let v = playment_export::output::verify(dir.path()).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_lists_every_batch_but_fetches_nothing_unchanged() {
    let fake = start(quirky(200, 6)).await;
    let dir = tempfile::tempdir().unwrap();
    run(sync(&fake, dir.path(), false)).await.unwrap();
    let c = fake.counters();
    let (pages0, jobs0) = (c.pages.load(Ordering::Relaxed), c.jobs.load(Ordering::Relaxed));
    let summary = run(sync(&fake, dir.path(), true)).await.unwrap();
    let d = fake.dataset();
    let all_pages: u64 = d.live().into_iter().map(|b| d.pages(b)).sum();
    assert_eq!(c.pages.load(Ordering::Relaxed) - pages0, all_pages);
    assert_eq!(c.jobs.load(Ordering::Relaxed) - jobs0, 0);
    let counts = summary.sync.unwrap();
    assert_eq!((counts.jobs_new, counts.jobs_changed, counts.jobs_removed), (0, 0, 0));
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_midway_leaves_each_batch_old_or_new_and_the_rerun_is_exact() {
    let mut fc = quirky(900, 8);
    fc.latency = Duration::from_millis(3);
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    run(sync(&fake, dir.path(), false)).await.unwrap();
    let old = fake.dataset();
    let old_jobs = |b: usize| -> HashSet<String> { old.job_ids(b).into_iter().collect() };
    for _ in 0..3 {
        fake.advance();
    }
    let new = fake.dataset();
    let new_jobs = |b: usize| -> HashSet<String> { new.job_ids(b).into_iter().collect() };

    let flags = ["--concurrency", "4", "--annotations", "files", "--full"];
    let sync_cmd = || bin_cmd(&fake, "sync", dir.path(), &flags);
    for (i, after) in [15u64, 40, 70].into_iter().enumerate() {
        let target = fake.counters().api_requests() + after;
        let mut child = sync_cmd().spawn().unwrap();
        tokio::select! {
            () = fake.wait_for_api_requests(target) => {}
            status = child.wait() => panic!("sync {i} ended before it was killed: {status:?}"),
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        // Every batch directory holds the old version or the new one, never a mix.
        for b in [2usize, 3, 4] {
            let path = dir.path().join("batches").join(new.batch_id(b)).join("jobs.ndjson");
            let ids: HashSet<String> = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(ids == old_jobs(b) || ids == new_jobs(b), "kill {i}: batch {b} is half updated");
        }
    }
    let out = sync_cmd().output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
}
