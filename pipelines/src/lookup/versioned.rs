//! Versioned tables, for event-time temporal joins
//! (`JOIN prices FOR SYSTEM_TIME AS OF o.order_time AS p ON o.product_id = p.product_id`):
//! a Kafka changelog with a primary key and an event-time column, kept as the
//! versions of each key, so that a probe row joins the version that was valid
//! at its own event time.
//!
//! ```text
//!   changelog (json upserts + tombstones, or debezium-json) ─▶ per key: { 10:00 → v1, 10:05 → v2, 10:09 → deleted }
//!
//!   probe row (key k, time t):
//!     t > horizon (the versioned side's watermark) ─▶ waits, in the pipeline's state, until the horizon passes t
//!     t ≤ horizon ─▶ k's newest version at or before t (none before the first, or after a delete)
//!     t < cleaned, k had a version before then, but its oldest kept is after t ─▶ quarantined as late
//!                                                                             (its version was dropped)
//!
//!   commit: versions before min(probe watermark, versioned watermark) are dropped, except each key's newest one
//!   a change older than that bound ─▶ quarantined as a late version (it would rewrite what was joined)
//!   idle:   the versioned side silent for the idle timeout ─▶ horizon = +∞: probe rows join the newest versions known
//! ```
//!
//! The versions are part of the pipeline's checkpoint, committed with the
//! changelog's offsets, so a restart resumes both from the same commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, RowParser, Rows, SortField};

use crate::error::{PipelineError, Result};
use crate::state::{ByteReader, ByteWriter};

/// One change of a versioned table, for a row of a decoded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The row is the key's version from its event time on.
    Upsert,
    /// The key has no version from `at_ms` (the record's Kafka timestamp) on.
    Delete { at_ms: i64 },
}

/// What a versioned table answers for probe rows.
#[derive(Debug, Default)]
pub struct Answers {
    /// Each probe row's version, if it has one (none for waiting and late rows).
    pub rows: Vec<Option<OwnedRow>>,
    /// Rows whose time the versioned side's watermark has not passed yet.
    pub waiting: Vec<usize>,
    /// Rows older than the versions kept for their key.
    pub late: Vec<usize>,
}

/// The versions of a Kafka changelog, by the temporal join's key.
#[derive(Debug)]
pub struct VersionedTable {
    pub name: String,
    /// The table's columns, every one nullable (a delete's image may have NULLs).
    pub schema: SchemaRef,
    /// The event-time column (the table's `WATERMARK FOR` column).
    pub time_column: String,
    pub primary_key: Vec<String>,
    state: Mutex<Versions>,
}

#[derive(Debug)]
struct Versions {
    /// How join keys are encoded, once the join has said which columns and types.
    keys: Option<KeyEncoding>,
    by_key: HashMap<Box<[u8]>, BTreeMap<i64, Option<OwnedRow>>>,
    rows: RowConverter,
    /// Probe rows at or before it are joined; later ones wait.
    horizon: i64,
    /// Versions before it were dropped (each key kept its newest one before it).
    cleaned_below: i64,
}

#[derive(Debug)]
struct KeyEncoding {
    columns: Vec<String>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl VersionedTable {
    pub fn new(
        name: String,
        schema: &Schema,
        time_column: String,
        primary_key: Vec<String>,
    ) -> Result<Self> {
        let schema = Arc::new(Schema::new(crate::batch::nullable_fields(schema)));
        let rows = crate::batch::row_converter(&schema)?;
        Ok(Self {
            name,
            schema,
            time_column,
            primary_key,
            state: Mutex::new(Versions {
                keys: None,
                by_key: HashMap::new(),
                rows,
                horizon: i64::MIN,
                cleaned_below: i64::MIN,
            }),
        })
    }

    /// Sets the join's key columns and the types they are compared as.
    pub fn bind_keys(&self, columns: &[String], types: &[DataType]) -> Result<()> {
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        self.lock().keys = Some(KeyEncoding {
            columns: columns.to_vec(),
            types: types.to_vec(),
            converter,
        });
        Ok(())
    }

    /// Applies changes in the order they were written; returns the rows that
    /// could not be applied, with the reason. For deletes only the key
    /// columns are read, so `batch` may hold just those.
    pub fn apply(&self, batch: &RecordBatch, changes: &[Change]) -> Result<Vec<(usize, String)>> {
        let mut state = self.lock();
        let keys = state.encode_keys(batch)?;
        let upserts = changes.contains(&Change::Upsert);
        let (rows, times) = if upserts {
            let columns = crate::batch::columns_by_name(batch, &self.schema, |name| {
                format!("the changelog's rows have no column {name}")
            })?;
            (
                Some(state.rows.convert_columns(&columns)?),
                Some(crate::window::event_times(batch, &self.time_column)?),
            )
        } else {
            (None, None)
        };
        let mut refused = Vec::new();
        for (row, change) in changes.iter().enumerate() {
            let Some(key) = keys.row_key(row) else {
                refused.push((
                    row,
                    format!("its primary key ({}) is NULL", self.primary_key.join(", ")),
                ));
                continue;
            };
            let at = match change {
                Change::Upsert => times
                    .as_ref()
                    .filter(|t| t.is_valid(row))
                    .map(|t| t.value(row)),
                Change::Delete { at_ms } => Some(*at_ms),
            };
            if at.is_some_and(|at| at < state.cleaned_below) {
                refused.push((
                    row,
                    format!(
                        "it is a late version: both watermarks have passed its time, and the versions of {} before {} ms were dropped",
                        self.name, state.cleaned_below
                    ),
                ));
                continue;
            }
            let (at, version) = match change {
                Change::Upsert => {
                    let times = times.as_ref().expect("decoded for upserts");
                    if times.is_null(row) {
                        refused.push((
                            row,
                            format!(
                                "its event-time column {} is NULL, so it is no version of {}",
                                self.time_column, self.name
                            ),
                        ));
                        continue;
                    }
                    let rows = rows.as_ref().expect("converted for upserts");
                    (times.value(row), Some(rows.row(row).owned()))
                }
                Change::Delete { at_ms } => (*at_ms, None),
            };
            state
                .by_key
                .entry(key.into())
                .or_default()
                .insert(at, version);
        }
        Ok(refused)
    }

    /// Each probe row's version as of its time, for rows whose key is given,
    /// as rows of the converter `parser` belongs to.
    pub fn versions_at(
        &self,
        keys: &Rows,
        key_nulls: &[bool],
        times: &TimestampMillisecondArray,
        parser: &RowParser,
    ) -> Answers {
        let state = self.lock();
        let mut answers = Answers::default();
        for (row, &null_key) in key_nulls.iter().enumerate() {
            let version = if times.is_null(row) || null_key {
                None
            } else {
                let time = times.value(row);
                if time > state.horizon {
                    answers.waiting.push(row);
                    None
                } else {
                    let versions = state.by_key.get(keys.row(row).data());
                    let oldest = versions.and_then(|v| v.keys().next().copied());
                    // A key whose oldest version kept is at or before the cleaning bound had
                    // versions dropped before it; one with a newer oldest version had none then.
                    let dropped_since =
                        oldest.is_some_and(|oldest| oldest <= state.cleaned_below && oldest > time);
                    if time < state.cleaned_below && dropped_since {
                        answers.late.push(row);
                        None
                    } else {
                        versions
                            .and_then(|v| v.range(..=time).next_back())
                            .and_then(|(_, version)| version.as_ref())
                            .map(|version| parser.parse(version.row().data()).owned())
                    }
                }
            };
            answers.rows.push(version);
        }
        answers
    }

    pub fn horizon(&self) -> i64 {
        self.lock().horizon
    }

    /// Probe rows up to `horizon` join now, later ones wait. It goes back
    /// from +∞ when an idle versioned side comes back to life.
    pub fn set_horizon(&self, horizon: i64) {
        self.lock().horizon = horizon;
    }

    /// Drops the versions no probe row can need any more: those before
    /// `below`, except each key's newest one before it.
    pub fn clean(&self, below: i64) {
        let mut state = self.lock();
        if below <= state.cleaned_below {
            return;
        }
        state.cleaned_below = below;
        // A key deleted before `below` keeps its delete: it tells "no version" from "dropped".
        for versions in state.by_key.values_mut() {
            if let Some((&newest_before, _)) = versions.range(..=below).next_back() {
                *versions = versions.split_off(&newest_before);
            }
        }
    }

    /// How many versions are held (for the metrics).
    pub fn version_count(&self) -> usize {
        self.lock().by_key.values().map(BTreeMap::len).sum()
    }

    pub fn encode(&self, out: &mut ByteWriter) {
        let state = self.lock();
        out.i64(state.cleaned_below);
        out.u64(state.by_key.len() as u64);
        for (key, versions) in &state.by_key {
            out.bytes(key);
            out.u64(versions.len() as u64);
            for (at, version) in versions {
                out.i64(*at);
                out.option(version.as_ref(), |out, row| out.bytes(row.row().data()));
            }
        }
    }

    pub fn decode(&self, input: &mut ByteReader) -> Result<()> {
        let mut state = self.lock();
        state.cleaned_below = input.i64()?;
        let parser = state.rows.parser();
        let mut by_key = HashMap::new();
        for _ in 0..input.u64()? {
            let key: Box<[u8]> = input.bytes()?.into();
            let mut versions = BTreeMap::new();
            for _ in 0..input.u64()? {
                let at = input.i64()?;
                let version = input.option(|r| Ok(parser.parse(r.bytes()?).owned()))?;
                versions.insert(at, version);
            }
            by_key.insert(key, versions);
        }
        state.by_key = by_key;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.state.lock().expect("not poisoned")
    }
}

/// A batch's join keys, encoded; `None` for a row with a NULL key column.
struct EncodedKeys {
    rows: Rows,
    nulls: Vec<bool>,
}

impl EncodedKeys {
    fn row_key(&self, row: usize) -> Option<&[u8]> {
        (!self.nulls[row]).then(|| self.rows.row(row).data())
    }
}

impl Versions {
    fn encode_keys(&self, batch: &RecordBatch) -> Result<EncodedKeys> {
        let keys = self.keys.as_ref().ok_or_else(|| {
            PipelineError::Evaluation("a versioned table was read before its join".to_string())
        })?;
        let columns = keys
            .columns
            .iter()
            .zip(&keys.types)
            .map(|(name, key_type)| {
                let column = batch.column_by_name(name).ok_or_else(|| {
                    PipelineError::Evaluation(format!("the changelog's rows have no column {name}"))
                })?;
                Ok(arrow::compute::cast(column, key_type)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let nulls = (0..batch.num_rows())
            .map(|row| columns.iter().any(|c| c.is_null(row)))
            .collect();
        Ok(EncodedKeys {
            rows: keys.converter.convert_columns(&columns)?,
            nulls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, TimeUnit};

    fn table() -> VersionedTable {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        let table =
            VersionedTable::new("prices".into(), &schema, "ts".into(), vec!["id".into()]).unwrap();
        table
            .bind_keys(&["id".to_string()], &[DataType::Int64])
            .unwrap();
        table
    }

    fn changes(table: &VersionedTable, rows: &[(i64, &str, i64)]) {
        let batch = RecordBatch::try_new(
            table.schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap();
        let refused = table
            .apply(&batch, &vec![Change::Upsert; rows.len()])
            .unwrap();
        assert!(refused.is_empty());
    }

    /// The price each probe (key, time) joins, "wait", "late" or "-" for none.
    fn ask(table: &VersionedTable, probes: &[(i64, i64)]) -> Vec<String> {
        let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(probes.iter().map(|p| p.0)));
        let keys = converter.convert_columns(&[keys]).unwrap();
        let times = TimestampMillisecondArray::from_iter_values(probes.iter().map(|p| p.1));
        let rows = crate::batch::row_converter(&table.schema).unwrap();
        let answers = table.versions_at(&keys, &vec![false; probes.len()], &times, &rows.parser());
        (0..probes.len())
            .map(|row| {
                if answers.waiting.contains(&row) {
                    return "wait".to_string();
                }
                if answers.late.contains(&row) {
                    return "late".to_string();
                }
                match &answers.rows[row] {
                    None => "-".to_string(),
                    Some(version) => {
                        let columns = rows.convert_rows([version.row()]).unwrap();
                        let prices = columns[1].as_any().downcast_ref::<StringArray>().unwrap();
                        prices.value(0).to_string()
                    }
                }
            })
            .collect()
    }

    #[test]
    fn a_probe_joins_the_version_valid_at_its_time_once_the_horizon_passes_it() {
        let table = table();
        changes(&table, &[(1, "a", 100), (1, "b", 200), (2, "x", 150)]);
        table.set_horizon(250);
        assert_eq!(
            ask(
                &table,
                &[
                    (1, 50),
                    (1, 100),
                    (1, 199),
                    (1, 200),
                    (2, 149),
                    (2, 250),
                    (1, 251)
                ]
            ),
            ["-", "a", "a", "b", "-", "x", "wait"]
        );
        let deleted = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        table
            .apply(&deleted, &[Change::Delete { at_ms: 220 }])
            .unwrap();
        assert_eq!(ask(&table, &[(1, 219), (1, 220)]), ["b", "-"]);
    }

    #[test]
    fn cleaning_keeps_the_newest_version_before_the_bound_and_flags_older_probes_late() {
        let table = table();
        changes(
            &table,
            &[(1, "a", 100), (1, "b", 200), (1, "c", 300), (2, "x", 400)],
        );
        table.set_horizon(1_000);
        table.clean(250);
        assert_eq!(table.version_count(), 3, "a is gone; b, c and x stay");
        assert_eq!(
            ask(&table, &[(1, 260), (1, 150), (1, 300), (2, 150), (3, 150)]),
            ["b", "late", "c", "-", "-"],
            "key 2 had no version before the bound, key 3 none at all"
        );
        let late = RecordBatch::try_new(
            table.schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["old"])),
                Arc::new(TimestampMillisecondArray::from(vec![240])),
            ],
        )
        .unwrap();
        let refused = table.apply(&late, &[Change::Upsert]).unwrap();
        assert!(refused[0].1.contains("late version"), "{refused:?}");
        let mut out = ByteWriter::default();
        table.encode(&mut out);
        let restored = self::table();
        restored.set_horizon(1_000);
        restored.decode(&mut ByteReader::new(&out.bytes)).unwrap();
        assert_eq!(
            ask(&restored, &[(1, 260), (1, 150), (1, 300), (2, 150)]),
            ["b", "late", "c", "-"]
        );
    }
}
