//! Paths inside the export directory. IDs come from a remote server: only IDs that are safe as a
//! single path segment ever become one, so nothing is written outside the directory.

use std::path::{Path, PathBuf};

/// Longest ID accepted as a path segment.
const MAX_ID_LEN: usize = 128;

/// Whether `id` may be used as one path segment (and URL segment): ASCII letters, digits, `-`,
/// `_` and `.`, not `.` or `..`, at most 128 bytes.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The layout of one export directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }
    pub fn project(&self) -> PathBuf {
        self.root.join("project.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn failures(&self) -> PathBuf {
        self.root.join("failures.ndjson")
    }
    pub fn batches(&self) -> PathBuf {
        self.root.join("batches")
    }
    /// The directory of a batch. The caller has checked the ID with [`is_safe_id`].
    pub fn batch(&self, batch: &str) -> BatchLayout {
        debug_assert!(is_safe_id(batch));
        BatchLayout { dir: self.batches().join(batch) }
    }
    /// Where sync builds the new version of a changed batch before swapping it in.
    pub fn staging_root(&self) -> PathBuf {
        self.root.join(".staging")
    }
    pub fn staging(&self, batch: &str) -> BatchLayout {
        debug_assert!(is_safe_id(batch));
        BatchLayout { dir: self.staging_root().join(batch) }
    }
    /// Where sync moves batches that left the project.
    pub fn removed(&self) -> PathBuf {
        self.root.join("removed")
    }
}

/// The files of one batch.
#[derive(Clone, Debug)]
pub struct BatchLayout {
    dir: PathBuf,
}

impl BatchLayout {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Marks a directory as a sync's staging copy (absent from live batches).
    pub fn staging_marker(&self) -> PathBuf {
        self.dir.join(".staging")
    }
    pub fn summary(&self) -> PathBuf {
        self.dir.join("batch.json")
    }
    pub fn jobs(&self) -> PathBuf {
        self.dir.join("jobs.ndjson")
    }
    pub fn results(&self) -> PathBuf {
        self.dir.join("results.ndjson")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn annotations(&self) -> PathBuf {
        self.dir.join("annotations")
    }
    /// The annotation file of a job. The caller has checked the ID with [`is_safe_id`].
    pub fn annotation(&self, job: &str) -> PathBuf {
        debug_assert!(is_safe_id(job));
        self.annotations().join(format!("{job}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_id;

    #[test]
    fn only_plain_segments_are_safe() {
        for ok in ["27f8303e-69fd-4b54-a4e9-63456571e195", "fdda8970-dr3d-4978-9ce3-e80654d8078c", "a.b_c"] {
            assert!(is_safe_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/etc", "ü", "a b", "a\0b", &"x".repeat(129)] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
    }
}
