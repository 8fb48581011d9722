//! The binary's contract: exit codes and help.

use assert_cmd::Command;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("playment-export").unwrap();
    cmd.env_remove("PLAYMENT_API_KEY").env_remove("PLAYMENT_BASE_URL");
    cmd
}

#[test]
fn help_lists_the_commands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["export", "demo", "fake-api"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = bin().args(["export", "--out", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["export", "--project", "p", "--out", "x", "--concurrency", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_key_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["export", "--project", "p", "--out"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("PLAYMENT_API_KEY"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
}

#[test]
fn help_never_shows_the_key_from_the_environment() {
    let out = bin().env("PLAYMENT_API_KEY", "top-secret-value").args(["export", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("top-secret-value"));
}

#[test]
fn demo_exports_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["demo", "--jobs", "150", "--batches", "4", "--latency-ms", "0", "--json", "--out"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["state"], "complete");
    assert_eq!(summary["jobs"], 150);
}

#[test]
fn a_bad_key_exits_1_with_one_sentence() {
    // The fake API runs as its own process here, as a user would run it.
    let mut fake = std::process::Command::new(env!("CARGO_BIN_EXE_playment-export"))
        .args(["fake-api", "--port", "0", "--jobs", "10", "--batches", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(fake.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.split_whitespace().nth(3).unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["export", "--project", "demo-project", "--base-url", &base, "--out"])
        .arg(dir.path())
        .env("PLAYMENT_API_KEY", "not-the-key")
        .output()
        .unwrap();
    let _ = fake.kill();
    let _ = fake.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("API key was refused"), "{err}");
    assert!(!err.contains("not-the-key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
