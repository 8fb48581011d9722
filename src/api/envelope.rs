//! The `{"data": ..., "success": true}` envelope and the shapes inside it. Objects are kept as
//! raw JSON text, so every field the server sends reaches the output unchanged.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::ApiError;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

/// The `data` of a successful response, as raw JSON text.
///
/// `status` is the HTTP status: a non-2xx status, or `"success": false` in any status, becomes an
/// [`ApiError::Status`] carrying the API's error code.
pub fn parse_envelope(status: u16, body: &[u8]) -> Result<Box<RawValue>, ApiError> {
    let env: Result<Envelope<'_>, _> = serde_json::from_slice(body);
    let ok_status = (200..300).contains(&status);
    match env {
        Ok(env) if ok_status && env.success != Some(false) && env.error.is_none() => match env.data {
            Some(data) if data.get() != "null" => Ok(data.to_owned()),
            _ => Err(ApiError::Shape("response has no `data`".into())),
        },
        Ok(env) => {
            let err = env.error.unwrap_or_default();
            Err(ApiError::Status {
                status,
                code: err.code.map(value_text),
                message: err.message.map(value_text).unwrap_or_else(|| "request failed".into()),
                retry_after: None,
            })
        }
        // Not JSON with a non-2xx status (a proxy's HTML page, say): the status decides.
        Err(_) if !ok_status => Err(ApiError::Status { status, code: None, message: snippet(body), retry_after: None }),
        Err(e) => Err(ApiError::Body(format!("{e} (body starts: {})", snippet(body)))),
    }
}

fn value_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(80)]);
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.trim().is_empty() { "<empty>".into() } else { text.trim().to_owned() }
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

/// The ID of a job or batch object: it must be a JSON string.
fn object_id(raw: &RawValue) -> Result<String, ApiError> {
    let obj: IdOnly<'_> =
        serde_json::from_str(raw.get()).map_err(|e| ApiError::Shape(format!("object without `id`: {e}")))?;
    match serde_json::from_str::<serde_json::Value>(obj.id.get()) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(ApiError::Shape(format!("`id` is not a string: {}", obj.id.get()))),
    }
}

#[derive(Deserialize)]
struct DetailsShape {
    batches: Vec<Box<RawValue>>,
}

/// The batches of project details: `(batch id, summary object)` in the server's order.
pub fn parse_details(data: &RawValue) -> Result<Vec<(String, Box<RawValue>)>, ApiError> {
    let shape: DetailsShape =
        serde_json::from_str(data.get()).map_err(|e| ApiError::Shape(format!("project details: {e}")))?;
    shape.batches.into_iter().map(|b| Ok((object_id(&b)?, b))).collect()
}

/// One page of a batch listing.
#[derive(Debug)]
pub struct BatchPage {
    /// `(job id, job object)` in the server's order.
    pub jobs: Vec<(String, Box<RawValue>)>,
    /// The next page's token; `None` when the listing is over (token empty, null or absent).
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct PageShape {
    #[serde(default)]
    jobs: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    next_page_token: Option<serde_json::Value>,
}

/// Parse the `data` of a batch-jobs page.
pub fn parse_page(data: &RawValue) -> Result<BatchPage, ApiError> {
    let shape: PageShape = serde_json::from_str(data.get()).map_err(|e| ApiError::Shape(format!("batch page: {e}")))?;
    let jobs = shape
        .jobs
        .unwrap_or_default()
        .into_iter()
        .map(|j| Ok((object_id(&j)?, j)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let next_page_token = match shape.next_page_token {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(ApiError::Shape(format!("`next_page_token` is not a string: {other}"))),
    };
    Ok(BatchPage { jobs, next_page_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_any_status_carry_their_code() {
        let body = br#"{"success": false, "error": {"code": "FS_0000", "message": "try again"}}"#;
        for status in [200, 400] {
            match parse_envelope(status, body) {
                Err(ApiError::Status { code: Some(c), status: s, .. }) => {
                    assert_eq!(c, "FS_0000");
                    assert_eq!(s, status);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn truncated_json_is_a_body_error_and_html_keeps_its_status() {
        assert!(matches!(parse_envelope(200, br#"{"data": {"a": 1"#), Err(ApiError::Body(_))));
        assert!(matches!(parse_envelope(502, b"<html>Bad Gateway</html>"), Err(ApiError::Status { status: 502, .. })));
        assert!(matches!(parse_envelope(200, br#"{"success": true}"#), Err(ApiError::Shape(_))));
    }

    #[test]
    fn page_end_styles() {
        for (token, want) in [
            (r#""next_page_token": """#, None),
            (r#""next_page_token": null"#, None),
            (r#""x": 1"#, None),
            (r#""next_page_token": "abc""#, Some("abc".to_string())),
        ] {
            let data = RawValue::from_string(format!(r#"{{"jobs": [], {token}}}"#)).unwrap();
            assert_eq!(parse_page(&data).unwrap().next_page_token, want);
        }
        let bad = RawValue::from_string(r#"{"jobs": {"id": "x"}}"#.into()).unwrap();
        assert!(matches!(parse_page(&bad), Err(ApiError::Shape(_))));
    }
}
