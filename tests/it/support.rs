//! Shared helpers: a fake API per test, a fast test configuration, and the exact comparison of
//! an export directory with what the fake's dataset says it must hold.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use playment_export::fake::{DatasetSpec, FakeApi, FakeConfig};
use playment_export::{AnnotationMode, ApiKey, Config, RetryPolicy, Silent, Summary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A small project with every quirk of the generator.
pub fn quirky(jobs: usize, batches: usize) -> FakeConfig {
    FakeConfig {
        dataset: DatasetSpec { jobs, batches, page_size: 10, ..DatasetSpec::default() },
        ..FakeConfig::default()
    }
}

pub async fn start(config: FakeConfig) -> FakeApi {
    FakeApi::start(config).await.expect("fake API starts")
}

/// A configuration for `fake` with tiny retry delays and no client-side rate limit.
pub fn config(fake: &FakeApi, out: &Path) -> Config {
    let mut c = Config::new(fake.project(), out, fake.base_url.clone(), ApiKey::new(fake.api_key()));
    c.concurrency = 8;
    c.rps = 0;
    c.timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        retries: 8,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(50),
    };
    c
}

pub async fn run(config: Config) -> Result<Summary, playment_export::Error> {
    playment_export::run(config, Arc::new(Silent), CancellationToken::new()).await
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The real binary running `command` (`export` or `sync`) against `fake` into `out`, quietly,
/// with `extra` flags.
pub fn bin_cmd(fake: &FakeApi, command: &str, out: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_playment-export"));
    cmd.args([command, "--project", fake.project(), "--base-url", fake.base_url.as_str(), "--rps", "0", "--quiet"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("PLAYMENT_API_KEY", fake.api_key())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Lines of an NDJSON file, each checked to be complete JSON.
pub fn read_ndjson(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends without a newline", path.display());
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display())))
        .collect()
}

/// Index lines by a key, failing on duplicates.
fn by_key(lines: Vec<Value>, key: &str, what: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for line in lines {
        let id = line[key].as_str().unwrap_or_else(|| panic!("{what}: line without {key}")).to_owned();
        assert!(out.insert(id.clone(), line).is_none(), "{what}: job {id} appears twice");
    }
    out
}

/// Assert that `out` holds exactly the export of `fake`'s dataset in `mode`.
pub fn assert_exact(fake: &FakeApi, out: &Path, mode: AnnotationMode) {
    assert_exact_except(fake, out, mode, &[]);
}

/// [`assert_exact`], but for the batches of the indices in `skip`, which must only exist.
pub fn assert_exact_except(fake: &FakeApi, out: &Path, mode: AnnotationMode, skip: &[usize]) {
    let d = fake.dataset();
    let details = read_json(&out.join("project.json"));
    assert_eq!(details, d.details(), "project.json");
    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(manifest["state"], if skip.is_empty() { "complete" } else { "partial" });
    let summaries: HashMap<String, Value> = details["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].as_str().unwrap().to_owned(), b.clone()))
        .collect();
    let mut dirs: Vec<String> = std::fs::read_dir(out.join("batches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    let mut live: Vec<String> = d.live().into_iter().map(|b| d.batch_id(b).to_owned()).collect();
    live.sort();
    assert_eq!(dirs, live, "batch directories");
    for b in d.live().into_iter().filter(|b| !skip.contains(b)) {
        let id = d.batch_id(b).to_owned();
        let dir = out.join("batches").join(&id);
        let summary = read_json(&dir.join("batch.json"));
        assert_eq!(summary, summaries[&id], "batch.json of {id}");
        let jobs = by_key(read_ndjson(&dir.join("jobs.ndjson")), "id", "jobs.ndjson");
        let results = by_key(read_ndjson(&dir.join("results.ndjson")), "job_id", "results.ndjson");
        assert_eq!(jobs.len(), d.batch_size(b), "jobs of batch {id}");
        assert_eq!(results.len(), d.batch_size(b), "results of batch {id}");
        let mut docs = 0;
        for j in d.job_indices(b) {
            let job_id = d.job_id(b, j);
            assert_eq!(jobs[&job_id], d.job(b, j), "job {job_id}");
            let mut want = d.result(b, j);
            let has_doc = !want["result"].as_str().unwrap().is_empty();
            if mode == AnnotationMode::Inline && has_doc {
                want["annotations"] = d.document(b, j);
            }
            assert_eq!(results[&job_id], want, "result of {job_id}");
            let file = dir.join("annotations").join(format!("{job_id}.json"));
            if mode == AnnotationMode::Files && has_doc {
                let doc = read_json(&file);
                assert_eq!(doc, d.document(b, j), "annotation file of {job_id}");
                docs += 1;
            } else {
                assert!(!file.exists(), "{} should not exist", file.display());
            }
        }
        if mode == AnnotationMode::Files {
            let present = std::fs::read_dir(dir.join("annotations")).map(|r| r.count()).unwrap_or(0);
            assert_eq!(present, docs, "annotation files of batch {id}");
        }
    }
}

/// Every file under `dir`, for checking that nothing was written outside an export.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
