//! A batch's checkpoint (`state.json`) and the recovery of its files after any interruption.
//!
//! The files are the checkpoint: `jobs.ndjson` is trusted up to `jobs_bytes`, which moves only
//! after the lines and the page token that produced them are on disk together. Result lines carry
//! their job id, so every complete result line for a listed job is kept and the rest is cut.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::output::write_atomic;
use crate::output::{Layout, is_safe_id};
use crate::report::Failure;

const STATE_VERSION: u32 = 1;

/// The checkpoint of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchState {
    pub version: u32,
    /// The listing reached its last page.
    pub listing_done: bool,
    /// Token of the next page to list (`None` = first page, or done).
    pub next_page_token: Option<String>,
    pub pages: u64,
    /// Lines and bytes of `jobs.ndjson` covered by this checkpoint.
    pub jobs: u64,
    pub jobs_bytes: u64,
    /// Lines and bytes of `results.ndjson` covered by this checkpoint.
    pub results: u64,
    pub results_bytes: u64,
    /// Why the listing stopped early in the last run, if it did.
    #[serde(default)]
    pub listing_error: Option<String>,
    /// Jobs that failed in the last run.
    #[serde(default)]
    pub failed: Vec<Failure>,
}

impl BatchState {
    /// Listed, and a result for every job.
    pub fn is_complete(&self) -> bool {
        self.listing_done && self.results == self.jobs
    }
}

pub fn load_state(path: &Path) -> io::Result<Option<BatchState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn save_state(path: &Path, state: &BatchState) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(state).expect("state serializes");
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// A batch's files after recovery, ready to append to.
pub struct Recovered {
    pub state: BatchState,
    /// Every job id in `jobs.ndjson`.
    pub known: HashSet<String>,
    /// Jobs in `jobs.ndjson` without a result line, in listing order.
    pub pending: Vec<String>,
    pub jobs_file: File,
    pub results_file: File,
    /// What recovery had to repair, for the user.
    pub notices: Vec<String>,
}

#[derive(Deserialize)]
struct JobHead<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct ResultHead<'a> {
    #[serde(borrow)]
    job_id: std::borrow::Cow<'a, str>,
}

/// The state of a batch that needs no work, without opening its files; `None` if it needs work.
pub fn complete_state(layout: &Layout, batch: &str) -> io::Result<Option<BatchState>> {
    let files = layout.batch(batch);
    let Some(state) = load_state(&files.state())? else {
        return Ok(None);
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX);
    let exact = len(&files.jobs()) == state.jobs_bytes && len(&files.results()) == state.results_bytes;
    Ok((state.is_complete() && exact).then_some(state))
}

/// Open a batch's files, cutting whatever a crash left past the checkpoint.
pub fn recover(layout: &Layout, batch: &str, annotation_files: bool) -> io::Result<Recovered> {
    let files = layout.batch(batch);
    std::fs::create_dir_all(files.dir())?;
    if annotation_files {
        std::fs::create_dir_all(files.annotations())?;
    }
    let mut notices = Vec::new();
    let mut state = load_state(&files.state())?.unwrap_or_default();
    state.version = STATE_VERSION;
    state.failed.clear();
    state.listing_error = None;

    let jobs_file = open_append(&files.jobs())?;
    let jobs_len = jobs_file.metadata()?.len();
    if jobs_len < state.jobs_bytes {
        notices.push(format!(
            "batch {batch}: jobs.ndjson is shorter than its checkpoint ({jobs_len} < {} bytes); listing the batch again",
            state.jobs_bytes
        ));
        state = BatchState {
            version: STATE_VERSION,
            ..BatchState::default()
        };
        jobs_file.set_len(0)?;
        open_append(&files.results())?.set_len(0)?;
    } else if jobs_len > state.jobs_bytes {
        notices.push(format!(
            "batch {batch}: cut {} bytes of jobs.ndjson past the checkpoint; that page is listed again",
            jobs_len - state.jobs_bytes
        ));
        jobs_file.set_len(state.jobs_bytes)?;
    }

    let mut order = Vec::with_capacity(state.jobs as usize);
    let mut known = HashSet::with_capacity(state.jobs as usize);
    for line in BufReader::new(File::open(files.jobs())?).split(b'\n') {
        let line = line?;
        let head: JobHead<'_> = serde_json::from_slice(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", files.jobs().display())))?;
        if known.insert(head.id.to_string()) {
            order.push(head.id.into_owned());
        }
    }
    state.jobs = order.len() as u64;

    let results_file = open_append(&files.results())?;
    let (done, good_bytes, total_bytes) = scan_results(&files.results(), &known)?;
    if good_bytes < total_bytes {
        notices.push(format!(
            "batch {batch}: cut {} bytes of results.ndjson (a torn or orphaned line)",
            total_bytes - good_bytes
        ));
        results_file.set_len(good_bytes)?;
    }
    state.results = done.len() as u64;
    state.results_bytes = good_bytes;
    let pending = order.into_iter().filter(|id| !done.contains(id)).collect();
    Ok(Recovered {
        state,
        known,
        pending,
        jobs_file,
        results_file,
        notices,
    })
}

/// The job ids of the valid prefix of `results.ndjson`, its length and the file's length. A line
/// is valid when it is complete, parses, names a listed job and is that job's first result.
fn scan_results(path: &Path, known: &HashSet<String>) -> io::Result<(HashSet<String>, u64, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut done = HashSet::new();
    let mut good = 0u64;
    let mut total = 0u64;
    let mut line = Vec::new();
    let mut valid = true;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if !valid {
            continue;
        }
        let ok = line.ends_with(b"\n")
            && serde_json::from_slice::<ResultHead<'_>>(&line).ok().is_some_and(|h| {
                known.contains(h.job_id.as_ref()) && is_safe_id(&h.job_id) && done.insert(h.job_id.into_owned())
            });
        if ok {
            good += n as u64;
        } else {
            valid = false;
        }
    }
    Ok((done, good, total))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
