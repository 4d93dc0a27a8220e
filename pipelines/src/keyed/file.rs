//! A keyed state file: one Arrow IPC file of `(key_group, key, value)` rows,
//! sorted by key group and key. A base file holds every key of an operator at
//! one checkpoint; a delta file holds the keys written since the checkpoint
//! before, a NULL value marking a deleted key.
//!
//! ```text
//!   key_group: UInt16 │ key: Binary │ value: Binary (NULL = deleted)
//!   rows sorted by (key_group, key), in batches of ROWS_PER_BATCH
//! ```
//!
//! The IPC file format ends with a footer, so a file cut short by a crash
//! does not open rather than restoring part of the state.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, BinaryArray, BinaryBuilder, RecordBatch, UInt16Array, UInt16Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

use crate::error::{PipelineError, Result};

const ROWS_PER_BATCH: usize = 8_192;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("key_group", DataType::UInt16, false),
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, true),
    ]))
});

pub(super) fn io_error(path: &Path, source: std::io::Error) -> PipelineError {
    PipelineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a state file from entries given in key order.
pub struct FileSink {
    path: std::path::PathBuf,
    writer: FileWriter<BufWriter<File>>,
    groups: UInt16Builder,
    keys: BinaryBuilder,
    values: BinaryBuilder,
    pending: usize,
    pub entries: u64,
}

impl FileSink {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|err| io_error(path, err))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: FileWriter::try_new(BufWriter::new(file), &SCHEMA)?,
            groups: UInt16Builder::with_capacity(ROWS_PER_BATCH),
            keys: BinaryBuilder::new(),
            values: BinaryBuilder::new(),
            pending: 0,
            entries: 0,
        })
    }

    /// One key and its value, or `None` for a deleted key.
    pub fn push(&mut self, group: u16, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.groups.append_value(group);
        self.keys.append_value(key);
        self.values.append_option(value);
        self.pending += 1;
        self.entries += 1;
        if self.pending == ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            SCHEMA.clone(),
            vec![
                Arc::new(self.groups.finish()),
                Arc::new(self.keys.finish()),
                Arc::new(self.values.finish()),
            ],
        )?;
        self.writer.write(&batch)?;
        self.pending = 0;
        Ok(())
    }

    /// Writes the footer; returns how many entries the file holds and its
    /// size. Not synced: the file is a local copy, and the uploaded one is
    /// what a checkpoint names.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.flush()?;
        self.writer.finish()?;
        let file = self
            .writer
            .into_inner()?
            .into_inner()
            .map_err(|err| io_error(&self.path, err.into_error()))?;
        let bytes = file
            .metadata()
            .map_err(|err| io_error(&self.path, err))?
            .len();
        Ok((self.entries, bytes))
    }
}

/// The columns of a state file.
pub(super) fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Opens a state file for reading its batches in order, checking its columns.
pub(super) fn open(path: &Path) -> Result<FileReader<BufReader<File>>> {
    let file = File::open(path).map_err(|err| io_error(path, err))?;
    let reader = FileReader::try_new(BufReader::new(file), None).map_err(|err| {
        PipelineError::State(format!(
            "{} is not a whole state file: {err}",
            path.display()
        ))
    })?;
    if reader.schema() != *SCHEMA {
        return Err(PipelineError::State(format!(
            "{} is not a keyed state file (its columns are {})",
            path.display(),
            reader.schema()
        )));
    }
    Ok(reader)
}

/// The error of a file whose entries are not in key order.
pub(super) fn unsorted(path: &Path) -> PipelineError {
    PipelineError::State(format!(
        "keyed state file {} is not sorted by key group and key",
        path.display()
    ))
}

/// Reads a state file's entries in order: `(key_group, key, value)`. Each
/// entry must follow the one before in key order, or the file is refused.
pub fn read(
    path: &Path,
    mut each: impl FnMut(u16, &[u8], Option<&[u8]>) -> Result<()>,
) -> Result<u64> {
    let reader = open(path)?;
    let mut entries = 0;
    let mut previous: Option<(u16, Vec<u8>)> = None;
    for batch in reader {
        let batch = batch?;
        let groups = column::<UInt16Array>(&batch, 0);
        let keys = column::<BinaryArray>(&batch, 1);
        let values = column::<BinaryArray>(&batch, 2);
        for row in 0..batch.num_rows() {
            let (group, key) = (groups.value(row), keys.value(row));
            match &mut previous {
                Some((last_group, last_key))
                    if (*last_group, last_key.as_slice()) >= (group, key) =>
                {
                    return Err(unsorted(path));
                }
                Some((last_group, last_key)) => {
                    *last_group = group;
                    last_key.clear();
                    last_key.extend_from_slice(key);
                }
                None => previous = Some((group, key.to_vec())),
            }
            let value = values.is_valid(row).then(|| values.value(row));
            each(group, key, value)?;
        }
        entries += batch.num_rows() as u64;
    }
    Ok(entries)
}

pub(super) fn column<T: 'static>(batch: &RecordBatch, index: usize) -> &T {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<T>()
        .expect("the schema was checked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_deletions_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("delta");
        let mut sink = FileSink::create(&path).unwrap();
        let written: Vec<(u16, Vec<u8>, Option<Vec<u8>>)> = (0..20_000u32)
            .map(|i| {
                let value = (i % 7 != 0).then(|| i.to_le_bytes().to_vec());
                ((i / 1000) as u16, i.to_be_bytes().to_vec(), value)
            })
            .collect();
        for (group, key, value) in &written {
            sink.push(*group, key, value.as_deref()).unwrap();
        }
        assert_eq!(sink.finish().unwrap().0, 20_000);
        let mut read_back = Vec::new();
        let count = read(&path, |group, key, value| {
            read_back.push((group, key.to_vec(), value.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 20_000);
        assert_eq!(read_back, written);
    }

    #[test]
    fn a_file_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base");
        let mut sink = FileSink::create(&path).unwrap();
        for i in 0..10_000u32 {
            sink.push(0, &i.to_be_bytes(), Some(b"v")).unwrap();
        }
        sink.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = read(&path, |_, _, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("is not a whole state file"), "{err}");
    }
}
