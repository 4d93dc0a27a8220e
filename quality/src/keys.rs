//! Key rules: `unique` against every key the table holds, and `relationship`,
//! a foreign key that must exist in a dimension table.
//!
//! ```text
//!   unique:        start: read the key columns of the committed table ─▶ set of 128-bit key hashes
//!                  batch: a key in the set, or twice in the batch ─▶ fails; the rest join the set
//!   relationship:  batch keys ─▶ known-present cache (LRU) ─▶ the rest: SELECT DISTINCT k FROM dim
//!                  WHERE k IN (…) (pushed down to MySQL/TiDB) ─▶ found keys join the cache
//! ```
//!
//! A missing key is not cached: the dimension may receive it later, and a
//! replayed row is checked again.

use std::collections::HashSet;
use std::num::NonZeroUsize;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::prelude::SessionContext;
use strata_catalog::TableName;
use twox_hash::XxHash3_128;

use crate::error::{QualityError, Result};

/// The keys a table holds, as 128-bit hashes (a false match needs ~2^64 keys).
/// A key with a NULL part is no key: it is never a duplicate.
#[derive(Debug)]
pub struct UniqueKeys {
    columns: Vec<String>,
    types: Vec<DataType>,
    converter: RowConverter,
    seen: HashSet<u128>,
}

impl UniqueKeys {
    /// Starts from the keys already in `existing` (the committed table's key columns).
    pub fn new(
        columns: Vec<String>,
        schema: &arrow::datatypes::Schema,
        existing: &[RecordBatch],
    ) -> Result<Self> {
        let types = columns
            .iter()
            .map(|name| {
                schema
                    .field_with_name(name)
                    .map(|f| f.data_type().clone())
                    .map_err(|err| storage(name, err))
            })
            .collect::<Result<Vec<_>>>()?;
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter = RowConverter::new(fields).map_err(|err| storage("unique", err))?;
        let mut keys = Self {
            columns,
            types,
            converter,
            seen: HashSet::new(),
        };
        for batch in existing {
            for hash in keys.hashes(batch)?.into_iter().flatten() {
                keys.seen.insert(hash);
            }
        }
        Ok(keys)
    }

    /// Each row's key hash; `None` when a part of the key is NULL. Columns are
    /// cast to the table's types first (Delta reads text back as views and
    /// timestamps in microseconds).
    fn hashes(&self, batch: &RecordBatch) -> Result<Vec<Option<u128>>> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .zip(&self.types)
            .map(|(name, data_type)| {
                let column = batch
                    .column_by_name(name)
                    .ok_or_else(|| storage(name, "the batch has no such column"))?;
                arrow::compute::cast(column, data_type).map_err(|err| storage(name, err))
            })
            .collect::<Result<_>>()?;
        let rows = self
            .converter
            .convert_columns(&arrays)
            .map_err(|err| storage("unique", err))?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(row, key)| {
                arrays
                    .iter()
                    .all(|array| array.is_valid(row))
                    .then(|| XxHash3_128::oneshot(key.as_ref()))
            })
            .collect())
    }

    /// Forgets the keys of `rows` of `batch` (rows that will not be committed).
    pub fn forget(&mut self, batch: &RecordBatch, rows: &[u32]) -> Result<()> {
        let hashes = self.hashes(batch)?;
        for &row in rows {
            if let Some(hash) = hashes[row as usize] {
                self.seen.remove(&hash);
            }
        }
        Ok(())
    }

    /// The rows whose key the table (or an earlier row of the batch) holds already.
    /// The keys of the other rows are remembered: those rows will be committed.
    pub fn check(&mut self, batch: &RecordBatch) -> Result<Vec<u32>> {
        let mut duplicates = Vec::new();
        for (row, hash) in self.hashes(batch)?.into_iter().enumerate() {
            if let Some(hash) = hash
                && !self.seen.insert(hash)
            {
                duplicates.push(row as u32);
            }
        }
        Ok(duplicates)
    }
}

/// A foreign key checked against a dimension, with a cache of keys known to exist.
#[derive(Debug)]
pub struct Relationship {
    column: String,
    references: TableName,
    reference_column: String,
    present: lru::LruCache<String, ()>,
}

impl Relationship {
    pub fn new(column: String, references: TableName, reference_column: String) -> Self {
        Self {
            column,
            references,
            reference_column,
            present: lru::LruCache::new(NonZeroUsize::new(100_000).expect("non-zero")),
        }
    }

    /// The rows whose non-NULL key the dimension does not hold.
    pub async fn check(
        &mut self,
        context: &SessionContext,
        batch: &RecordBatch,
    ) -> Result<Vec<u32>> {
        let column = batch
            .column_by_name(&self.column)
            .ok_or_else(|| storage(&self.column, "the batch has no such column"))?;
        let quoted = !column.data_type().is_numeric();
        let text = arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|err| storage(&self.column, err))?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("Utf8")
            .clone();
        // Keys known to exist for this batch (cached, or found now), whatever
        // the cache evicts while the batch is looked up.
        let mut found_now: HashSet<String> = HashSet::new();
        let mut unknown: HashSet<&str> = HashSet::new();
        for row in (0..text.len()).filter(|&row| text.is_valid(row)) {
            let key = text.value(row);
            if self.present.get(key).is_some() {
                found_now.insert(key.to_string());
            } else {
                unknown.insert(key);
            }
        }
        for chunk in unknown.into_iter().collect::<Vec<_>>().chunks(1000) {
            let list: Vec<String> = chunk
                .iter()
                .map(|key| {
                    if quoted {
                        format!("'{}'", key.replace('\'', "''"))
                    } else {
                        (*key).to_string()
                    }
                })
                .collect();
            let reference = format!("\"{}\"", self.reference_column.replace('"', "\"\""));
            let sql = format!(
                "SELECT DISTINCT CAST({reference} AS VARCHAR) FROM {} WHERE {reference} IN ({})",
                self.references,
                list.join(", ")
            );
            let failed = |err: datafusion::error::DataFusionError| QualityError::Storage {
                what: format!("the relationship {} → {}", self.column, self.references),
                message: err.to_string(),
            };
            let batches = context
                .sql(&sql)
                .await
                .map_err(failed)?
                .collect()
                .await
                .map_err(failed)?;
            for found in batches {
                let found = arrow::compute::cast(found.column(0), &DataType::Utf8)
                    .map_err(|err| storage(&self.column, err))?;
                let found = found.as_any().downcast_ref::<StringArray>().expect("Utf8");
                for row in 0..found.len() {
                    if found.is_valid(row) {
                        self.present.put(found.value(row).to_string(), ());
                        found_now.insert(found.value(row).to_string());
                    }
                }
            }
        }
        Ok((0..text.len())
            .filter(|&row| text.is_valid(row) && !found_now.contains(text.value(row)))
            .map(|row| row as u32)
            .collect())
    }

    pub fn references(&self) -> &TableName {
        &self.references
    }
}

fn storage(what: &str, err: impl std::fmt::Display) -> QualityError {
    QualityError::Storage {
        what: what.to_string(),
        message: err.to_string(),
    }
}
