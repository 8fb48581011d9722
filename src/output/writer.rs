//! The one writer of an export: a blocking thread that owns every open batch file, fed by a
//! bounded channel. Workers never touch files. Lines are appended, and a batch's checkpoint moves
//! only after the lines it covers are flushed and fsynced.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BatchLayout, ResultHead, for_each_line, swap_in, write_atomic};
use crate::error::Error;
use crate::report::{Failure, Reporter};
use crate::state::{BatchState, Recovered, save_state};

/// How often open batches are checkpointed while they are being written.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long written lines may wait in the writer's buffers before they go to the kernel.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// One thing to write.
pub enum WriteOp {
    /// A batch's recovered files in `files`; must come before any other op of the batch. With
    /// `swap_into`, `files` is a staging copy that replaces that live batch once complete.
    Attach { batch: String, files: BatchLayout, recovered: Box<Recovered>, swap_into: Option<BatchLayout> },
    /// Copy the result lines (and annotation files) of these unchanged jobs from the previous
    /// export of the batch.
    CarryOver { batch: String, from: BatchLayout, jobs: HashSet<String> },
    /// New jobs of one listing page, as NDJSON lines. `last` ends the listing.
    Page { batch: String, lines: Vec<u8>, new_jobs: u64, next_page_token: Option<String>, last: bool },
    /// The listing stopped for good in this run.
    ListingFailed { batch: String, error: String },
    /// A job's result line, and its annotation document for `annotations/{job}.json`.
    Result { batch: String, job: String, line: Vec<u8>, annotation_file: Option<Bytes>, annotated: bool },
    /// A job failed after its retries.
    JobFailed { batch: String, job: String, error: String },
    /// Several of the above, in order.
    Many(Vec<WriteOp>),
}

/// A batch's checkpoint at the end of the run.
#[derive(Debug)]
pub struct BatchReport {
    pub batch: String,
    pub state: BatchState,
}

/// What the writer did.
#[derive(Debug, Default)]
pub struct WriterReport {
    pub batches: Vec<BatchReport>,
    pub jobs_listed: u64,
    pub results_written: u64,
    pub annotations_written: u64,
}

struct OpenBatch {
    files: BatchLayout,
    /// Everything written so far; persisted as the checkpoint once it is on disk.
    work: BatchState,
    jobs: BufWriter<File>,
    results: BufWriter<File>,
    listing_closed: bool,
    dirty: bool,
    swap_into: Option<BatchLayout>,
}

impl OpenBatch {
    fn finished(&self) -> bool {
        self.listing_closed && self.work.results + self.work.failed.len() as u64 >= self.work.jobs
    }

    /// Flush and fsync both files, then move the checkpoint. A failed fsync is never retried:
    /// the kernel may have dropped the data, so the run stops with the checkpoint where it was.
    fn commit(&mut self) -> Result<(), Error> {
        sync(&mut self.jobs, &self.files.jobs())?;
        sync(&mut self.results, &self.files.results())?;
        let path = self.files.state();
        save_state(&path, &self.work).map_err(|source| Error::Write { path, source })?;
        self.dirty = false;
        Ok(())
    }
}

/// Append the previous export's result lines of `jobs` to `ob`, with their annotation files
/// (hard-linked, or copied where links fail). Found jobs are removed from `jobs`.
fn carry_over(ob: &mut OpenBatch, from: &BatchLayout, jobs: &mut HashSet<String>) -> Result<(), Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut copy = |line: &[u8]| -> Result<(), Error> {
        let Ok(head) = serde_json::from_slice::<ResultHead<'_>>(line) else { return Ok(()) };
        if !jobs.remove(head.job_id.as_ref()) {
            return Ok(());
        }
        let job = head.job_id.as_ref();
        if super::is_safe_id(job) {
            let (old, new) = (from.annotation(job), ob.files.annotation(job));
            if old.exists() {
                let _ = std::fs::remove_file(&new);
                std::fs::hard_link(&old, &new)
                    .or_else(|_| std::fs::copy(&old, &new).map(|_| ()))
                    .map_err(|source| Error::Write { path: new, source })?;
            }
        }
        ob.results.write_all(line).map_err(|source| Error::Write { path: ob.files.results(), source })?;
        ob.work.results += 1;
        ob.work.results_bytes += line.len() as u64;
        Ok(())
    };
    let mut failure = None;
    let read = for_each_line(&from.results(), |line| {
        copy(line).map_err(|e| {
            failure = Some(e);
            std::io::Error::other("stopped")
        })
    });
    match failure {
        Some(e) => Err(e),
        None => read.map_err(|source| Error::Read { path: from.results(), source }),
    }
}

fn sync(file: &mut BufWriter<File>, path: &Path) -> Result<(), Error> {
    file.flush().and_then(|()| file.get_ref().sync_data()).map_err(|source| Error::Write { path: path.into(), source })
}

/// The writer thread's state.
pub struct Writer {
    reporter: Arc<dyn Reporter>,
    open: HashMap<String, OpenBatch>,
    report: WriterReport,
    last_commit: Instant,
    last_flush: Instant,
    unflushed: bool,
}

impl Writer {
    pub fn new(reporter: Arc<dyn Reporter>) -> Self {
        let now = Instant::now();
        Self {
            reporter,
            open: HashMap::new(),
            report: WriterReport::default(),
            last_commit: now,
            last_flush: now,
            unflushed: false,
        }
    }

    /// Write everything the channel brings until every sender is gone. On an error, cancel the
    /// run and return it; checkpoints stay at what is on disk.
    pub fn run(mut self, mut rx: mpsc::Receiver<WriteOp>, cancel: CancellationToken) -> Result<WriterReport, Error> {
        let result = self.run_inner(&mut rx);
        if result.is_err() {
            cancel.cancel();
            rx.close();
        }
        result
    }

    fn run_inner(&mut self, rx: &mut mpsc::Receiver<WriteOp>) -> Result<WriterReport, Error> {
        loop {
            let op = match rx.try_recv() {
                Ok(op) => op,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Idle: hand what is buffered to the kernel within FLUSH_EVERY, then wait.
                    if self.unflushed {
                        let wait = FLUSH_EVERY.saturating_sub(self.last_flush.elapsed());
                        if wait.is_zero() {
                            self.flush_all()?;
                        } else {
                            std::thread::sleep(wait);
                        }
                        continue;
                    }
                    match rx.blocking_recv() {
                        Some(op) => op,
                        None => break,
                    }
                }
            };
            self.apply(op)?;
            self.unflushed = true;
            self.commit_due()?;
        }
        let remaining: Vec<String> = self.open.keys().cloned().collect();
        for batch in remaining {
            self.close(&batch)?;
        }
        Ok(std::mem::take(&mut self.report))
    }

    fn batch(&mut self, batch: &str) -> &mut OpenBatch {
        self.open.get_mut(batch).expect("a batch is attached before it is written")
    }

    fn apply(&mut self, op: WriteOp) -> Result<(), Error> {
        match op {
            WriteOp::Many(ops) => {
                for op in ops {
                    self.apply(op)?;
                }
            }
            WriteOp::Attach { batch, files, recovered, swap_into } => {
                let r = *recovered;
                let listing_closed = r.state.listing_done;
                let ob = OpenBatch {
                    files,
                    work: r.state,
                    jobs: BufWriter::with_capacity(64 * 1024, r.jobs_file),
                    results: BufWriter::with_capacity(256 * 1024, r.results_file),
                    listing_closed,
                    dirty: true,
                    swap_into,
                };
                self.open.insert(batch.clone(), ob);
                self.close_if_finished(&batch)?;
            }
            WriteOp::Page { batch, lines, new_jobs, next_page_token, last } => {
                let ob = self.batch(&batch);
                ob.jobs.write_all(&lines).map_err(|source| Error::Write { path: ob.files.jobs(), source })?;
                ob.work.jobs += new_jobs;
                ob.work.jobs_bytes += lines.len() as u64;
                ob.work.pages += 1;
                ob.work.listing_done = last;
                ob.work.next_page_token = if last { None } else { next_page_token };
                ob.listing_closed = last;
                ob.dirty = true;
                self.report.jobs_listed += new_jobs;
                self.reporter.on_page(&batch, new_jobs);
                if last {
                    self.close_if_finished(&batch)?;
                }
            }
            WriteOp::CarryOver { batch, from, mut jobs } => {
                let ob = self.batch(&batch);
                let before = ob.work.results;
                carry_over(ob, &from, &mut jobs)?;
                let carried = ob.work.results - before;
                self.reporter.on_resume(carried);
                let ob = self.batch(&batch);
                for job in jobs {
                    let error = "its result is missing from the previous export; rerun to fetch it".to_string();
                    ob.work.failed.push(Failure { batch: batch.clone(), job: Some(job), error });
                }
                ob.dirty = true;
                self.close_if_finished(&batch)?;
            }
            WriteOp::ListingFailed { batch, error } => {
                let ob = self.batch(&batch);
                ob.work.listing_error = Some(error);
                ob.listing_closed = true;
                ob.dirty = true;
                self.close_if_finished(&batch)?;
            }
            WriteOp::Result { batch, job, line, annotation_file, annotated } => {
                let ob = self.batch(&batch);
                if let Some(doc) = annotation_file {
                    // The document is in place before the line that says the job is done.
                    let path = ob.files.annotation(&job);
                    write_atomic(&path, &doc).map_err(|source| Error::Write { path, source })?;
                }
                ob.results.write_all(&line).map_err(|source| Error::Write { path: ob.files.results(), source })?;
                ob.work.results += 1;
                ob.work.results_bytes += line.len() as u64;
                ob.dirty = true;
                self.report.results_written += 1;
                self.report.annotations_written += u64::from(annotated);
                self.reporter.on_job_done(true);
                self.close_if_finished(&batch)?;
            }
            WriteOp::JobFailed { batch, job, error } => {
                let ob = self.batch(&batch);
                ob.work.failed.push(Failure { batch: batch.clone(), job: Some(job), error });
                ob.dirty = true;
                self.reporter.on_job_done(false);
                self.close_if_finished(&batch)?;
            }
        }
        Ok(())
    }

    fn close_if_finished(&mut self, batch: &str) -> Result<(), Error> {
        if self.open.get(batch).is_some_and(OpenBatch::finished) {
            self.close(batch)?;
        }
        Ok(())
    }

    fn close(&mut self, batch: &str) -> Result<(), Error> {
        let mut ob = self.open.remove(batch).expect("closing an open batch");
        ob.commit()?;
        let ok = ob.work.is_complete() && ob.work.failed.is_empty();
        if let Some(live) = ob.swap_into.as_ref().filter(|_| ok) {
            // Close the files before their directory moves.
            let dir = ob.files.clone();
            drop(ob.jobs);
            drop(ob.results);
            swap_in(&dir, live).map_err(|source| Error::Write { path: live.dir().into(), source })?;
            self.reporter.on_batch_done(batch, ok);
            self.report.batches.push(BatchReport { batch: batch.to_owned(), state: ob.work });
            return Ok(());
        }
        self.reporter.on_batch_done(batch, ok);
        self.report.batches.push(BatchReport { batch: batch.to_owned(), state: ob.work });
        Ok(())
    }

    /// Hand what was written to the kernel every [`FLUSH_EVERY`] (a killed process then loses at
    /// most that much work), and checkpoint with fsync once per [`COMMIT_EVERY`].
    fn commit_due(&mut self) -> Result<(), Error> {
        if self.last_commit.elapsed() >= COMMIT_EVERY {
            for ob in self.open.values_mut().filter(|ob| ob.dirty) {
                ob.commit()?;
            }
            self.last_commit = Instant::now();
            self.last_flush = self.last_commit;
            self.unflushed = false;
        } else if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_all()?;
        }
        Ok(())
    }

    /// Hand every buffered line to the kernel (no fsync): a killed process then loses nothing.
    fn flush_all(&mut self) -> Result<(), Error> {
        for ob in self.open.values_mut().filter(|ob| ob.dirty) {
            ob.jobs.flush().map_err(|source| Error::Write { path: ob.files.jobs(), source })?;
            ob.results.flush().map_err(|source| Error::Write { path: ob.files.results(), source })?;
        }
        self.last_flush = Instant::now();
        self.unflushed = false;
        Ok(())
    }
}
