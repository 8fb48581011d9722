//! How a run tells the outside world what it is doing: the [`Reporter`] trait the library calls,
//! the final [`Summary`], and the terminal implementation (indicatif bar or plain log lines).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{ApiError, StatsSnapshot};

/// Progress events. Every method has a no-op default; calls come from several threads.
pub trait Reporter: Send + Sync {
    /// The project is known: this many batches to go through, about this many jobs in all.
    fn on_start(&self, _batches: u64, _expected_jobs: u64) {}
    /// Jobs already on disk from an earlier run.
    fn on_resume(&self, _jobs_done: u64) {}
    /// A listing page was written: this many new jobs.
    fn on_page(&self, _batch: &str, _new_jobs: u64) {}
    /// A job's result was written (`ok`) or the job failed for good.
    fn on_job_done(&self, _ok: bool) {}
    /// A batch is finished (`ok` = listed and every job written).
    fn on_batch_done(&self, _batch: &str, _ok: bool) {}
    /// Sync finished listing a batch (`change` says what it was), with these job counts.
    fn on_batch_synced(&self, _batch: &str, _change: BatchChange, _new: u64, _changed: u64, _removed: u64) {}
    /// Sync moved a batch that left the project out of `batches/`.
    fn on_batch_removed(&self, _batch: &str) {}
    /// The rate limit changed after throttling (`None` = unlimited).
    fn on_rate(&self, _rps: Option<f64>) {}
    /// A request is retried.
    fn on_retry(&self, _what: &str, _error: &ApiError, _throttled: bool) {}
    /// Something the user should hear about even in a quiet run (repaired files and the like).
    fn on_notice(&self, _message: &str) {}
    /// The run is over.
    fn on_finish(&self, _summary: &Summary) {}
}

/// A reporter that says nothing.
pub struct Silent;
impl Reporter for Silent {}

/// What sync found a batch to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchChange {
    /// Export resumed it (not a sync).
    Resumed,
    Unchanged,
    Changed,
    New,
}

/// What a sync changed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncCounts {
    pub batches_unchanged: u64,
    pub batches_changed: u64,
    pub batches_new: u64,
    pub batches_removed: u64,
    pub jobs_new: u64,
    pub jobs_changed: u64,
    pub jobs_removed: u64,
}

/// One failed job or batch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub batch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub error: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// `complete`, `partial` or `interrupted`.
    pub state: String,
    pub batches: u64,
    pub batches_complete: u64,
    pub batches_failed: u64,
    /// Jobs in the listings on disk, over the batches of this run.
    pub jobs: u64,
    /// Jobs newly listed by this run.
    pub jobs_listed: u64,
    /// Result lines written by this run.
    pub results_written: u64,
    /// Annotation documents fetched by this run.
    pub annotations_written: u64,
    pub failed: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncCounts>,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
    pub elapsed_secs: f64,
    #[serde(skip)]
    pub failures: Vec<Failure>,
    #[serde(skip)]
    pub interrupted: bool,
}

/// The terminal reporter: a progress bar on a TTY, a log line every few seconds otherwise,
/// nothing when quiet.
pub struct TermReporter {
    bar: Option<ProgressBar>,
    plain: bool,
    quiet: bool,
    started: Instant,
    last_line: Mutex<Instant>,
    done: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    batches_done: AtomicU64,
    batches: AtomicU64,
    expected: AtomicU64,
    /// The adapted rate limit as f64 bits; NaN until the server throttles.
    rate: AtomicU64,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl TermReporter {
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} jobs {rate} eta {eta} {msg}",
                )
                .expect("valid template")
                .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                }),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            plain: !quiet && !tty,
            quiet,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            batches_done: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            rate: AtomicU64::new(f64::NAN.to_bits()),
        }
    }

    fn message(&self) -> String {
        let rate = f64::from_bits(self.rate.load(Ordering::Relaxed));
        format!(
            "| batches {}/{} | retries {} | failed {}{}",
            self.batches_done.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            if rate.is_nan() { String::new() } else { format!(" | throttled: {rate:.0} req/s") },
        )
    }

    fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.message());
        } else if self.plain {
            let mut last = self.last_line.lock().expect("reporter lock");
            if last.elapsed() >= PLAIN_EVERY {
                *last = Instant::now();
                eprintln!(
                    "[{:>5.0}s] {}/{} jobs {}",
                    self.started.elapsed().as_secs_f64(),
                    self.done.load(Ordering::Relaxed),
                    self.expected.load(Ordering::Relaxed),
                    self.message()
                );
            }
        }
    }
}

impl Reporter for TermReporter {
    fn on_start(&self, batches: u64, expected_jobs: u64) {
        self.batches.store(batches, Ordering::Relaxed);
        self.expected.store(expected_jobs, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(expected_jobs);
        }
        self.tick();
    }
    fn on_resume(&self, jobs_done: u64) {
        self.done.fetch_add(jobs_done, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(jobs_done);
        }
    }
    fn on_page(&self, _batch: &str, _new_jobs: u64) {
        self.tick();
    }
    fn on_job_done(&self, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            if bar.position() >= bar.length().unwrap_or(0) {
                bar.inc_length(1);
            }
            bar.inc(1);
        }
        self.tick();
    }
    fn on_batch_done(&self, _batch: &str, _ok: bool) {
        self.batches_done.fetch_add(1, Ordering::Relaxed);
        self.tick();
    }
    fn on_retry(&self, _what: &str, _error: &ApiError, _throttled: bool) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    fn on_rate(&self, rps: Option<f64>) {
        self.rate.store(rps.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
    }
    fn on_batch_synced(&self, batch: &str, change: BatchChange, new: u64, changed: u64, removed: u64) {
        // One line per changed batch, even when quiet: this is what a cron mail should say.
        let what = match change {
            BatchChange::Changed => "changed",
            BatchChange::New => "new",
            BatchChange::Unchanged | BatchChange::Resumed => return,
        };
        let line = format!("sync: batch {batch} {what}: {new} new, {changed} changed, {removed} removed jobs");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
    fn on_batch_removed(&self, batch: &str) {
        let line = format!("sync: batch {batch} left the project; moved to removed/{batch}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
    fn on_notice(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
    fn on_finish(&self, _summary: &Summary) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.message());
            bar.finish();
        }
    }
}
