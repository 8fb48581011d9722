//! Resume and crash safety: the real binary killed at random moments, interrupted, locked out,
//! and files torn by hand; every rerun ends exact.

use std::path::Path;
use std::time::Duration;

use playment_export::AnnotationMode;
use playment_export::fake::FakeApi;

use crate::support::{assert_exact, bin_cmd, config, files_under, quirky, read_ndjson, run, start};

/// The binary exporting from `fake` into `out`.
fn export_cmd(fake: &FakeApi, out: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut args = vec!["--concurrency", "8"];
    args.extend_from_slice(extra);
    bin_cmd(fake, "export", out, &args)
}

/// A small deterministic generator for kill moments; the seed is printed to reproduce a run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// (some batch is listed only in part, some listed job has no result yet)
fn phases(fake: &FakeApi, out: &Path) -> (bool, bool) {
    let d = fake.dataset();
    let (mut listing, mut results) = (false, false);
    for b in d.live() {
        let dir = out.join("batches").join(d.batch_id(b));
        let count =
            |name: &str| std::fs::read(dir.join(name)).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
        let jobs = count("jobs.ndjson");
        listing |= jobs > 0 && jobs < d.batch_size(b);
        results |= count("results.ndjson") < jobs;
    }
    (listing, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_repeated_kill_9_is_exact() {
    let mut fc = quirky(3000, 8);
    fc.latency = Duration::from_millis(1);
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill moments from CRASH_SEED={seed}");
    let mut rng = seed;
    let (mut saw_listing, mut saw_results) = (0, 0);
    const KILLS: usize = 12;
    for i in 0..KILLS {
        let target = fake.counters().api_requests() + 20 + next(&mut rng) % 280;
        let mut child = export_cmd(&fake, dir.path(), &["--annotations", "files"]).spawn().unwrap();
        tokio::select! {
            () = fake.wait_for_api_requests(target) => {}
            status = child.wait() => panic!("run {i} ended before it was killed: {status:?}"),
        }
        child.start_kill().unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "run {i}");
        let (listing, results) = phases(&fake, dir.path());
        saw_listing += usize::from(listing);
        saw_results += usize::from(results);
    }
    let before = fake.counters().api_requests();
    let out = export_cmd(&fake, dir.path(), &["--annotations", "files"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(saw_listing > 0, "no kill landed while a batch was being listed");
    assert!(saw_results > 0, "no kill landed while results were being fetched");
    assert_exact(&fake, dir.path(), AnnotationMode::Files);
    for f in files_under(dir.path()) {
        assert!(!f.file_name().unwrap().to_string_lossy().starts_with(".tmp-"), "left over: {}", f.display());
    }
    // For the record: what the kills cost beyond a single clean run.
    let c = fake.counters();
    let d = fake.dataset();
    let docs = (0..d.spec.batches)
        .flat_map(|b| (0..d.batch_size(b)).map(move |j| (b, j)))
        .filter(|&(b, j)| !d.result(b, j)["result"].as_str().unwrap().is_empty())
        .count() as u64;
    let jobs = d.total_jobs() as u64;
    eprintln!(
        "{KILLS} kills ({saw_listing} mid-listing, {saw_results} mid-results); final run {} requests; \
         in all {} job-result calls for {jobs} jobs, {} attachment calls for {docs} documents, {} listing calls",
        c.api_requests() - before,
        c.jobs.load(std::sync::atomic::Ordering::Relaxed),
        c.attachments.load(std::sync::atomic::Ordering::Relaxed),
        c.pages.load(std::sync::atomic::Ordering::Relaxed),
    );
}

async fn interrupted_by(signal: i32) {
    let mut fc = quirky(800, 5);
    fc.latency = Duration::from_millis(2);
    let fake = start(fc).await;
    let dir = tempfile::tempdir().unwrap();
    let child = export_cmd(&fake, dir.path(), &["--annotations", "inline"]).spawn().unwrap();
    fake.wait_for_api_requests(150).await;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as i32, signal) }, 0);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = crate::support::read_json(&dir.path().join("manifest.json"));
    assert_eq!(manifest["state"], "partial");
    let done_before: usize = std::fs::read_dir(dir.path().join("batches"))
        .unwrap()
        .map(|e| read_ndjson(&e.unwrap().path().join("results.ndjson")).len())
        .sum();
    assert!(done_before > 0 && done_before < 800, "{done_before}");
    let jobs_before = fake.counters().jobs.load(std::sync::atomic::Ordering::Relaxed);
    let out = export_cmd(&fake, dir.path(), &["--annotations", "inline"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The rerun fetched exactly the results that were missing.
    let jobs_after = fake.counters().jobs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(jobs_after - jobs_before, (800 - done_before) as u64);
    assert_exact(&fake, dir.path(), AnnotationMode::Inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_130_and_the_rerun_is_exact() {
    interrupted_by(libc::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_130_and_the_rerun_is_exact() {
    interrupted_by(libc::SIGTERM).await;
}

/// Paths and contents of every file, to prove a run touched nothing.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes, meta.modified().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_exits_4_and_touches_nothing() {
    let fake = start(quirky(100, 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.batches = vec![fake.dataset().batch_ids()[2].clone()];
    run(c).await.unwrap();
    let before = snapshot(dir.path());

    // Another run holds the lock: the binary leaves at once.
    let mut c = config(&fake, dir.path());
    c.concurrency = 1;
    let mut slow = quirky(100, 3);
    slow.latency = Duration::from_millis(200);
    let slow_fake = start(slow).await;
    let mut holder = export_cmd(&slow_fake, &dir.path().join("other"), &[]).spawn().unwrap();
    slow_fake.wait_for_api_requests(1).await;
    let out = export_cmd(&slow_fake, &dir.path().join("other"), &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", holder.id().unwrap())), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A dead holder blocks nothing.
    holder.start_kill().unwrap();
    holder.wait().await.unwrap();
    let out = export_cmd(&fake, &dir.path().join("other"), &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // The first export was never touched by any of this.
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(dir.path().join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let before_locked = snapshot(dir.path());
    let out = export_cmd(&fake, dir.path(), &[]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(4));
    let after: Vec<_> =
        snapshot(dir.path()).into_iter().filter(|(p, ..)| !p.starts_with(dir.path().join("other"))).collect();
    let before_locked: Vec<_> =
        before_locked.into_iter().filter(|(p, ..)| !p.starts_with(dir.path().join("other"))).collect();
    assert_eq!(after, before_locked);
    assert_eq!(before.len(), after.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tails_are_cut_and_only_the_missing_job_is_fetched() {
    let fake = start(quirky(300, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    run(config(&fake, dir.path())).await.unwrap();
    let d = fake.dataset();
    let batch = dir.path().join("batches").join(&d.batch_ids()[2]);
    // Drop the last result line, then leave half a line in both files.
    let results = std::fs::read(batch.join("results.ndjson")).unwrap();
    let cut = results[..results.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let mut torn = results[..cut].to_vec();
    torn.extend_from_slice(br#"{"job_id": "half a li"#);
    std::fs::write(batch.join("results.ndjson"), torn).unwrap();
    let mut jobs = std::fs::read(batch.join("jobs.ndjson")).unwrap();
    jobs.extend_from_slice(br#"{"id": "torn"#);
    std::fs::write(batch.join("jobs.ndjson"), jobs).unwrap();

    let before = fake.counters().jobs.load(std::sync::atomic::Ordering::Relaxed);
    let summary = run(config(&fake, dir.path())).await.unwrap();
    assert_eq!(summary.results_written, 1);
    assert_eq!(fake.counters().jobs.load(std::sync::atomic::Ordering::Relaxed) - before, 1);
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_status_read_an_export() {
    let fake = start(quirky(200, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake, dir.path());
    c.annotations = AnnotationMode::Files;
    run(c).await.unwrap();
    let v = playment_export::output::verify(dir.path()).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(v.results, 200);
    let st = playment_export::state::status(dir.path()).unwrap();
    assert_eq!((st.state.as_str(), st.jobs, st.results, st.missing), ("complete", 200, 200, 0));

    // Damage: a repeated result, a missing annotation file, a torn job line.
    let d = fake.dataset();
    let batch = dir.path().join("batches").join(&d.batch_ids()[3]);
    let results = std::fs::read_to_string(batch.join("results.ndjson")).unwrap();
    let first = results.lines().next().unwrap().to_owned();
    std::fs::write(batch.join("results.ndjson"), format!("{results}{first}\n")).unwrap();
    let doc = std::fs::read_dir(batch.join("annotations")).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(doc).unwrap();
    let mut jobs = std::fs::read(batch.join("jobs.ndjson")).unwrap();
    jobs.extend_from_slice(b"{\"id\":");
    std::fs::write(batch.join("jobs.ndjson"), jobs).unwrap();
    let v = playment_export::output::verify(dir.path()).unwrap();
    let text = v.problems.join("\n");
    assert!(text.contains("results written twice"), "{text}");
    assert!(text.contains("without their annotations"), "{text}");
    assert!(text.contains("has no newline"), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playment-export"))
        .args(["verify", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playment-export"))
        .args(["status", "--json", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["project_id"], fake.project());
}
