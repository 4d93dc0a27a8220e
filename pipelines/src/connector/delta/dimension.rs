//! A Delta dimension: the whole table in memory, indexed by the join's key,
//! reloaded when the table's version moved (looked for at most once a second).

use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::delta as lake;
use tokio::sync::Mutex;

use crate::error::{PipelineError, Result};
use crate::lookup::dimension::{DimensionTable, KeyBatch, MemoryTable};

/// How often a Delta dimension checks for a new version.
const DELTA_REFRESH: Duration = Duration::from_secs(1);

/// A Delta table looked up in memory.
#[derive(Debug)]
pub struct DeltaDimension {
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    location: String,
    schema: SchemaRef,
    version: Option<u64>,
    checked_at: Option<Instant>,
    memory: Option<MemoryTable>,
}

impl DeltaDimension {
    pub fn new(location: String, schema: SchemaRef) -> Self {
        Self {
            loaded: Mutex::new(Loaded {
                location,
                schema,
                version: None,
                checked_at: None,
                memory: None,
            }),
        }
    }
}

#[async_trait::async_trait]
impl DimensionTable for DeltaDimension {
    async fn fetch(
        &self,
        key_columns: &[String],
        key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch> {
        let mut loaded = self.loaded.lock().await;
        loaded.refresh(key_columns, key_types).await?;
        loaded
            .memory
            .as_ref()
            .expect("refreshed")
            .fetch(&keys.bytes)
    }

    fn in_memory(&self) -> bool {
        true
    }

    fn describe(&self) -> &'static str {
        "Delta, in memory"
    }
}

impl Loaded {
    /// Reloads the table when its version moved (checked at most once a second).
    async fn refresh(&mut self, key_columns: &[String], key_types: &[DataType]) -> Result<()> {
        if self.memory.is_some()
            && self
                .checked_at
                .is_some_and(|at| at.elapsed() < DELTA_REFRESH)
        {
            return Ok(());
        }
        let table = lake::open(&self.location).await?;
        self.checked_at = Some(Instant::now());
        let version = table.version();
        if self.memory.is_some() && version == self.version {
            return Ok(());
        }
        let provider = lake::provider_of(&table).await?;
        let batches = datafusion::prelude::SessionContext::new()
            .read_table(provider)
            .map_err(|err| PipelineError::Evaluation(err.to_string()))?
            .collect()
            .await
            .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
        let batches = batches
            .iter()
            .map(|batch| {
                let columns = crate::batch::columns_by_name(batch, &self.schema, |name| {
                    format!(
                        "the Delta dimension at {} has no column {name}",
                        self.location
                    )
                })?;
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = arrow::compute::concat_batches(&self.schema, &batches)?;
        self.memory = Some(MemoryTable::new(rows, key_columns, key_types)?);
        self.version = version;
        Ok(())
    }
}
