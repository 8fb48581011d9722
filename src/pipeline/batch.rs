//! One batch: decide what it needs (nothing, a resume in place, or with sync a fresh listing in a
//! staging copy), recover its files, queue the jobs left without a result, then list the
//! remaining pages, writing each page's new jobs and queueing them for their results.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Ctx, JobTask, write_if_changed};
use crate::api::{is_bad_page_token, parse_page};
use crate::config::{AnnotationMode, Mode};
use crate::error::Error;
use crate::output::{BatchLayout, WriteOp, is_safe_id, prepare_staging, push_line};
use crate::report::{BatchChange, Failure};
use crate::state::sync::{JobChange, Previous, fingerprint, same_summary};
use crate::state::{BatchState, Recovered, complete_state, recover};

/// What a batch needs in this run.
enum Opened {
    /// Nothing: it is complete (and, with sync, unchanged).
    Done(BatchState),
    /// Work on `files`; with `previous`, a staging copy that replaces the previous export.
    Work { files: BatchLayout, recovered: Box<Recovered>, previous: Option<Previous>, change: BatchChange },
}

pub(crate) async fn export_batch(ctx: Arc<Ctx>, id: String, summary: Box<RawValue>, jobs: mpsc::Sender<JobTask>) {
    if ctx.cancel.is_cancelled() {
        return;
    }
    if !is_safe_id(&id) {
        ctx.refused.lock().expect("refused lock").push(Failure {
            batch: id.clone(),
            job: None,
            error: format!("batch id {id:?} is not a safe path segment; refused"),
        });
        ctx.reporter.on_batch_done(&id, false);
        return;
    }
    let opened = {
        let ctx = ctx.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || open_batch(&ctx, &id, &summary)).await.expect("recovery does not panic")
    };
    let (files, mut recovered, previous, change) = match opened {
        Ok(Opened::Done(state)) => {
            ctx.reporter.on_resume(state.results);
            ctx.reporter.on_batch_done(&id, true);
            ctx.tally(BatchChange::Unchanged, |_| {});
            ctx.done.lock().expect("done lock").push((id, state));
            return;
        }
        Ok(Opened::Work { files, recovered, previous, change }) => (files, recovered, previous, change),
        Err(e) => return ctx.fail_run(e),
    };
    for notice in &recovered.notices {
        tracing::warn!("{notice}");
        ctx.reporter.on_notice(notice);
    }
    ctx.reporter.on_resume(recovered.state.results);
    let batch: Arc<str> = Arc::from(id.as_str());
    let mut known = std::mem::take(&mut recovered.known);
    let pending = std::mem::take(&mut recovered.pending);
    let prints = std::mem::take(&mut recovered.fingerprints);
    let listing_done = recovered.state.listing_done;
    let token = recovered.state.next_page_token.clone().unwrap_or_default();
    let swap_into = previous.as_ref().map(|p| p.files.clone());
    let attach = WriteOp::Attach { batch: id.clone(), files, recovered, swap_into };
    if ctx.writer.send(attach).await.is_err() {
        return;
    }
    let mut router = Router {
        ctx: &ctx,
        batch: &batch,
        jobs: &jobs,
        previous: previous.as_ref(),
        carry: HashSet::new(),
        counts: Counts::default(),
    };
    for job in pending {
        let print = prints.get(&job).copied();
        if !router.route(job, print).await {
            return;
        }
    }
    let listed = listing_done || list(&mut router, token, &mut known).await;
    if ctx.cancel.is_cancelled() {
        return;
    }
    if let Some(previous) = previous.as_ref().filter(|_| !router.carry.is_empty()) {
        let carry = std::mem::take(&mut router.carry);
        let from = previous.files.clone();
        if ctx.writer.send(WriteOp::CarryOver { batch: id.clone(), from, jobs: carry }).await.is_err() {
            return;
        }
    }
    let mut counts = router.counts;
    if listed && let Some(previous) = &previous {
        counts.removed = (previous.jobs() as u64).saturating_sub(counts.changed + counts.unchanged);
    }
    if matches!(ctx.config.mode, Mode::Sync { .. }) {
        ctx.reporter.on_batch_synced(&id, change, counts.new, counts.changed, counts.removed);
    }
    ctx.tally(change, |t| {
        t.jobs_new += counts.new;
        t.jobs_changed += counts.changed;
        t.jobs_removed += counts.removed;
    });
}

/// Decide what this batch needs, and open its files for it.
fn open_batch(ctx: &Ctx, id: &str, summary: &RawValue) -> Result<Opened, Error> {
    let live = ctx.layout.batch(id);
    let staging = ctx.layout.staging(id);
    let io = |path: &BatchLayout| {
        let path = path.dir().to_path_buf();
        move |source| Error::Write { path, source }
    };
    let annotation_files = ctx.config.annotations == AnnotationMode::Files;
    let (sync, full) = match ctx.config.mode {
        Mode::Export => (false, false),
        Mode::Sync { full } => (true, full),
    };
    let exists = live.dir().join("state.json").exists();
    let unchanged = !sync || (!full && same_summary(&live.summary(), summary.get()));
    if exists && unchanged {
        // Export resumes in place; sync does too when the batch did not change.
        if sync && staging.dir().exists() {
            std::fs::remove_dir_all(staging.dir()).map_err(io(&staging))?;
        }
        if let Some(state) = complete_state(&live).map_err(io(&live))? {
            return Ok(Opened::Done(state));
        }
        let recovered = recover(&live, annotation_files, false).map_err(io(&live))?;
        write_if_changed(&live.summary(), summary.get())?;
        let change = if sync { BatchChange::Unchanged } else { BatchChange::Resumed };
        return Ok(Opened::Work { files: live, recovered: Box::new(recovered), previous: None, change });
    }
    if !exists {
        // A batch new to this directory is exported in place.
        let recovered = recover(&live, annotation_files, false).map_err(io(&live))?;
        write_if_changed(&live.summary(), summary.get())?;
        let change = if sync { BatchChange::New } else { BatchChange::Resumed };
        return Ok(Opened::Work { files: live, recovered: Box::new(recovered), previous: None, change });
    }
    // Changed (or --full): list it afresh into a staging copy, keeping what did not change.
    // A staging copy left by an interrupted sync is resumed only if it was started for this
    // very summary; otherwise the project moved on and it starts over.
    if staging.dir().exists() && !same_summary(&staging.summary(), summary.get()) {
        std::fs::remove_dir_all(staging.dir()).map_err(io(&staging))?;
    }
    prepare_staging(&staging).map_err(io(&staging))?;
    let previous = Previous::load(live.clone()).map_err(io(&live))?;
    let recovered = recover(&staging, annotation_files, true).map_err(io(&staging))?;
    write_if_changed(&staging.summary(), summary.get())?;
    Ok(Opened::Work {
        files: staging,
        recovered: Box::new(recovered),
        previous: Some(previous),
        change: BatchChange::Changed,
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    new: u64,
    changed: u64,
    unchanged: u64,
    removed: u64,
}

/// Sends each job where it belongs: to the fetchers, or (unchanged since the previous export)
/// to the carry-over set.
struct Router<'a> {
    ctx: &'a Ctx,
    batch: &'a Arc<str>,
    jobs: &'a mpsc::Sender<JobTask>,
    previous: Option<&'a Previous>,
    carry: HashSet<String>,
    counts: Counts,
}

impl Router<'_> {
    /// False when the run is stopping.
    async fn route(&mut self, job: String, print: Option<u64>) -> bool {
        if let Some(previous) = self.previous {
            match previous.compare(&job, print) {
                JobChange::Unchanged => {
                    self.counts.unchanged += 1;
                    self.carry.insert(job);
                    return true;
                }
                JobChange::Changed => self.counts.changed += 1,
                JobChange::New => self.counts.new += 1,
            }
        } else {
            self.counts.new += 1;
        }
        tokio::select! {
            sent = self.jobs.send(JobTask { batch: self.batch.clone(), job }) => sent.is_ok(),
            () = self.ctx.cancel.cancelled() => false,
        }
    }
}

/// List pages from `token` on; true when the listing reached its end. Each page's new jobs are
/// written before they are queued, so a result never reaches the writer before its job's line.
async fn list(router: &mut Router<'_>, mut token: String, known: &mut HashSet<String>) -> bool {
    let ctx = router.ctx;
    let batch = router.batch.clone();
    let mut seen_tokens = HashSet::new();
    let mut restarted = false;
    loop {
        let data = tokio::select! {
            d = ctx.client.batch_page(&batch, &token) => d,
            () = ctx.cancel.cancelled() => return false,
        };
        let page = match data {
            Ok(data) => parse_page(&data).map_err(|e| e.to_string()),
            Err(e) => match ctx.unless_fatal(e) {
                // A page token the API no longer accepts (say, saved by a run long ago): list the
                // batch again from the first page, once; the job-id set keeps it exact.
                Some(e) if is_bad_page_token(&e.source) && !token.is_empty() && !restarted => {
                    restarted = true;
                    let notice = format!("batch {batch}: the API refused the saved page token; listing from the start");
                    tracing::warn!("{notice}");
                    ctx.reporter.on_notice(&notice);
                    token.clear();
                    seen_tokens.clear();
                    continue;
                }
                Some(e) => Err(e.to_string()),
                None => return false,
            },
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let _ = ctx.writer.send(WriteOp::ListingFailed { batch: batch.to_string(), error }).await;
                return false;
            }
        };
        let mut lines = Vec::new();
        let mut fresh = Vec::new();
        let mut prints: HashMap<String, u64> = HashMap::new();
        for (id, job) in &page.jobs {
            // A job repeated across a page boundary is exported once.
            if known.insert(id.clone()) {
                push_line(job.get(), &mut lines);
                if router.previous.is_some()
                    && let Some(print) = fingerprint(job.get().as_bytes())
                {
                    prints.insert(id.clone(), print);
                }
                fresh.push(id.clone());
            }
        }
        // An empty page ends the listing whatever its token says.
        let next = page.next_page_token.filter(|_| !page.jobs.is_empty());
        let looped = next.as_ref().is_some_and(|t| !seen_tokens.insert(t.clone()) || *t == token);
        let op = WriteOp::Page {
            batch: batch.to_string(),
            lines,
            new_jobs: fresh.len() as u64,
            next_page_token: next.clone(),
            last: next.is_none(),
        };
        if ctx.writer.send(op).await.is_err() {
            return false;
        }
        for job in fresh {
            let print = prints.get(&job).copied();
            if !router.route(job, print).await {
                return false;
            }
        }
        if looped {
            let error = format!("the listing repeats page token {:?}; stopped", next.unwrap_or_default());
            let _ = ctx.writer.send(WriteOp::ListingFailed { batch: batch.to_string(), error }).await;
            return false;
        }
        match next {
            None => return true,
            Some(next) => token = next,
        }
    }
}
