//! `status`: what an export directory holds and what is missing, read from the manifest and the
//! batch checkpoints alone (no network, no lock taken, nothing written).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::{Manifest, load_state};
use crate::error::Error;
use crate::output::{Layout, is_safe_id};

/// One batch as the directory knows it.
#[derive(Debug, Serialize)]
pub struct BatchStatus {
    pub id: String,
    /// `not started`, `listing`, `fetching`, `complete` or `failed`.
    pub state: String,
    /// `total_jobs` of the batch summary, as the API reported it.
    pub expected_jobs: Option<u64>,
    pub jobs: u64,
    pub results: u64,
    pub failed: u64,
    pub missing: u64,
}

/// The whole directory.
#[derive(Debug, Serialize)]
pub struct Status {
    pub project_id: String,
    /// `complete`, `partial`, `running` or `interrupted` (a run died without saying so).
    pub state: String,
    /// Who holds the lock, when a run is going on.
    pub running: Option<String>,
    pub updated_at: String,
    pub batches_total: u64,
    pub batches_complete: u64,
    pub jobs: u64,
    pub results: u64,
    pub failed: u64,
    pub missing: u64,
    pub batches: Vec<BatchStatus>,
}

/// The batches an export covers: those of `project.json`, narrowed by the manifest's filter, as
/// `(id, summary)`.
pub fn exported_batches(layout: &Layout, manifest: &Manifest) -> Result<Vec<(String, serde_json::Value)>, Error> {
    let path = layout.project();
    let bytes = std::fs::read(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
    let details: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Read {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let batches = details["batches"].as_array().cloned().unwrap_or_default();
    Ok(batches
        .into_iter()
        .filter_map(|b| Some((b["id"].as_str()?.to_owned(), b)))
        .filter(|(id, _)| manifest.batch_filter.is_empty() || manifest.batch_filter.contains(id))
        .collect())
}

/// Read the status of the export in `dir`.
pub fn status(dir: &Path) -> Result<Status, Error> {
    let layout = Layout::new(dir);
    let manifest = Manifest::load(&layout.manifest())?
        .ok_or_else(|| Error::Mismatch(format!("{} holds no export (no manifest.json)", dir.display())))?;
    let running = lock_holder(&layout.lock());
    let mut st = Status {
        project_id: manifest.project_id.clone(),
        state: match (&manifest.state, &running) {
            (super::RunState::Running, None) => "interrupted".into(),
            (s, _) => serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        },
        running,
        updated_at: manifest.updated_at.clone(),
        batches_total: 0,
        batches_complete: 0,
        jobs: 0,
        results: 0,
        failed: 0,
        missing: 0,
        batches: Vec::new(),
    };
    for (id, summary) in exported_batches(&layout, &manifest)? {
        let expected_jobs = summary["total_jobs"].as_u64();
        let state = if is_safe_id(&id) {
            load_state(&layout.batch(&id).state())
                .map_err(|source| Error::Read { path: layout.batch(&id).state(), source })?
        } else {
            None
        };
        let b = match state {
            None => BatchStatus {
                state: if is_safe_id(&id) { "not started" } else { "failed" }.into(),
                id,
                expected_jobs,
                jobs: 0,
                results: 0,
                failed: 0,
                missing: expected_jobs.unwrap_or(0),
            },
            Some(s) => BatchStatus {
                state: if s.is_complete() {
                    "complete"
                } else if s.listing_error.is_some() || !s.failed.is_empty() {
                    "failed"
                } else if s.listing_done {
                    "fetching"
                } else {
                    "listing"
                }
                .into(),
                id,
                expected_jobs,
                jobs: s.jobs,
                results: s.results,
                failed: s.failed.len() as u64,
                missing: s.jobs.saturating_sub(s.results),
            },
        };
        st.batches_total += 1;
        st.batches_complete += u64::from(b.state == "complete");
        st.jobs += b.jobs;
        st.results += b.results;
        st.failed += b.failed;
        st.missing += b.missing;
        st.batches.push(b);
    }
    Ok(st)
}

/// The holder written in the lock file, if a live process holds the lock.
fn lock_holder(path: &Path) -> Option<String> {
    let mut file: File = OpenOptions::new().read(true).open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(holder.trim().to_owned())
        }
        Err(TryLockError::Error(_)) => None,
    }
}

impl Status {
    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "project {}: {}{}\n{} of {} batches complete; {} jobs, {} results, {} failed, {} missing (updated {})\n",
            self.project_id,
            self.state,
            self.running.as_deref().map(|h| format!(" ({h})")).unwrap_or_default(),
            self.batches_complete,
            self.batches_total,
            self.jobs,
            self.results,
            self.failed,
            self.missing,
            self.updated_at,
        );
        out.push_str(&format!(
            "{:<40} {:<12} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
            "batch", "state", "expected", "jobs", "results", "failed", "missing"
        ));
        for b in &self.batches {
            out.push_str(&format!(
                "{:<40} {:<12} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
                b.id,
                b.state,
                b.expected_jobs.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                b.jobs,
                b.results,
                b.failed,
                b.missing
            ));
        }
        out
    }
}
