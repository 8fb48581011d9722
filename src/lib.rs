//! playment-export: export a whole annotation project from the Playment / TELUS International
//! annotation API to local NDJSON files, resumably and exactly once per job.
//!
//! The binary is a thin layer over [`run`]; tests drive the same function against the embedded
//! fake API in [`fake`].

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod fake;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod state;

pub use config::{AnnotationMode, ApiKey, Config, Mode, RetryPolicy};
pub use error::Error;
pub use pipeline::run;
pub use report::{Reporter, Silent, Summary};
