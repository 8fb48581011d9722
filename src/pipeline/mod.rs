//! The export itself: project details -> batches -> listing pages -> job results (and annotation
//! documents), as one stream. Listing and result fetching overlap, several batches list at once,
//! and the API client's limiter bounds what is in flight over all of it.

mod batch;
mod job;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, RequestError, is_fatal, parse_details};
use crate::config::{Config, Mode};
use crate::error::Error;
use crate::output::{Layout, WriteOp, Writer, WriterReport, is_safe_id, recover_swaps, write_atomic};
use crate::report::{BatchChange, Failure, Reporter, Summary, SyncCounts};
use crate::state::{BatchCounts, BatchState, DirLock, Manifest, RunState};

/// Messages queued for the writer.
const WRITE_QUEUE: usize = 256;
/// Jobs under way per request slot.
const JOBS_PER_SLOT: usize = 4;
/// Most job results sent to the writer in one message.
const WRITE_CHUNK: usize = 256;

/// What every task of a run shares.
pub(crate) struct Ctx {
    pub config: Config,
    pub layout: Layout,
    pub client: ApiClient,
    pub reporter: Arc<dyn Reporter>,
    pub writer: mpsc::Sender<WriteOp>,
    pub cancel: CancellationToken,
    fatal: Mutex<Option<Error>>,
    /// Batches that needed no work, and batches refused before their files were opened.
    done: Mutex<Vec<(String, BatchState)>>,
    refused: Mutex<Vec<Failure>>,
    sync: Mutex<SyncCounts>,
}

impl Ctx {
    /// Record an error that ends the run, and stop everything.
    pub fn fail_run(&self, error: Error) {
        let mut fatal = self.fatal.lock().expect("fatal lock");
        fatal.get_or_insert(error);
        self.cancel.cancel();
    }

    /// Count a batch (and what `f` adds) in the sync summary.
    pub fn tally(&self, change: BatchChange, f: impl FnOnce(&mut SyncCounts)) {
        let mut t = self.sync.lock().expect("sync lock");
        match change {
            BatchChange::Unchanged => t.batches_unchanged += 1,
            BatchChange::Changed => t.batches_changed += 1,
            BatchChange::New => t.batches_new += 1,
            BatchChange::Resumed => {}
        }
        f(&mut t);
    }

    /// A request error that is fatal for the whole run (bad key, no access) stops it here;
    /// any other error is handed back for the caller to record.
    pub fn unless_fatal(&self, err: RequestError) -> Option<RequestError> {
        if is_fatal(&err.source) {
            self.fail_run(auth_error(&self.config.project, err));
            return None;
        }
        if self.client.given_up() {
            self.fail_run(Error::ApiDown { failures: crate::api::GIVE_UP_AFTER, source: Box::new(err) });
            return None;
        }
        Some(err)
    }
}

/// A job to fetch.
pub(crate) struct JobTask {
    pub batch: Arc<str>,
    pub job: String,
}

/// Export `config.project` into `config.out`. `cancel` stops the run gracefully: no new work is
/// taken, what was written is checkpointed, and the summary says `interrupted`.
pub async fn run(config: Config, reporter: Arc<dyn Reporter>, cancel: CancellationToken) -> Result<Summary, Error> {
    let started = Instant::now();
    validate(&config)?;
    let layout = Layout::new(&config.out);
    std::fs::create_dir_all(layout.root()).map_err(|source| Error::OutputDir { path: layout.root().into(), source })?;
    let _lock = DirLock::acquire(&layout)?;
    crate::state::remove_temp_files(layout.root())
        .and_then(|()| recover_swaps(&layout))
        .map_err(|source| Error::OutputDir { path: layout.root().into(), source })?;
    let mut manifest = open_manifest(&config, &layout)?;
    let client = ApiClient::new(&config, reporter.clone()).map_err(Error::Client)?;

    let details = tokio::select! {
        d = client.project_details() => d,
        () = cancel.cancelled() => return Ok(Summary { state: "interrupted".into(), interrupted: true, ..Summary::default() }),
    };
    let details = details.map_err(|e| {
        if is_fatal(&e.source) {
            auth_error(&config.project, e)
        } else {
            Error::FetchProject { project: config.project.clone(), source: Box::new(e) }
        }
    })?;
    let batches = parse_details(&details).map_err(|source| Error::FetchProject {
        project: config.project.clone(),
        source: Box::new(RequestError {
            what: "project details".into(),
            retries: 0,
            elapsed: started.elapsed(),
            source,
        }),
    })?;
    let all_ids: Vec<String> = batches.iter().map(|(id, _)| id.clone()).collect();
    let batches = select_batches(&config, batches)?;
    write_if_changed(&layout.project(), details.get())?;
    std::fs::create_dir_all(layout.batches()).map_err(|source| Error::OutputDir { path: layout.batches(), source })?;

    manifest.state = RunState::Running;
    manifest.finished_at = None;
    manifest.batch_filter = config.batches.clone();
    manifest.save(&layout.manifest())?;
    let removed = match config.mode {
        Mode::Sync { .. } => remove_departed(&layout, &all_ids, &mut manifest, reporter.as_ref())?,
        Mode::Export => 0,
    };

    let expected: u64 = batches.iter().map(|(_, s)| summary_total_jobs(s)).sum();
    reporter.on_start(batches.len() as u64, expected);
    let batch_ids: Vec<String> = batches.iter().map(|(id, _)| id.clone()).collect();

    let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
    let writer = Writer::new(reporter.clone());
    let writer_cancel = cancel.clone();
    let writer = tokio::task::spawn_blocking(move || writer.run(write_rx, writer_cancel));

    let ctx = Arc::new(Ctx {
        config,
        layout,
        client,
        reporter: reporter.clone(),
        writer: write_tx,
        cancel: cancel.clone(),
        fatal: Mutex::new(None),
        done: Mutex::new(Vec::new()),
        refused: Mutex::new(Vec::new()),
        sync: Mutex::new(SyncCounts { batches_removed: removed, ..SyncCounts::default() }),
    });
    crawl(&ctx, batches).await;

    let Ctx { writer: write_tx, layout, client, fatal, done, refused, sync, config, .. } =
        Arc::into_inner(ctx).expect("every task of the run has ended");
    drop(write_tx);
    let written = writer.await.expect("the writer thread does not panic");
    let fatal = fatal.into_inner().expect("fatal lock");
    let written = match (written, fatal) {
        (Err(e), _) | (Ok(_), Some(e)) => {
            // Keep what is on disk; the manifest says the export is partial.
            manifest.state = RunState::Partial;
            let _ = manifest.save(&layout.manifest());
            return Err(e);
        }
        (Ok(w), None) => w,
    };

    let mut summary = summarize(
        &batch_ids,
        written,
        done.into_inner().expect("done lock"),
        refused.into_inner().expect("refused lock"),
        &mut manifest,
    );
    summary.stats = client.stats();
    if matches!(config.mode, Mode::Sync { .. }) {
        summary.sync = Some(sync.into_inner().expect("sync lock"));
    }
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.interrupted = cancel.is_cancelled();
    let complete = summary.failed == 0 && summary.batches_complete == summary.batches && !summary.interrupted;
    summary.state = if summary.interrupted {
        "interrupted"
    } else if complete {
        "complete"
    } else {
        "partial"
    }
    .into();
    manifest.state = if complete { RunState::Complete } else { RunState::Partial };
    manifest.finished_at = Some(crate::state::now_rfc3339());
    write_failures(&layout, &manifest.failures)?;
    manifest.save(&layout.manifest())?;
    reporter.on_finish(&summary);
    Ok(summary)
}

/// Listing and fetching, overlapped: listers push jobs into one bounded queue that the fetchers
/// drain; both sides share the client's limiter.
async fn crawl(ctx: &Arc<Ctx>, batches: Vec<(String, Box<RawValue>)>) {
    let concurrency = ctx.config.concurrency.max(1);
    let (jobs_tx, jobs_rx) = mpsc::channel::<JobTask>(concurrency * 4);
    let listing = async move {
        futures::stream::iter(batches)
            .map(|(id, summary)| batch::export_batch(ctx.clone(), id, summary, jobs_tx.clone()))
            .buffer_unordered(concurrency)
            .collect::<()>()
            .await;
    };
    let fetching = tokio_stream_receiver(jobs_rx)
        .map(|task| job::fetch_job(ctx.clone(), task))
        // More jobs under way than requests in flight: a job waiting out its backoff must not
        // hold a request slot. The limiter's semaphore still caps requests at `concurrency`.
        .buffer_unordered(concurrency * JOBS_PER_SLOT)
        .filter_map(std::future::ready)
        // Whatever is ready goes to the writer in one message: fewer wake-ups of its thread.
        .ready_chunks(WRITE_CHUNK)
        .for_each(|ops| async {
            // A closed writer means the run is ending on a write error; it is reported there.
            let _ = ctx.writer.send(WriteOp::Many(ops)).await;
        });
    tokio::join!(listing, fetching);
}

fn tokio_stream_receiver<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn validate(config: &Config) -> Result<(), Error> {
    if !is_safe_id(&config.project) {
        return Err(Error::Config(format!(
            "project id {:?} is not valid: use letters, digits, '-', '_' or '.'",
            config.project
        )));
    }
    if let Some(b) = config.batches.iter().find(|b| !is_safe_id(b)) {
        return Err(Error::Config(format!("batch id {b:?} is not valid: use letters, digits, '-', '_' or '.'")));
    }
    if !matches!(config.base_url.scheme(), "http" | "https") || config.base_url.cannot_be_a_base() {
        return Err(Error::Config(format!("base URL {} is not an http(s) URL", config.base_url)));
    }
    if config.concurrency == 0 {
        return Err(Error::Config("--concurrency must be at least 1".into()));
    }
    Ok(())
}

fn open_manifest(config: &Config, layout: &Layout) -> Result<Manifest, Error> {
    let fresh = Manifest::new(&config.project, &config.base_url, config.annotations);
    let Some(existing) = Manifest::load(&layout.manifest())? else {
        return Ok(fresh);
    };
    if existing.project_id != config.project {
        return Err(Error::Mismatch(format!(
            "{} holds an export of project {}, not {}; choose another --out",
            layout.root().display(),
            existing.project_id,
            config.project
        )));
    }
    if existing.annotations != config.annotations {
        return Err(Error::Mismatch(format!(
            "{} was exported with --annotations {}; rerun with the same mode or choose another --out",
            layout.root().display(),
            existing.annotations.as_str()
        )));
    }
    Ok(Manifest {
        state: RunState::Running,
        started_at: fresh.started_at,
        tool_version: fresh.tool_version,
        ..existing
    })
}

fn select_batches(
    config: &Config,
    batches: Vec<(String, Box<RawValue>)>,
) -> Result<Vec<(String, Box<RawValue>)>, Error> {
    if config.batches.is_empty() {
        return Ok(batches);
    }
    if let Some(missing) = config.batches.iter().find(|b| !batches.iter().any(|(id, _)| id == *b)) {
        return Err(Error::UnknownBatch { project: config.project.clone(), batch: missing.clone() });
    }
    Ok(batches.into_iter().filter(|(id, _)| config.batches.contains(id)).collect())
}

fn summary_total_jobs(summary: &RawValue) -> u64 {
    #[derive(serde::Deserialize)]
    struct Total {
        #[serde(default)]
        total_jobs: Option<u64>,
    }
    serde_json::from_str::<Total>(summary.get()).ok().and_then(|t| t.total_jobs).unwrap_or(0)
}

/// Replace `path` with `json` (pretty-printed server text kept as it came) unless it already holds it.
pub(crate) fn write_if_changed(path: &std::path::Path, json: &str) -> Result<(), Error> {
    let mut bytes = json.as_bytes().to_vec();
    bytes.push(b'\n');
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_atomic(path, &bytes).map_err(|source| Error::Write { path: path.into(), source })
}

fn auth_error(project: &str, err: RequestError) -> Error {
    let code = match &err.source {
        crate::api::ApiError::Status { code, .. } => code.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let message = if code == "unauthorized" || code == "core.webutil.auther" {
        format!("the API key has no access to project {project} ({})", err.source)
    } else {
        format!("the API key was refused ({}); check --api-key or PLAYMENT_API_KEY", err.source)
    };
    Error::Auth { message, source: Box::new(err) }
}

fn summarize(
    batch_ids: &[String],
    written: WriterReport,
    done: Vec<(String, BatchState)>,
    refused: Vec<Failure>,
    manifest: &mut Manifest,
) -> Summary {
    let mut summary = Summary {
        batches: batch_ids.len() as u64,
        jobs_listed: written.jobs_listed,
        results_written: written.results_written,
        annotations_written: written.annotations_written,
        ..Summary::default()
    };
    let mut states: std::collections::HashMap<String, BatchState> = done.into_iter().collect();
    states.extend(written.batches.into_iter().map(|b| (b.batch, b.state)));
    manifest.failures.clear();
    for id in batch_ids {
        let Some(state) = states.remove(id) else { continue };
        let complete = state.is_complete() && state.failed.is_empty();
        summary.jobs += state.jobs;
        summary.batches_complete += u64::from(complete);
        summary.batches_failed += u64::from(!complete);
        summary.failed += state.failed.len() as u64;
        if let Some(error) = &state.listing_error {
            manifest.failures.push(Failure { batch: id.clone(), job: None, error: error.clone() });
        }
        manifest.failures.extend(state.failed.iter().cloned());
        manifest.batches.insert(
            id.clone(),
            BatchCounts {
                jobs: state.jobs,
                results: state.results,
                failed: state.failed.len() as u64,
                listed: state.listing_done,
                complete,
            },
        );
    }
    summary.batches_failed += refused.len() as u64;
    summary.failed += refused.len() as u64;
    manifest.failures.extend(refused);
    summary.failures = manifest.failures.clone();
    summary
}

/// Sync: move every batch directory whose batch left the project to `removed/`, and record it.
fn remove_departed(
    layout: &Layout,
    project: &[String],
    manifest: &mut Manifest,
    reporter: &dyn Reporter,
) -> Result<u64, Error> {
    let io = |path: std::path::PathBuf| move |source| Error::Write { path, source };
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(layout.batches()) else { return Ok(0) };
    let mut departed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(layout.batches()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !project.contains(&name) {
            departed.push(name);
        }
    }
    departed.sort();
    for id in departed {
        let target = layout.removed().join(&id);
        std::fs::create_dir_all(layout.removed()).map_err(io(layout.removed()))?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io(target.clone()))?;
        }
        std::fs::rename(layout.batches().join(&id), &target).map_err(io(target.clone()))?;
        crate::output::fsync_dir(&layout.batches())
            .and_then(|()| crate::output::fsync_dir(&layout.removed()))
            .map_err(io(target.clone()))?;
        let staging = layout.staging_root().join(&id);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(staging.clone()))?;
        }
        manifest.batches.remove(&id);
        manifest
            .removed_batches
            .push(crate::state::RemovedBatch { id: id.clone(), removed_at: crate::state::now_rfc3339() });
        reporter.on_batch_removed(&id);
        removed += 1;
    }
    if removed > 0 {
        manifest.save(&layout.manifest())?;
    }
    Ok(removed)
}

fn write_failures(layout: &Layout, failures: &[Failure]) -> Result<(), Error> {
    let path = layout.failures();
    if failures.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Write { path, source: e }),
            _ => Ok(()),
        };
    }
    let mut bytes = Vec::new();
    for f in failures {
        serde_json::to_writer(&mut bytes, f).expect("failure serializes");
        bytes.push(b'\n');
    }
    write_atomic(&path, &bytes).map_err(|source| Error::Write { path, source })
}
