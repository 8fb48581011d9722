//! Atomic replacement of whole files: temp file in the same directory, `sync_all`, rename, then
//! fsync of the directory so the rename itself survives a power loss (`persist` alone syncs nothing).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Names of temp files, so recovery can remove what an interrupted write left.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Replace `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(dir)
}

/// Make the directory entries of `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
