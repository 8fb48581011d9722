//! The command line: clap's raw flags in, a validated [`Config`] (or a fake-API setup) out.
//! Nothing below this module knows clap exists.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use url::Url;

use crate::config::{self, AnnotationMode, ApiKey, Config};
use crate::fake::{DatasetSpec, FakeConfig, FaultKind, Faults};

#[derive(Parser, Debug)]
#[command(
    name = "playment-export",
    version,
    about = "Export a whole Playment / TELUS International annotation project to local NDJSON files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Export a project; rerun the same command to resume.
    Export(ExportArgs),
    /// Bring an export up to date: only what changed is fetched (the first run is a full export).
    Sync(SyncArgs),
    /// What an export directory holds and what is missing.
    Status(StatusArgs),
    /// Check the integrity of an export directory.
    Verify(VerifyArgs),
    /// Export from an embedded fake API, no key needed.
    Demo(DemoArgs),
    /// Run the fake API for trials and benchmarks.
    FakeApi(FakeApiArgs),
}

/// How the run reports.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress and no log lines; errors only.
    #[arg(long, short)]
    pub quiet: bool,
    /// More log lines (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How requests are made.
#[derive(Args, Debug, Clone)]
pub struct CrawlArgs {
    /// Requests in flight at most, over all endpoints.
    #[arg(long, default_value_t = config::DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// Requests per second at most, over all endpoints (0 = no client-side limit).
    #[arg(long, default_value_t = config::DEFAULT_RPS)]
    pub rps: u32,
    /// Retries per request after the first attempt.
    #[arg(long, default_value_t = config::DEFAULT_RETRIES)]
    pub retries: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = config::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Annotation documents: none, inline (in results.ndjson) or files (annotations/{job_id}.json).
    #[arg(long, value_enum, default_value_t = AnnotationArg::None)]
    pub annotations: AnnotationArg,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The project to export.
    #[arg(long)]
    pub project: String,
    /// The output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// API key (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "PLAYMENT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// API base URL.
    #[arg(long, env = "PLAYMENT_BASE_URL", default_value = config::DEFAULT_BASE_URL)]
    pub base_url: String,
    /// Export only this batch (repeatable).
    #[arg(long = "batch", value_name = "ID")]
    pub batches: Vec<String>,
    #[command(flatten)]
    pub crawl: CrawlArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub export: ExportArgs,
    /// List every batch again, whatever its summary says (for edits that changed no counter).
    #[arg(long)]
    pub full: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The export directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the status as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The export directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the findings as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo export goes.
    #[arg(long, default_value = "demo-export")]
    pub out: PathBuf,
    /// Jobs in the demo project.
    #[arg(long, default_value_t = 2_000)]
    pub jobs: usize,
    /// Batches in the demo project.
    #[arg(long, default_value_t = 12)]
    pub batches: usize,
    /// Latency the fake adds to each response, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = config::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Requests per second at most (0 = no limit; the fake has none).
    #[arg(long, default_value_t = 0)]
    pub rps: u32,
    /// Annotation documents: none, inline or files.
    #[arg(long, value_enum, default_value_t = AnnotationArg::Files)]
    pub annotations: AnnotationArg,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct FakeApiArgs {
    /// Port of the API on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Seed of the generated project.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Project id served.
    #[arg(long, default_value = "demo-project")]
    pub project: String,
    /// Batches in the project.
    #[arg(long, default_value_t = 8)]
    pub batches: usize,
    /// Jobs in the project.
    #[arg(long, default_value_t = 1_000)]
    pub jobs: usize,
    /// Jobs per listing page.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// The key the fake accepts.
    #[arg(long, default_value = "demo-key")]
    pub api_key: String,
    /// Latency added to each response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Server-side limit in requests per second (429 beyond it).
    #[arg(long)]
    pub server_rps: Option<u32>,
    /// Random faults, as KIND=PROBABILITY (kinds: 5xx, 400, false200, 429, reset, truncate, html, hang). Repeatable.
    #[arg(long = "fault", value_name = "KIND=P", value_parser = parse_fault)]
    pub faults: Vec<(FaultKind, f64)>,
    /// Retry-After seconds sent with 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum AnnotationArg {
    None,
    Inline,
    Files,
}

impl From<AnnotationArg> for AnnotationMode {
    fn from(a: AnnotationArg) -> Self {
        match a {
            AnnotationArg::None => Self::None,
            AnnotationArg::Inline => Self::Inline,
            AnnotationArg::Files => Self::Files,
        }
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=4096) => Ok(n),
        _ => Err("expected a number from 1 to 4096".into()),
    }
}

fn parse_fault(s: &str) -> Result<(FaultKind, f64), String> {
    let (kind, p) = s.split_once('=').ok_or("expected KIND=PROBABILITY")?;
    let kind = match kind {
        "5xx" | "503" => FaultKind::Unavailable,
        "400" => FaultKind::Transient400,
        "false200" => FaultKind::False200,
        "429" => FaultKind::TooMany,
        "reset" => FaultKind::Reset,
        "truncate" => FaultKind::Truncate,
        "html" => FaultKind::Html502,
        "hang" => FaultKind::Hang,
        other => return Err(format!("unknown fault kind {other:?}")),
    };
    let p: f64 = p.parse().map_err(|_| format!("bad probability {p:?}"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("probability {p} is not between 0 and 1"));
    }
    Ok((kind, p))
}

impl CrawlArgs {
    /// Apply these flags to `config`.
    pub fn apply(&self, config: &mut Config) {
        config.concurrency = self.concurrency;
        config.rps = self.rps;
        config.retry.retries = self.retries;
        config.timeout = Duration::from_secs(self.timeout);
        config.annotations = self.annotations.into();
    }
}

impl ExportArgs {
    /// The validated configuration, or a one-line usage error.
    pub fn to_config(&self) -> Result<Config, String> {
        let key = match self.api_key.as_deref().map(str::trim) {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => return Err("no API key: pass --api-key or set PLAYMENT_API_KEY".into()),
        };
        if reqwest::header::HeaderValue::from_str(&key).is_err() {
            return Err("the API key contains characters that cannot be sent in a header".into());
        }
        let base_url = parse_base_url(&self.base_url)?;
        let mut config = Config::new(self.project.clone(), self.out.clone(), base_url, ApiKey::new(key));
        self.crawl.apply(&mut config);
        config.batches = self.batches.clone();
        Ok(config)
    }
}

fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("--base-url {s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!("--base-url {s:?} must be an http(s) URL"));
    }
    Ok(url)
}

impl FakeApiArgs {
    pub fn to_fake_config(&self) -> FakeConfig {
        FakeConfig {
            dataset: DatasetSpec {
                seed: self.seed,
                project: self.project.clone(),
                batches: self.batches,
                jobs: self.jobs,
                page_size: self.page_size.max(1),
                hostile_ids: false,
            },
            api_key: self.api_key.clone(),
            latency: Duration::from_millis(self.latency_ms),
            faults: Faults { random: self.faults.clone(), retry_after_secs: self.retry_after, ..Faults::default() },
            server_rps: self.server_rps,
            ..FakeConfig::default()
        }
    }
}
