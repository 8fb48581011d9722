//! Turning the server's JSON text into NDJSON lines without touching its meaning: whitespace
//! outside strings is dropped (a pretty-printed object would span lines), everything else is
//! copied byte for byte, so key order, number spelling and unknown fields survive.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// The id of a `jobs.ndjson` line.
#[derive(serde::Deserialize)]
pub struct JobHead<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// The job id of a `results.ndjson` line.
#[derive(serde::Deserialize)]
pub struct ResultHead<'a> {
    #[serde(borrow)]
    pub job_id: Cow<'a, str>,
}

/// Call `f` with every complete line of an NDJSON file (`\n` included); a missing file has none,
/// a torn last line is skipped.
pub fn for_each_line(path: &Path, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.ends_with(b"\n") {
            f(&line)?;
        }
    }
}

/// Append `json` without insignificant whitespace, then `\n`.
pub fn push_line(json: &str, out: &mut Vec<u8>) {
    push_compact(json, out);
    out.push(b'\n');
}

/// A result line with the annotation document added under `"annotations"`.
/// `data` must be a JSON object (checked by the caller).
pub fn push_line_with_annotations(data: &str, doc: &str, out: &mut Vec<u8>) {
    let start = out.len();
    push_compact(data, out);
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if out.len() - start > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"annotations\":");
    push_compact(doc, out);
    out.extend_from_slice(b"}\n");
}

fn push_compact(json: &str, out: &mut Vec<u8>) {
    let bytes = json.trim().as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'\n' | b'\r' | b'\t' | b' ')) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b'\n' | b'\r' | b'\t' | b' ') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_becomes_one_line_with_strings_intact() {
        let mut out = Vec::new();
        push_line("{\n  \"a b\": \"x \\\" y\",\n  \"n\": 1.50, \"z\": [1, 2]\n}", &mut out);
        assert_eq!(out, b"{\"a b\":\"x \\\" y\",\"n\":1.50,\"z\":[1,2]}\n");
    }

    #[test]
    fn annotations_are_appended_as_a_key() {
        let mut out = Vec::new();
        push_line_with_annotations("{\"job_id\": \"j\"}", "{\"x\": [ 1 ]}", &mut out);
        assert_eq!(out, b"{\"job_id\":\"j\",\"annotations\":{\"x\":[1]}}\n");
        out.clear();
        push_line_with_annotations("{ }", "null", &mut out);
        assert_eq!(out, b"{\"annotations\":null}\n");
    }
}
