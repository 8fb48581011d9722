//! The `playment-export` binary: parse the command line, run the library, map the outcome to the
//! documented exit code.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use playment_export::cli::{Cli, Command, DemoArgs, ExportArgs, FakeApiArgs, OutputArgs, StatusArgs, VerifyArgs};
use playment_export::fake::{DatasetSpec, FakeApi, FakeConfig};
use playment_export::report::TermReporter;
use playment_export::{ApiKey, Config, Summary};
use tokio_util::sync::CancellationToken;

const EXIT_FAILURES: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread does all the network work: the crawl is I/O-bound, and keeping request futures
    // and connections on one thread costs far less CPU per request than handing wake-ups across
    // threads. Files are written on a blocking thread of their own.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Export(args) => run_export(&args, playment_export::Mode::Export).await,
            Command::Sync(args) => run_export(&args.export, playment_export::Mode::Sync { full: args.full }).await,
            Command::Status(args) => status(&args),
            Command::Verify(args) => verify(&args),
            Command::Demo(args) => {
                init_logging(&args.output);
                demo(args).await
            }
            Command::FakeApi(args) => {
                init_logging(&OutputArgs { json: false, quiet: false, verbose: 0 });
                fake_api(args).await
            }
        }
    })
}

fn init_logging(output: &OutputArgs) {
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("playment_export={level}"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Ctrl-C or SIGTERM stops the run gracefully; a second one exits at once (state on disk is
/// always consistent, so this is as safe as the first).
fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("interrupted: saving state (press Ctrl-C again to quit at once)");
        token.cancel();
        wait_for_signal().await;
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
    cancel
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `export` and `sync`: validate the flags (exit 2 on a usage error), then run.
async fn run_export(args: &ExportArgs, mode: playment_export::Mode) -> ExitCode {
    init_logging(&args.output);
    match args.to_config() {
        Ok(mut config) => {
            config.mode = mode;
            export(config, &args.output).await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn export(config: Config, output: &OutputArgs) -> ExitCode {
    let reporter = Arc::new(TermReporter::new(output.quiet));
    let cancel = cancel_on_signal();
    match playment_export::run(config, reporter, cancel).await {
        Ok(summary) => finish(&summary, output),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn finish(summary: &Summary, output: &OutputArgs) -> ExitCode {
    if output.json {
        let line = serde_json::to_string(summary).expect("summary serializes");
        // A closed stdout (`| head`) is not an error worth a message.
        let _ = writeln!(std::io::stdout(), "{line}");
    } else if !output.quiet {
        eprintln!(
            "{}: {} batches ({} complete), {} jobs; {} results written this run, {} requests, {} retries, {} failed, {:.1} s",
            summary.state,
            summary.batches,
            summary.batches_complete,
            summary.jobs,
            summary.results_written,
            summary.stats.requests,
            summary.stats.retries,
            summary.failed,
            summary.elapsed_secs
        );
    }
    if !output.quiet {
        for f in summary.failures.iter().take(10) {
            eprintln!(
                "  failed: batch {}{}: {}",
                f.batch,
                f.job.as_deref().map(|j| format!(" job {j}")).unwrap_or_default(),
                f.error
            );
        }
        if summary.failures.len() > 10 {
            eprintln!("  ... and {} more (see failures.ndjson)", summary.failures.len() - 10);
        }
    }
    if summary.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if summary.failed > 0 || summary.state != "complete" {
        ExitCode::from(EXIT_FAILURES)
    } else {
        ExitCode::SUCCESS
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    match playment_export::state::status(&args.out) {
        Ok(st) => {
            let text =
                if args.json { serde_json::to_string(&st).expect("status serializes") + "\n" } else { st.render() };
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    match playment_export::output::verify(&args.out) {
        Ok(v) => {
            if args.json {
                let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string(&v).expect("serializes"));
            } else if v.ok() {
                println!(
                    "ok: {} batches, {} jobs, {} results, {} annotations",
                    v.batches, v.jobs, v.results, v.annotations
                );
            } else {
                for p in &v.problems {
                    println!("{p}");
                }
                eprintln!("verify: {} problems in {}", v.problems.len(), args.out.display());
            }
            if v.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn demo(args: DemoArgs) -> ExitCode {
    let fake = FakeConfig {
        dataset: DatasetSpec { batches: args.batches, jobs: args.jobs, ..DatasetSpec::default() },
        latency: Duration::from_millis(args.latency_ms),
        ..FakeConfig::default()
    };
    let fake = match FakeApi::start(fake).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot start the fake API on loopback: {e}");
            return ExitCode::from(1);
        }
    };
    if !args.output.quiet {
        eprintln!(
            "demo: exporting project {} ({} jobs in {} batches) from the embedded fake API at {} into {}",
            fake.project(),
            fake.dataset().total_jobs(),
            args.batches,
            fake.base_url,
            args.out.display()
        );
    }
    let mut config = Config::new(fake.project(), &args.out, fake.base_url.clone(), ApiKey::new(fake.api_key()));
    config.concurrency = args.concurrency.max(1);
    config.rps = args.rps;
    config.annotations = args.annotations.into();
    export(config, &args.output).await
}

async fn fake_api(args: FakeApiArgs) -> ExitCode {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let fake = match FakeApi::start_on(args.to_fake_config(), addr).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "fake API at {} (storage at {}), project {}, key {}, {} jobs; counters at {}admin/counters",
        fake.base_url,
        fake.storage_url,
        fake.project(),
        fake.api_key(),
        fake.dataset().total_jobs(),
        fake.base_url
    );
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    println!("{}", fake.counters().snapshot());
    ExitCode::SUCCESS
}
