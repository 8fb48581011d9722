//! `manifest.json`: the export's identity (project, base URL, annotation mode, tool version),
//! its overall state and per-batch counts. Never holds the key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::AnnotationMode;
use crate::error::Error;
use crate::output::write_atomic;
use crate::report::Failure;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Partial,
    Complete,
}

/// Per-batch counts as of the last run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    pub jobs: u64,
    pub results: u64,
    pub failed: u64,
    pub listed: bool,
    pub complete: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub project_id: String,
    pub base_url: String,
    pub annotations: AnnotationMode,
    pub state: RunState,
    pub started_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The `--batch` filter of the last run (empty = every batch of the project).
    #[serde(default)]
    pub batch_filter: Vec<String>,
    #[serde(default)]
    pub batches: BTreeMap<String, BatchCounts>,
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Batches that left the project, moved to `removed/` by sync.
    #[serde(default)]
    pub removed_batches: Vec<RemovedBatch>,
}

/// A batch sync moved out of `batches/` because it left the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedBatch {
    pub id: String,
    pub removed_at: String,
}

impl Manifest {
    pub fn new(project: &str, base_url: &url::Url, annotations: AnnotationMode) -> Self {
        let mut base = base_url.clone();
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let now = now_rfc3339();
        Self {
            format_version: FORMAT_VERSION,
            tool: env!("CARGO_PKG_NAME").into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            project_id: project.into(),
            base_url: base.to_string(),
            annotations,
            state: RunState::Running,
            started_at: now.clone(),
            updated_at: now,
            finished_at: None,
            batch_filter: Vec::new(),
            batches: BTreeMap::new(),
            failures: Vec::new(),
            removed_batches: Vec::new(),
        }
    }

    /// The manifest of `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<Self>, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Read {
                path: path.into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path: path.into(), source }),
        }
    }

    pub fn save(&mut self, path: &Path) -> Result<(), Error> {
        self.updated_at = now_rfc3339();
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        bytes.push(b'\n');
        write_atomic(path, &bytes).map_err(|source| Error::Write { path: path.into(), source })
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
