//! Disk faults: a write or fsync that fails stops the run with the path in the message and
//! exit 1; checkpoints never claim more than is on disk; once space is back, a rerun is exact.

use std::path::{Path, PathBuf};
use std::process::Command;

use playment_export::AnnotationMode;
use playment_export::state::load_state;

use crate::support::{assert_exact, config, quirky, run, start};

/// Every batch checkpoint covers no more than its files hold.
fn assert_checkpoints_within_files(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out.join("batches")) else { return };
    for entry in entries {
        let dir = entry.unwrap().path();
        let Some(state) = load_state(&dir.join("state.json")).unwrap() else { continue };
        let len = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(state.jobs_bytes <= len("jobs.ndjson"), "{}: jobs checkpoint past the file", dir.display());
        assert!(state.results_bytes <= len("results.ndjson"), "{}: results checkpoint past the file", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_stops_the_run_naming_the_file_and_the_rerun_is_exact() {
    let fake = start(quirky(600, 6)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_playment-export"));
    cmd.args(["export", "--project", fake.project(), "--base-url", fake.base_url.as_str(), "--rps", "0", "--out"])
        .arg(dir.path())
        .env("PLAYMENT_API_KEY", fake.api_key());
    // The kernel refuses to grow any file of the child past 40 kB (EFBIG): a real write error.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 40_000, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("results.ndjson") && err.contains("File too large"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_checkpoints_within_files(dir.path());

    let summary = run(config(&fake, dir.path())).await.unwrap();
    assert_eq!(summary.state, "complete");
    assert_exact(&fake, dir.path(), AnnotationMode::None);
}

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(at.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_run_and_the_rerun_after_freeing_space_is_exact() {
    let root = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&root.path().join("small"), "256k") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let fake = start(quirky(1_500, 6)).await;
    let out = mount.0.join("export");
    let mut c = config(&fake, &out);
    c.annotations = AnnotationMode::Files;
    let err = run(c.clone()).await.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let text = err.to_string();
    assert!(text.contains("No space left on device") && text.contains(out.to_str().unwrap()), "{text}");
    assert_checkpoints_within_files(&out);

    mount.grow("64m");
    let summary = run(c).await.unwrap();
    assert_eq!(summary.state, "complete", "{:?}", summary.failures);
    assert_exact(&fake, &out, AnnotationMode::Files);
}
