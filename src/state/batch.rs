//! A batch's checkpoint (`state.json`) and the recovery of its files after any interruption.
//!
//! The files are the checkpoint. The page token moves only after the lines of the pages before it
//! are on disk; every line carries its job's id, so recovery keeps each complete line of a listed
//! job once and cuts the rest, and the rerun fetches exactly what is missing.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::output::write_atomic;
use crate::output::{BatchLayout, JobHead, ResultHead};
use crate::report::Failure;
use crate::state::sync::fingerprint;

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
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
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
    /// Fingerprints of the pending jobs' listing entries, when asked for.
    pub fingerprints: HashMap<String, u64>,
    pub jobs_file: File,
    pub results_file: File,
    /// What recovery had to repair, for the user.
    pub notices: Vec<String>,
}

/// The state of a batch that needs no work, without opening its files; `None` if it needs work.
pub fn complete_state(files: &BatchLayout) -> io::Result<Option<BatchState>> {
    let Some(state) = load_state(&files.state())? else {
        return Ok(None);
    };
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX);
    let exact = len(&files.jobs()) == state.jobs_bytes && len(&files.results()) == state.results_bytes;
    Ok((state.is_complete() && exact).then_some(state))
}

/// Open a batch's files and repair what an interruption left: torn lines are cut, and so are
/// duplicate jobs and results that name no listed job. Complete lines past the checkpoint are
/// kept (a `kill -9` loses nothing the kernel already has); the listing resumes from the
/// checkpoint's token and the job-id set makes re-listed pages add nothing twice.
///
/// With `hashes`, the fingerprint of each pending job's listing entry is returned too (sync
/// compares it with the previous export).
pub fn recover(files: &BatchLayout, annotation_files: bool, hashes: bool) -> io::Result<Recovered> {
    let batch = files.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::fs::create_dir_all(files.dir())?;
    if annotation_files {
        std::fs::create_dir_all(files.annotations())?;
    }
    remove_temp_files(files.dir())?;
    if annotation_files {
        remove_temp_files(&files.annotations())?;
    }
    let mut notices = Vec::new();
    let mut state = load_state(&files.state())?.unwrap_or_default();
    state.version = STATE_VERSION;
    state.failed.clear();
    state.listing_error = None;

    let jobs_file = open_append(&files.jobs())?;
    let mut order = Vec::with_capacity(state.jobs as usize);
    let mut known = HashSet::with_capacity(state.jobs as usize);
    let mut prints = HashMap::new();
    let jobs = repair(&files.jobs(), &jobs_file, |line| {
        let Ok(head) = serde_json::from_slice::<JobHead<'_>>(line) else {
            return false;
        };
        let fresh = known.insert(head.id.to_string());
        if fresh {
            if hashes && let Some(print) = fingerprint(line) {
                prints.insert(head.id.to_string(), print);
            }
            order.push(head.id.into_owned());
        }
        fresh
    })?;
    if jobs.first_drop.is_some_and(|at| at < state.jobs_bytes) || jobs.len < state.jobs_bytes {
        // The checkpoint no longer describes the file: list again from the first page.
        notices.push(format!("batch {batch}: jobs.ndjson does not match its checkpoint; listing the batch again"));
        state.listing_done = false;
        state.next_page_token = None;
    }
    if jobs.dropped > 0 {
        notices.push(format!("batch {batch}: cut {} bytes of torn or repeated lines from jobs.ndjson", jobs.dropped));
    }
    state.jobs = order.len() as u64;
    state.jobs_bytes = jobs.len;

    let results_file = open_append(&files.results())?;
    let mut done = HashSet::with_capacity(order.len());
    let results = repair(&files.results(), &results_file, |line| {
        serde_json::from_slice::<ResultHead<'_>>(line)
            .ok()
            .is_some_and(|h| known.contains(h.job_id.as_ref()) && done.insert(h.job_id.into_owned()))
    })?;
    if results.dropped > 0 {
        notices.push(format!(
            "batch {batch}: cut {} bytes of torn, repeated or orphaned lines from results.ndjson",
            results.dropped
        ));
    }
    state.results = done.len() as u64;
    state.results_bytes = results.len;
    let pending: Vec<String> = order.into_iter().filter(|id| !done.contains(id)).collect();
    prints.retain(|id, _| !done.contains(id));
    Ok(Recovered { state, known, pending, fingerprints: prints, jobs_file, results_file, notices })
}

/// What [`repair`] did to a file.
struct Repaired {
    /// Length of the file afterwards.
    len: u64,
    /// Bytes removed.
    dropped: u64,
    /// Offset of the first removed line, if any.
    first_drop: Option<u64>,
}

/// Keep the complete lines of an NDJSON file that `keep` accepts, in order, and remove the rest.
/// Lines before the first bad one stay where they are; later good lines are moved up.
fn repair(path: &Path, file: &File, mut keep: impl FnMut(&[u8]) -> bool) -> io::Result<Repaired> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut line = Vec::new();
    let (mut offset, mut good_prefix, mut dropped) = (0u64, 0u64, 0u64);
    let mut first_drop = None;
    let mut moved: Vec<u8> = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        let ok = line.ends_with(b"\n") && keep(&line);
        if !ok {
            dropped += n;
            first_drop.get_or_insert(offset);
        } else if first_drop.is_none() {
            good_prefix += n;
        } else {
            moved.extend_from_slice(&line);
        }
        offset += n;
    }
    if first_drop.is_some() {
        file.set_len(good_prefix)?;
        (&*file).write_all(&moved)?;
        file.sync_data()?;
    }
    Ok(Repaired { len: good_prefix + moved.len() as u64, dropped, first_drop })
}

/// Remove the temp files an interrupted atomic write left in `dir`.
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().starts_with(crate::output::TEMP_PREFIX.as_bytes()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
