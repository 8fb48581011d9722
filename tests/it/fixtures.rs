//! The documented example responses, kept verbatim in `fixtures/`, parse with the same code the
//! exporter uses, and their lines keep every field.

use playment_export::api::{parse_details, parse_envelope, parse_page};
use playment_export::output::push_line;
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)).unwrap()
}

#[test]
fn documented_project_details_parse() {
    let data = parse_envelope(200, &fixture("project-details.json")).unwrap();
    let batches = parse_details(&data).unwrap();
    let ids: Vec<&str> = batches.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["27f8303e-69fd-4b54-a4e9-63456571e195", "10cab3e9-3f26-4c8b-83ac-3c138685120b"]);
    let summary: Value = serde_json::from_str(batches[0].1.get()).unwrap();
    assert_eq!(summary["total_jobs"], 1427);
}

#[test]
fn documented_batch_pages_parse_with_non_uuid_ids() {
    for name in ["batch-jobs.json", "batch-jobs-v0.json"] {
        let data = parse_envelope(200, &fixture(name)).unwrap();
        let page = parse_page(&data).unwrap();
        let ids: Vec<&str> = page.jobs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["fde5ert6-eb32-481a-807a-03a0428ca836", "fdda8970-dr3d-4978-9ce3-e80654d8078c"], "{name}");
        assert_eq!(page.next_page_token.as_deref(), Some("1575822103313046000"));
        // The pretty-printed job becomes one line with every field intact.
        let mut line = Vec::new();
        push_line(page.jobs[0].1.get(), &mut line);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let job: Value = serde_json::from_slice(&line).unwrap();
        let original: Value = serde_json::from_slice(&fixture(name)).unwrap();
        assert_eq!(job, original["data"]["jobs"][0]);
    }
}

#[test]
fn documented_job_result_parses() {
    let data = parse_envelope(200, &fixture("job-result.json")).unwrap();
    let result: Value = serde_json::from_str(data.get()).unwrap();
    assert_eq!(result["job_id"], "3f3e8675-ca69-46d7-aa34-96f90fcbb732");
    assert!(result["result"].as_str().unwrap().starts_with("https://"));
}
