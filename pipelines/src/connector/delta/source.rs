//! Following a Delta table's log: the lake table is both history and stream.
//!
//! ```text
//!   _delta_log/…0041.json  add(part-a, dataChange) ─┐
//!   _delta_log/…0042.json  add(part-b, dataChange) ─┼─▶ read part-a, part-b ─▶ batches, "up to version 42"
//!   _delta_log/…0043.json  OPTIMIZE: remove + add (dataChange=false) ─▶ skipped: same rows, rewritten
//! ```
//!
//! The downstream pipeline records the last version it read as its `txn`
//! offset, so a restart continues with the next version: each upstream row is
//! read once. Upstream tables must be append-only: a commit that removes rows
//! as a data change (DELETE, MERGE) stops the pipeline with an error. A
//! partitioned table's files lack their partition columns: each file's rows
//! get them from its `add` action's `partitionValues` (as text, which the
//! reader casts to the columns' types).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::ObjectStore;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_catalog::connectors::delta as lake;

use crate::error::{PipelineError, Result};
use crate::position::Position;
use crate::source::reader::{CarriedWatermark, Next, SourceBatch, SourceReader, stopped};

/// New rows of a Delta table, version by version.
#[derive(Debug)]
pub struct DeltaFollower {
    location: String,
    table: DeltaTable,
    /// The next version to read.
    next_version: i64,
    /// A poll stops after the version that brings its rows to this many: a
    /// backlog of versions is read a few at a time, not all at once.
    max_rows: usize,
    /// The latest watermark each writing pipeline recorded, of the versions read.
    carried: BTreeMap<String, CarriedWatermark>,
}

impl DeltaFollower {
    /// Follows the table at `location`, starting after `after_version` (or
    /// from version 0), reading versions until a poll holds `max_rows` rows.
    pub async fn open(location: &str, after_version: Option<i64>, max_rows: usize) -> Result<Self> {
        Ok(Self {
            location: location.to_string(),
            table: lake::open(location).await?,
            next_version: after_version.map_or(0, |v| v + 1),
            max_rows: max_rows.max(1),
            carried: BTreeMap::new(),
        })
    }

    /// The rows that versions from the next unread one on added, up to the
    /// version that brings them to `max_rows` (or the latest), the last
    /// version read, and the watermark the last of them that recorded one was
    /// committed at; `None` when there is no new version. A version is never
    /// split: its rows commit with its number.
    pub async fn poll(&mut self) -> Result<Option<Polled>> {
        self.table
            .update_state()
            .await
            .map_err(|source| self.error(source.to_string()))?;
        let latest = self.table.version().map_or(-1, |v| v as i64);
        if latest < self.next_version {
            return Ok(None);
        }
        let store = self.table.log_store().object_store(None);
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut read_to = latest;
        for version in self.next_version..=latest {
            let commit = self
                .table
                .log_store()
                .read_commit_entry(version as u64)
                .await
                .map_err(|source| self.error(source.to_string()))?;
            let added = match commit {
                Some(commit) => {
                    if let Some(recorded) = carried_watermark(&commit) {
                        self.carried.insert(recorded.writer.clone(), recorded);
                    }
                    self.added_files(version, &commit)?
                }
                None => Vec::new(),
            };
            for (path, partition_values) in added {
                let read = read_parquet(store.clone(), &path).await.map_err(|cause| {
                    self.error(format!("reading {path} of version {version}: {cause}"))
                })?;
                for batch in read {
                    rows += batch.num_rows();
                    batches.push(with_partition_values(batch, &partition_values)?);
                }
            }
            if rows >= self.max_rows {
                read_to = version;
                break;
            }
        }
        self.next_version = read_to + 1;
        Ok(Some(Polled {
            version: read_to,
            batches,
            carried: self.lowest_carried(),
        }))
    }

    /// The lowest watermark of the pipelines that wrote the versions read,
    /// with the columns all of them say carry it.
    fn lowest_carried(&self) -> Option<CarriedWatermark> {
        let mut writers = self.carried.values();
        let first = writers.next()?.clone();
        Some(writers.fold(first, |lowest, other| {
            CarriedWatermark {
                ms: lowest.ms.min(other.ms),
                columns: lowest
                    .columns
                    .into_iter()
                    .filter(|column| other.columns.contains(column))
                    .collect(),
                writer: lowest.writer,
            }
        }))
    }

    /// The data files a commit added as new rows, with their partition values.
    fn added_files(&self, version: i64, commit: &[u8]) -> Result<Vec<(String, PartitionValues)>> {
        let mut files = Vec::new();
        for line in commit.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|err| self.error(format!("version {version} is not readable: {err}")))?;
            let data_change = |kind: &str| {
                action
                    .get(kind)
                    .and_then(|a| a.get("dataChange"))
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false)
            };
            if data_change("remove") {
                return Err(self.error(format!(
                    "version {version} deletes or rewrites rows; only append-only tables can be followed as streams"
                )));
            }
            if data_change("add")
                && let Some(path) = action["add"]
                    .get("path")
                    .and_then(serde_json::Value::as_str)
            {
                // Delta log paths are percent-encoded.
                let partition_values = action["add"]
                    .get("partitionValues")
                    .and_then(serde_json::Value::as_object)
                    .map(|values| {
                        values
                            .iter()
                            .map(|(column, value)| {
                                (column.clone(), value.as_str().map(str::to_string))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                files.push((
                    percent_encoding::percent_decode_str(path)
                        .decode_utf8_lossy()
                        .into_owned(),
                    partition_values,
                ));
            }
        }
        Ok(files)
    }

    fn error(&self, cause: String) -> PipelineError {
        PipelineError::Source {
            what: format!("Delta table at {}", self.location),
            cause,
        }
    }
}

/// What a poll of the log read.
#[derive(Debug)]
pub struct Polled {
    /// The last version read.
    pub version: i64,
    pub batches: Vec<RecordBatch>,
    /// The watermark the upstream pipeline committed the last of them at.
    pub carried: Option<CarriedWatermark>,
}

/// The key under which a pipeline records its watermark in a Delta commit's `commitInfo`.
pub const WATERMARK_INFO: &str = "strata.watermark";

/// The watermark a commit recorded in its `commitInfo`, if it did.
fn carried_watermark(commit: &[u8]) -> Option<CarriedWatermark> {
    commit
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .find_map(|action| {
            let recorded = action.get("commitInfo")?.get(WATERMARK_INFO)?;
            serde_json::from_value(recorded.clone()).ok()
        })
}

/// A file's partition values: column, and its value as text (`None`: NULL).
type PartitionValues = Vec<(String, Option<String>)>;

/// `batch` with its file's partition columns appended, as text.
fn with_partition_values(batch: RecordBatch, values: &PartitionValues) -> Result<RecordBatch> {
    if values.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().to_vec();
    let mut columns = batch.columns().to_vec();
    for (column, value) in values {
        if batch.schema().index_of(column).is_ok() {
            continue;
        }
        fields.push(Arc::new(arrow::datatypes::Field::new(
            column,
            arrow::datatypes::DataType::Utf8,
            true,
        )));
        columns.push(Arc::new(arrow::array::StringArray::from(vec![
            value
                .as_deref(
                );
            batch
                .num_rows(
                )
        ])));
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

async fn read_parquet(
    store: Arc<dyn ObjectStore>,
    path: &str,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let location = deltalake::Path::parse(path).map_err(|err| err.to_string())?;
    let bytes = store
        .get(&location)
        .await
        .map_err(|err| err.to_string())?
        .bytes()
        .await
        .map_err(|err| err.to_string())?;
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|err| err.to_string())?
        .build()
        .map_err(|err| err.to_string())?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| err.to_string())
}

/// A pipeline's source that is an upstream Delta table: its new versions, as they come.
#[derive(Debug)]
pub struct DeltaReader {
    pub follower: DeltaFollower,
    pub schema: SchemaRef,
    /// `delta/<space.table>`.
    pub stream: String,
    pub poll_every: Duration,
    /// Whether the end of the log was reported since the last new version.
    pub at_end: bool,
    /// When the log was last read.
    pub polled_at: Option<Instant>,
}

#[async_trait::async_trait]
impl SourceReader for DeltaReader {
    fn stream(&self) -> &str {
        &self.stream
    }

    async fn read(
        &mut self,
        deadline: Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Next> {
        // At the end of the log, it is read again every `poll_every`, however
        // often the caller asks (a due commit asks every few milliseconds).
        let poll_due = !self.at_end
            || self
                .polled_at
                .is_none_or(|at| at.elapsed() >= self.poll_every);
        if poll_due {
            // Polling is not cancelled half-way: it moves the follower on.
            self.polled_at = Some(Instant::now());
            if let Some(polled) = self.follower.poll().await? {
                self.at_end = false;
                return delta_batch(&self.schema, polled).map(Next::Batch);
            }
            if !self.at_end {
                self.at_end = true;
                return Ok(Next::CaughtUp);
            }
        }
        let next_poll = self.polled_at.unwrap_or_else(Instant::now) + self.poll_every;
        Ok(tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(next_poll).into()) => Next::Idle,
            changed = stop.changed() => stopped(changed.is_err() || *stop.borrow()),
        })
    }
}

/// A Delta version's rows, by the source table's column names and types.
fn delta_batch(schema: &SchemaRef, polled: Polled) -> Result<SourceBatch> {
    let version = polled.version;
    let relaxed = Arc::new(arrow::datatypes::Schema::new(
        crate::batch::nullable_fields(schema),
    ));
    let batches = polled
        .batches
        .iter()
        .map(|batch| {
            let columns = crate::batch::columns_by_name(batch, schema, |name| {
                format!("the upstream table's files have no column {name}")
            })?;
            Ok(RecordBatch::try_new(relaxed.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = arrow::compute::concat_batches(&relaxed, &batches)?;
    Ok(SourceBatch {
        coordinates: vec![(0, version); rows.num_rows()],
        kinds: None,
        records: rows.num_rows() as u64,
        rows,
        rejected: Vec::new(),
        positions: BTreeMap::from([(0, Position::at(version))]),
        drift: None,
        originals: Vec::new(),
        carried: polled.carried.map(Box::new),
    })
}

/// Opens an upstream Delta table at the version after the one the target last committed.
pub async fn open(
    table: &strata_catalog::TableDef,
    options: &crate::source::SourceOptions<'_>,
    positions: &mut dyn crate::source::CommittedPositions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    let location = strata_catalog::connectors::delta_location(options.project, table)?;
    let stream = format!("delta/{}", table.name);
    let resume = positions
        .committed(&stream, 0)
        .await?
        .map(|position| position.order);
    let reader = DeltaReader {
        follower: DeltaFollower::open(&location, resume, options.batch_records).await?,
        schema: table.schema.clone(),
        stream,
        poll_every: options.poll_every,
        at_end: false,
        polled_at: None,
    };
    Ok((Box::new(reader), vec![0]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::connector::delta::sink::DeltaSink;
    use crate::position::Positions;
    use crate::sink::WriteMode;

    fn ids(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn read(polled: &Option<Polled>) -> (i64, Vec<i64>) {
        let polled = polled.as_ref().expect("a new version");
        let values = polled
            .batches
            .iter()
            .flat_map(|batch| {
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                column.values().to_vec()
            })
            .collect();
        (polled.version, values)
    }

    #[tokio::test]
    async fn a_backlog_of_versions_is_read_a_few_at_a_time_and_rewrites_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("t").to_str().unwrap().to_string();
        lake::create(&location, "t", &ids(&[]).schema(), &[])
            .await
            .unwrap();
        let mut sink = DeltaSink::open(&location, "up", WriteMode::Append)
            .await
            .unwrap();
        for version in 0..3 {
            let rows = ids(&[version * 10, version * 10 + 1]);
            sink.commit(vec![rows], &Positions::new(), None)
                .await
                .unwrap();
        }
        // Versions 1 to 3 hold two rows each; a poll stops once it holds three.
        let mut follower = DeltaFollower::open(&location, None, 3).await.unwrap();
        assert_eq!(
            read(&follower.poll().await.unwrap()),
            (2, vec![0, 1, 10, 11])
        );
        assert_eq!(read(&follower.poll().await.unwrap()), (3, vec![20, 21]));
        assert!(follower.poll().await.unwrap().is_none());
        // A compaction rewrites the same rows: the follower moves past it with none.
        lake::optimize(&location).await.unwrap();
        assert_eq!(read(&follower.poll().await.unwrap()), (4, vec![]));
        // A follower resumed after version 2 reads the rest, once.
        let mut resumed = DeltaFollower::open(&location, Some(2), 100).await.unwrap();
        assert_eq!(read(&resumed.poll().await.unwrap()), (4, vec![20, 21]));
        // A delete changes rows the stream has passed on: following stops, naming the version.
        let table = lake::open(&location).await.unwrap();
        table.delete().with_predicate("id = 0").await.unwrap();
        let refused = follower.poll().await.unwrap_err().to_string();
        assert!(
            refused.contains("version 5 deletes or rewrites rows"),
            "{refused}"
        );
    }
}
