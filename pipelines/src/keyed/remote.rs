//! A keyed operator's files beside its checkpoints, in the target's object
//! store: `_strata_state/<pipeline>/keyed/<operator>/<file>`.
//!
//! Files are uploaded before the checkpoint that names them is written, so a
//! landed commit's manifest only names files that are whole. A file no landed
//! manifest names (written for a commit that never happened, or replaced by a
//! compaction) is deleted once a later commit has landed.

use std::path::Path;

use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::{ObjectStoreExt, WriteMultipart, path::Path as StorePath};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::manifest::{Manifest, StateFile};
use crate::error::{PipelineError, Result};

/// The smallest part S3 accepts, one in flight: an upload holds two parts.
const PART_BYTES: usize = 5 * 1024 * 1024;
const READ_BYTES: usize = 256 * 1024;

/// The folder of one keyed operator's state files.
#[derive(Debug, Clone)]
pub struct RemoteFiles {
    store: ObjectStoreRef,
    dir: String,
}

impl RemoteFiles {
    /// `dir` is the pipeline's state folder (`_strata_state/<pipeline>`).
    pub fn new(store: ObjectStoreRef, dir: &str, operator: &str) -> Self {
        let operator: String = operator
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            store,
            dir: format!("{}/keyed/{operator}", dir.trim_end_matches('/')),
        }
    }

    fn path(&self, name: &str) -> StorePath {
        StorePath::from(format!("{}/{name}", self.dir))
    }

    fn error(&self, name: &str, err: impl std::fmt::Display) -> PipelineError {
        PipelineError::State(format!("keyed state file {}/{name}: {err}", self.dir))
    }

    /// Uploads a local file under `file`'s name, in parts.
    pub async fn upload(&self, local: &Path, file: &StateFile) -> Result<()> {
        let name = file.name();
        let upload = self
            .store
            .put_multipart(&self.path(&name))
            .await
            .map_err(|err| self.error(&name, err))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut reader = tokio::fs::File::open(local)
            .await
            .map_err(|err| self.error(&name, err))?;
        let mut buffer = vec![0; READ_BYTES];
        loop {
            let read = reader
                .read(&mut buffer)
                .await
                .map_err(|err| self.error(&name, err))?;
            if read == 0 {
                break;
            }
            writer
                .wait_for_capacity(1)
                .await
                .map_err(|err| self.error(&name, err))?;
            writer.write(&buffer[..read]);
        }
        writer
            .finish()
            .await
            .map_err(|err| self.error(&name, err))?;
        Ok(())
    }

    /// Downloads `file` into `local`, a chunk at a time.
    pub async fn download(&self, file: &StateFile, local: &Path) -> Result<()> {
        let name = file.name();
        let found = self
            .store
            .get(&self.path(&name))
            .await
            .map_err(|err| self.error(&name, err))?;
        let mut chunks = found.into_stream();
        let mut out = tokio::fs::File::create(local)
            .await
            .map_err(|err| self.error(&name, err))?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|err| self.error(&name, err))?;
            out.write_all(&chunk)
                .await
                .map_err(|err| self.error(&name, err))?;
        }
        out.flush().await.map_err(|err| self.error(&name, err))?;
        Ok(())
    }

    /// The names in the folder.
    pub async fn names(&self) -> Result<Vec<String>> {
        let prefix = StorePath::from(self.dir.as_str());
        let mut listed = self.store.list(Some(&prefix));
        let mut names = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|err| self.error("", err))?;
            if let Some(name) = meta.location.filename() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes the files `landed` (the manifest of the last landed commit) no
    /// longer names, but for the file `compacting`, which a compaction in
    /// flight uploads before a manifest names it. Older bases and runs go
    /// too: those of a state a reset dropped, or of a run that died compacting.
    pub async fn forget_unnamed(
        &self,
        landed: &Manifest,
        compacting: Option<&str>,
    ) -> Result<usize> {
        let mut deleted = 0;
        for name in self.names().await? {
            if landed.contains(&name) || compacting == Some(name.as_str()) {
                continue;
            }
            self.store
                .delete(&self.path(&name))
                .await
                .map_err(|err| self.error(&name, err))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}
