//! The library's error: one variant per action that failed. A failed job or batch is not an
//! error here; it is recorded and the run goes on. These end the run.

use std::io;
use std::path::PathBuf;

use crate::api::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("cannot use output directory {}: {source}", path.display())]
    OutputDir { path: PathBuf, source: io::Error },
    #[error("{} is in use by another run ({holder}); wait for it to finish", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("{0}")]
    Mismatch(String),
    #[error("{message}")]
    Auth { message: String, source: Box<RequestError> },
    #[error(
        "the API failed {failures} requests in a row, retries included; stopping (rerun to continue). Last: {source}"
    )]
    ApiDown { failures: u64, source: Box<RequestError> },
    #[error("could not fetch project {project}: {source}")]
    FetchProject { project: String, source: Box<RequestError> },
    #[error("batch {batch} is not in project {project}")]
    UnknownBatch { project: String, batch: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl Error {
    /// The process exit code of the contract.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Locked { .. } => 4,
            Self::Config(_) => 2,
            _ => 1,
        }
    }
}
