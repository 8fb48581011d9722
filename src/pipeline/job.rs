//! One job: its result, and with `--annotations inline|files` the document behind it, made into
//! the operation the writer needs. A job that fails after its retries becomes a recorded failure.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use super::{Ctx, JobTask};
use crate::config::AnnotationMode;
use crate::output::{WriteOp, is_safe_id, push_line, push_line_with_annotations};

#[derive(Deserialize)]
struct ResultHead<'a> {
    #[serde(borrow, default)]
    job_id: Option<Cow<'a, str>>,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

/// Fetch one job; `None` when the run is stopping.
pub(crate) async fn fetch_job(ctx: Arc<Ctx>, task: JobTask) -> Option<WriteOp> {
    tokio::select! {
        op = fetch(&ctx, &task) => op,
        () = ctx.cancel.cancelled() => None,
    }
}

async fn fetch(ctx: &Ctx, task: &JobTask) -> Option<WriteOp> {
    let failed =
        |error: String| Some(WriteOp::JobFailed { batch: task.batch.to_string(), job: task.job.clone(), error });
    if !is_safe_id(&task.job) {
        return failed(format!("job id {:?} is not a safe path segment; refused", task.job));
    }
    let data = match ctx.client.job_result(&task.job).await {
        Ok(data) => data,
        Err(e) => return failed(ctx.unless_fatal(e)?.to_string()),
    };
    let head: ResultHead<'_> = match serde_json::from_str(data.get()) {
        Ok(head) if data.get().trim_start().starts_with('{') => head,
        _ => return failed("job result is not a JSON object".into()),
    };
    if head.job_id.as_deref() != Some(task.job.as_str()) {
        return failed(format!(
            "job result names job {:?}, not {:?}",
            head.job_id.as_deref().unwrap_or("<none>"),
            task.job
        ));
    }
    let result_url = match &head.result {
        Some(serde_json::Value::String(url)) if !url.is_empty() => Some(url.as_str()),
        _ => None,
    };
    let mode = ctx.config.annotations;
    let doc = match (mode, result_url) {
        (AnnotationMode::None, _) | (_, None) => None,
        (_, Some(url)) => match ctx.client.annotation(&task.job, url).await {
            Ok(doc) => Some(doc),
            Err(e) => return failed(ctx.unless_fatal(e)?.to_string()),
        },
    };
    let mut line = Vec::with_capacity(data.get().len() + 1);
    let mut annotation_file = None;
    match (&doc, mode) {
        (Some(doc), AnnotationMode::Inline) => {
            let doc = std::str::from_utf8(doc).unwrap_or("null");
            push_line_with_annotations(data.get(), doc, &mut line);
        }
        (Some(doc), _) => {
            annotation_file = Some(doc.clone());
            push_line(data.get(), &mut line);
        }
        (None, _) => push_line(data.get(), &mut line),
    }
    Some(WriteOp::Result {
        batch: task.batch.to_string(),
        job: task.job.clone(),
        line,
        annotation_file,
        annotated: doc.is_some(),
    })
}
