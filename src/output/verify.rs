//! `verify`: an integrity check of an export directory from its files alone. Every NDJSON line
//! must be complete JSON, no job may appear twice, results must cover the listing, annotations
//! must be there wherever a result is set, and counts must match the batch summaries.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{BatchLayout, Layout, is_safe_id};
use crate::config::AnnotationMode;
use crate::error::Error;
use crate::state::{Manifest, exported_batches};

/// Examples listed per kind of problem and batch; the rest are counted.
const EXAMPLES: usize = 3;

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub batches: u64,
    pub jobs: u64,
    pub results: u64,
    pub annotations: u64,
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the export in `dir`.
pub fn verify(dir: &Path) -> Result<Verification, Error> {
    let layout = Layout::new(dir);
    let manifest = Manifest::load(&layout.manifest())?
        .ok_or_else(|| Error::Mismatch(format!("{} holds no export (no manifest.json)", dir.display())))?;
    let mut v = Verification::default();
    for (id, summary) in exported_batches(&layout, &manifest)? {
        v.batches += 1;
        if !is_safe_id(&id) {
            v.problems.push(format!("batch {id:?}: id is not a safe path segment, so it was not exported"));
            continue;
        }
        let files = layout.batch(&id);
        if !files.dir().is_dir() {
            v.problems.push(format!("batch {id}: no directory"));
            continue;
        }
        verify_batch(&id, &files, &summary, manifest.annotations, &mut v)?;
    }
    Ok(v)
}

/// Problems of one kind in one batch: a count and a few examples.
struct Findings {
    what: &'static str,
    count: u64,
    examples: Vec<String>,
}

impl Findings {
    fn new(what: &'static str) -> Self {
        Self { what, count: 0, examples: Vec::new() }
    }
    fn add(&mut self, example: impl Into<String>) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example.into());
        }
    }
    fn report(self, batch: &str, out: &mut Vec<String>) {
        if self.count > 0 {
            let more = if self.count > self.examples.len() as u64 { ", ..." } else { "" };
            out.push(format!("batch {batch}: {} {} ({}{more})", self.count, self.what, self.examples.join(", ")));
        }
    }
}

fn verify_batch(
    id: &str,
    files: &BatchLayout,
    summary: &Value,
    mode: AnnotationMode,
    v: &mut Verification,
) -> Result<(), Error> {
    let read = |path: &Path| -> Result<Option<BufReader<File>>, Error> {
        match File::open(path) {
            Ok(f) => Ok(Some(BufReader::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path: path.into(), source }),
        }
    };
    match std::fs::read(files.summary()).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
        Some(stored) if &stored == summary => {}
        Some(_) => v.problems.push(format!("batch {id}: batch.json differs from project.json")),
        None => v.problems.push(format!("batch {id}: batch.json is missing or not JSON")),
    }

    let mut bad_lines = Findings::new("bad lines");
    let mut duplicates = Findings::new("jobs listed twice");
    let mut jobs = HashSet::new();
    let Some(reader) = read(&files.jobs())? else {
        v.problems.push(format!("batch {id}: jobs.ndjson is missing"));
        return Ok(());
    };
    for_each_line(reader, &files.jobs(), &mut bad_lines, "jobs.ndjson", |line| {
        match line.get("id").and_then(Value::as_str) {
            Some(job) => {
                if !jobs.insert(job.to_owned()) {
                    duplicates.add(job);
                }
            }
            None => return Err("a job without an id"),
        }
        Ok(())
    })?;
    v.jobs += jobs.len() as u64;

    let mut twice = Findings::new("results written twice");
    let mut orphans = Findings::new("results for jobs not in jobs.ndjson");
    let mut no_doc = Findings::new("results without their annotations");
    let mut done = HashSet::new();
    let mut annotations = 0u64;
    match read(&files.results())? {
        None => v.problems.push(format!("batch {id}: results.ndjson is missing")),
        Some(reader) => for_each_line(reader, &files.results(), &mut bad_lines, "results.ndjson", |line| {
            let Some(job) = line.get("job_id").and_then(Value::as_str) else {
                return Err("a result without a job_id");
            };
            if !jobs.contains(job) {
                orphans.add(job);
            }
            if !done.insert(job.to_owned()) {
                twice.add(job);
            }
            let has_result = line.get("result").and_then(Value::as_str).is_some_and(|r| !r.is_empty());
            if has_result {
                let present = match mode {
                    AnnotationMode::None => true,
                    AnnotationMode::Inline => line.get("annotations").is_some(),
                    AnnotationMode::Files => {
                        is_safe_id(job)
                            && std::fs::read(files.annotation(job))
                                .ok()
                                .is_some_and(|b| serde_json::from_slice::<serde::de::IgnoredAny>(&b).is_ok())
                    }
                };
                if present {
                    annotations += u64::from(mode != AnnotationMode::None);
                } else {
                    no_doc.add(job);
                }
            }
            Ok(())
        })?,
    }
    v.results += done.len() as u64;
    v.annotations += annotations;

    let mut missing = Findings::new("jobs without a result");
    for job in jobs.iter().filter(|j| !done.contains(*j)) {
        missing.add(job.clone());
    }
    for f in [bad_lines, duplicates, twice, orphans, missing, no_doc] {
        f.report(id, &mut v.problems);
    }
    if let Some(total) = summary.get("total_jobs").and_then(Value::as_u64)
        && total != jobs.len() as u64
    {
        v.problems.push(format!("batch {id}: batch.json says {total} jobs, jobs.ndjson holds {}", jobs.len()));
    }
    Ok(())
}

/// Call `f` on each line parsed as JSON; lines that are torn or not JSON are counted as bad.
fn for_each_line(
    mut reader: BufReader<File>,
    path: &Path,
    bad: &mut Findings,
    name: &str,
    mut f: impl FnMut(&Value) -> Result<(), &'static str>,
) -> Result<(), Error> {
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(|source| Error::Read { path: path.into(), source })?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if !buf.ends_with(b"\n") {
            bad.add(format!("{name} line {n} has no newline"));
            continue;
        }
        match serde_json::from_slice::<Value>(&buf) {
            Ok(line) => {
                if let Err(why) = f(&line) {
                    bad.add(format!("{name} line {n}: {why}"));
                }
            }
            Err(_) => bad.add(format!("{name} line {n} is not JSON")),
        }
    }
}
