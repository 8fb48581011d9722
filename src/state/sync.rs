//! What sync compares: batch summaries and job listing entries, by meaning (key order and
//! whitespace do not matter), and what a previous export of a batch already holds.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::Path;

use serde_json::Value;

use crate::output::{BatchLayout, JobHead, ResultHead, for_each_line};

/// A fingerprint of a JSON text that ignores key order and whitespace; `None` if it is not JSON.
pub fn fingerprint(json: &[u8]) -> Option<u64> {
    let value: Value = serde_json::from_slice(json).ok()?;
    let mut h = DefaultHasher::new();
    hash_value(&value, &mut h);
    Some(h.finish())
}

fn hash_value(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        // Numbers by their text: 1.0 and 1 differ on the wire, and so they differ here.
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            for item in items {
                hash_value(item, h);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                k.hash(h);
                hash_value(v, h);
            }
        }
    }
}

/// Whether the stored `batch.json` says the same as `summary`.
pub fn same_summary(stored: &Path, summary: &str) -> bool {
    match std::fs::read(stored) {
        Ok(bytes) => fingerprint(&bytes).is_some() && fingerprint(&bytes) == fingerprint(summary.as_bytes()),
        Err(_) => false,
    }
}

/// What the previous export of a batch holds: each job's listing fingerprint, and which jobs have
/// a result line.
pub struct Previous {
    pub files: BatchLayout,
    jobs: HashMap<String, u64>,
    with_result: HashSet<String>,
}

impl Previous {
    pub fn load(files: BatchLayout) -> io::Result<Self> {
        let mut jobs = HashMap::new();
        for_each_line(&files.jobs(), |line| {
            if let (Ok(j), Some(print)) = (serde_json::from_slice::<JobHead<'_>>(line), fingerprint(line)) {
                jobs.insert(j.id.into_owned(), print);
            }
            Ok(())
        })?;
        let mut with_result = HashSet::new();
        for_each_line(&files.results(), |line| {
            if let Ok(r) = serde_json::from_slice::<ResultHead<'_>>(line) {
                with_result.insert(r.job_id.into_owned());
            }
            Ok(())
        })?;
        Ok(Self { files, jobs, with_result })
    }

    /// How a job of the new listing relates to the previous export.
    pub fn compare(&self, id: &str, print: Option<u64>) -> JobChange {
        match self.jobs.get(id) {
            None => JobChange::New,
            Some(old) if print == Some(*old) && self.with_result.contains(id) => JobChange::Unchanged,
            Some(_) => JobChange::Changed,
        }
    }

    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobChange {
    New,
    Changed,
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_and_whitespace_only() {
        let a = fingerprint(br#"{"a": 1, "b": [1, {"x": "y"}]}"#);
        assert_eq!(a, fingerprint(b"{\"b\":[1,{\"x\":\"y\"}],\n \"a\":1}"));
        assert_ne!(a, fingerprint(br#"{"a": 2, "b": [1, {"x": "y"}]}"#));
        assert_ne!(a, fingerprint(br#"{"a": 1, "b": [{"x": "y"}, 1]}"#));
        assert_ne!(a, fingerprint(br#"{"a": 1, "b": [1, {"x": "y"}], "c": null}"#));
        assert_eq!(fingerprint(b"{"), None);
    }
}
