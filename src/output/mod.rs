//! The files of an export directory: where each one lives, which IDs may become path components,
//! how JSON files are replaced atomically, how lines are made, and the one writer that owns them.

mod atomic;
mod layout;
mod ndjson;
mod swap;
mod verify;
mod writer;

pub use atomic::{TEMP_PREFIX, fsync_dir, write_atomic};
pub use layout::{BatchLayout, Layout, is_safe_id};
pub use ndjson::{JobHead, ResultHead, for_each_line, push_line, push_line_with_annotations};
pub use swap::{prepare_staging, recover_swaps, swap_in};
pub use verify::{Verification, verify};
pub use writer::{BatchReport, WriteOp, Writer, WriterReport};
