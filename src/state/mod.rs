//! What an export directory remembers between runs: the manifest, each batch's checkpoint and
//! how files are recovered from it after a crash, and the lock that keeps two runs apart.

mod batch;
mod lock;
mod manifest;
mod status;
pub mod sync;

pub use batch::{BatchState, Recovered, complete_state, load_state, recover, remove_temp_files, save_state};
pub use lock::DirLock;
pub use manifest::{BatchCounts, Manifest, RemovedBatch, RunState, now_rfc3339};
pub use status::{BatchStatus, Status, exported_batches, status};
