//! One batch: recover its files, queue the jobs an earlier run left without a result, then list
//! the remaining pages, writing each page's new jobs and queueing them for their results.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Ctx, JobTask, write_if_changed};
use crate::api::parse_page;
use crate::error::Error;
use crate::output::{WriteOp, is_safe_id, push_line};
use crate::report::Failure;
use crate::state::{complete_state, recover};

pub(crate) async fn export_batch(ctx: Arc<Ctx>, id: String, summary: Box<RawValue>, jobs: mpsc::Sender<JobTask>) {
    if ctx.cancel.is_cancelled() {
        return;
    }
    if !is_safe_id(&id) {
        ctx.refused.lock().expect("refused lock").push(Failure {
            batch: id.clone(),
            job: None,
            error: format!("batch id {id:?} is not a safe path segment; refused"),
        });
        ctx.reporter.on_batch_done(&id, false);
        return;
    }
    let opened = {
        let ctx = ctx.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || open_batch(&ctx, &id, &summary))
            .await
            .expect("recovery does not panic")
    };
    let recovered = match opened {
        Ok(Opened::Complete(state)) => {
            ctx.reporter.on_resume(state.results);
            ctx.reporter.on_batch_done(&id, true);
            ctx.done.lock().expect("done lock").push((id, state));
            return;
        }
        Ok(Opened::Work(r)) => r,
        Err(e) => return ctx.fail_run(e),
    };
    for notice in &recovered.notices {
        tracing::warn!("{notice}");
        ctx.reporter.on_notice(notice);
    }
    ctx.reporter.on_resume(recovered.state.results);
    let batch: Arc<str> = Arc::from(id.as_str());
    let mut recovered = recovered;
    let mut known = std::mem::take(&mut recovered.known);
    let pending = std::mem::take(&mut recovered.pending);
    let listing_done = recovered.state.listing_done;
    let token = recovered.state.next_page_token.clone().unwrap_or_default();
    if ctx
        .writer
        .send(WriteOp::Attach {
            batch: id.clone(),
            recovered,
        })
        .await
        .is_err()
    {
        return;
    }
    for job in pending {
        if !queue(&ctx, &jobs, &batch, job).await {
            return;
        }
    }
    if !listing_done {
        list(&ctx, &batch, token, &mut known, &jobs).await;
    }
}

enum Opened {
    Complete(crate::state::BatchState),
    Work(Box<crate::state::Recovered>),
}

fn open_batch(ctx: &Ctx, id: &str, summary: &RawValue) -> Result<Opened, Error> {
    let files = ctx.layout.batch(id);
    let io = |source| Error::Write {
        path: files.dir().into(),
        source,
    };
    if let Some(state) = complete_state(&ctx.layout, id).map_err(io)? {
        write_if_changed(&files.summary(), summary.get())?;
        return Ok(Opened::Complete(state));
    }
    let annotation_files = ctx.config.annotations == crate::config::AnnotationMode::Files;
    let recovered = recover(&ctx.layout, id, annotation_files).map_err(io)?;
    write_if_changed(&files.summary(), summary.get())?;
    Ok(Opened::Work(Box::new(recovered)))
}

/// Queue a job for its result; false when the run is stopping.
async fn queue(ctx: &Ctx, jobs: &mpsc::Sender<JobTask>, batch: &Arc<str>, job: String) -> bool {
    tokio::select! {
        sent = jobs.send(JobTask { batch: batch.clone(), job }) => sent.is_ok(),
        () = ctx.cancel.cancelled() => false,
    }
}

/// List pages from `token` on. Each page's new jobs are written before they are queued, so a
/// result never reaches the writer before its job's line.
async fn list(
    ctx: &Ctx,
    batch: &Arc<str>,
    mut token: String,
    known: &mut HashSet<String>,
    jobs: &mpsc::Sender<JobTask>,
) {
    let mut seen_tokens = HashSet::new();
    loop {
        let data = tokio::select! {
            d = ctx.client.batch_page(batch, &token) => d,
            () = ctx.cancel.cancelled() => return,
        };
        let page = match data {
            Ok(data) => parse_page(&data).map_err(|e| e.to_string()),
            Err(e) => match ctx.unless_fatal(e) {
                Some(e) => Err(e.to_string()),
                None => return,
            },
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let _ = ctx
                    .writer
                    .send(WriteOp::ListingFailed {
                        batch: batch.to_string(),
                        error,
                    })
                    .await;
                return;
            }
        };
        let mut lines = Vec::new();
        let mut fresh = Vec::new();
        for (id, job) in &page.jobs {
            // A job repeated across a page boundary is exported once.
            if known.insert(id.clone()) {
                push_line(job.get(), &mut lines);
                fresh.push(id.clone());
            }
        }
        // An empty page ends the listing whatever its token says.
        let next = page.next_page_token.filter(|_| !page.jobs.is_empty());
        let looped = next
            .as_ref()
            .is_some_and(|t| !seen_tokens.insert(t.clone()) || *t == token);
        let last = next.is_none() || looped;
        let op = WriteOp::Page {
            batch: batch.to_string(),
            lines,
            new_jobs: fresh.len() as u64,
            next_page_token: next.clone(),
            last: next.is_none(),
        };
        if ctx.writer.send(op).await.is_err() {
            return;
        }
        for job in fresh {
            if !queue(ctx, jobs, batch, job).await {
                return;
            }
        }
        if looped {
            let error = format!("the listing repeats page token {:?}; stopped", next.unwrap_or_default());
            let _ = ctx
                .writer
                .send(WriteOp::ListingFailed {
                    batch: batch.to_string(),
                    error,
                })
                .await;
            return;
        }
        if last {
            return;
        }
        token = next.expect("not the last page");
    }
}
