//! Sending pipelines' OpenLineage run events where `[openlineage]` says: one
//! JSON object a line appended to a file, and/or POSTed to an HTTP endpoint
//! (Marquez, DataHub). Events go through one queue, in order; a failed send is
//! logged and never holds a pipeline back.
//!
//! ```text
//!   pipeline start ─ START ─┐
//!   each commit ── RUNNING ─┼─▶ queue ─▶ file (append) + POST url
//!   stop / error ─ COMPLETE | FAIL ─┘
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use strata_catalog::config::OpenLineageConfig;
use strata_lineage::openlineage::{EventType, Progress, RunContext};
use tokio::sync::mpsc;

/// The queue to the sending task.
#[derive(Debug)]
pub struct Emitter {
    sender: mpsc::UnboundedSender<Value>,
    worker: tokio::task::JoinHandle<()>,
}

impl Emitter {
    /// Starts the sending task; a relative `file` is in `project_dir`.
    pub fn start(config: &OpenLineageConfig, project_dir: &std::path::Path) -> Self {
        let file: Option<PathBuf> = config.file.as_ref().map(|f| project_dir.join(f));
        let url = config.url.clone();
        let (sender, mut events) = mpsc::unbounded_channel::<Value>();
        let worker = tokio::spawn(async move {
            // A hung endpoint must not hold the queue (nor shutdown) for ever.
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            while let Some(event) = events.recv().await {
                let line = event.to_string();
                if let Some(path) = &file {
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| writeln!(f, "{line}"));
                    if let Err(err) = written {
                        tracing::warn!(path = %path.display(), %err, "could not write an OpenLineage event");
                    }
                }
                if let Some(url) = &url {
                    let sent = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(line)
                        .send()
                        .await
                        .and_then(|response| response.error_for_status());
                    if let Err(err) = sent {
                        tracing::warn!(url, %err, "could not send an OpenLineage event");
                    }
                }
            }
        });
        Self { sender, worker }
    }

    /// Sends the run's event of `event_type`, now.
    pub fn emit(&self, run: &RunContext, event_type: EventType, progress: &Progress) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = self.sender.send(run.event(event_type, &now, progress));
    }

    /// Sends what is queued (for at most a minute), then stops.
    pub async fn close(self) {
        drop(self.sender);
        if tokio::time::timeout(std::time::Duration::from_secs(60), self.worker)
            .await
            .is_err()
        {
            tracing::warn!(
                "OpenLineage events were still being sent after a minute; the rest are dropped"
            );
        }
    }
}

/// A pipeline's run, as OpenLineage sees it.
#[derive(Debug, Clone)]
pub struct ObservedRun {
    pub emitter: Arc<Emitter>,
    pub context: Arc<RunContext>,
}

impl ObservedRun {
    /// START now, and RUNNING after each of the pipeline's commits.
    pub fn start(&self, stats: &strata_pipelines::TableStats) {
        self.emitter
            .emit(&self.context, EventType::Start, &Progress::default());
        let (emitter, context) = (self.emitter.clone(), self.context.clone());
        stats.on_commit.set(move |rows| {
            let progress = Progress {
                rows: Some(rows),
                error: None,
            };
            emitter.emit(&context, EventType::Running, &progress);
        });
    }

    /// COMPLETE, or FAIL with the error.
    pub fn finish(&self, outcome: &anyhow::Result<()>) {
        match outcome {
            Ok(()) => self
                .emitter
                .emit(&self.context, EventType::Complete, &Progress::default()),
            Err(err) => self.emitter.emit(
                &self.context,
                EventType::Fail,
                &Progress {
                    rows: None,
                    error: Some(format!("{err:#}")),
                },
            ),
        }
    }
}
