//! Replacing a whole batch directory at once: sync builds the new version of a changed batch in
//! a staging directory and swaps it in, so readers (and a crash) see the old batch or the new one,
//! never a mix. On Linux the swap is one `renameat2(RENAME_EXCHANGE)`; elsewhere, or where the
//! filesystem refuses it, two renames that [`recover_swaps`] completes after a crash.

use std::io;
use std::path::Path;

use super::{BatchLayout, Layout, fsync_dir};

/// Put the complete batch in `staging` where `live` is, then delete the old version.
pub fn swap_in(staging: &BatchLayout, live: &BatchLayout) -> io::Result<()> {
    let (from, to) = (staging.dir(), live.dir());
    let parent = to.parent().expect("a batch directory has a parent");
    std::fs::create_dir_all(parent)?;
    if !to.exists() {
        std::fs::rename(from, to)?;
    } else if exchange(from, to)? {
        // `from` now holds the old version, without the staging marker.
    } else {
        let old = old_path(from);
        std::fs::rename(to, &old)?;
        std::fs::rename(from, to)?;
        fsync_dir(parent)?;
        std::fs::remove_dir_all(&old)?;
    }
    remove_if_present(&live.staging_marker())?;
    fsync_dir(to)?;
    fsync_dir(parent)?;
    if from.exists() {
        std::fs::remove_dir_all(from)?;
    }
    if let Some(staging_root) = from.parent() {
        fsync_dir(staging_root)?;
    }
    Ok(())
}

/// Finish or undo what a crash interrupted: staging directories without their marker are old
/// versions already swapped out; a live batch moved aside and not replaced is moved back; a live
/// batch still carrying the marker loses it.
pub fn recover_swaps(layout: &Layout) -> io::Result<()> {
    let staging_root = layout.staging_root();
    if staging_root.is_dir() {
        for entry in std::fs::read_dir(&staging_root)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(batch) = name.strip_suffix(".old") {
                let live = layout.batches().join(batch);
                if live.exists() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::rename(&path, &live)?;
                }
            } else if !path.join(".staging").exists() {
                std::fs::remove_dir_all(&path)?;
            }
        }
    }
    if layout.batches().is_dir() {
        for entry in std::fs::read_dir(layout.batches())? {
            remove_if_present(&entry?.path().join(".staging"))?;
        }
    }
    Ok(())
}

/// Start (or keep) a staging directory for a batch.
pub fn prepare_staging(staging: &BatchLayout) -> io::Result<()> {
    std::fs::create_dir_all(staging.dir())?;
    if !staging.staging_marker().exists() {
        std::fs::write(staging.staging_marker(), b"")?;
        std::fs::File::open(staging.staging_marker())?.sync_all()?;
        fsync_dir(staging.dir())?;
        if let Some(parent) = staging.dir().parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

fn old_path(staging: &Path) -> std::path::PathBuf {
    let mut name = staging.file_name().expect("named").to_os_string();
    name.push(".old");
    staging.with_file_name(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Atomically exchange two directories; `Ok(false)` where the system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}
