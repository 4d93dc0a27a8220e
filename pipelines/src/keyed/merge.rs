//! Compaction as a merge: a base and the files after it, sorted files on
//! local disk, merged into the next base; or deltas alone merged into a run,
//! which keeps deleted keys (an older file under it may still hold them). It
//! reads no working store, so it holds no snapshot open (which would keep
//! every memtable sealed meanwhile).
//!
//! ```text
//!   base-j  ─┐
//!   run-m   ─┤
//!   delta-a ─┼─ one batch per file in memory ─▶ smallest key first; of equal keys the
//!   delta-k ─┘                                  newest file's value; a deleted key dropped ─▶ base-k
//!   delta-a … delta-k ─▶ the same, a deleted key kept ─▶ run-k
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BinaryArray, RecordBatch, UInt16Array};
use arrow::ipc::reader::FileReader;

use super::file::{FileSink, column, open, unsorted};
use super::with_group;
use crate::error::Result;

/// Reads one sorted file a batch at a time.
struct Cursor {
    path: PathBuf,
    reader: FileReader<BufReader<File>>,
    batch: RecordBatch,
    row: usize,
}

impl Cursor {
    fn open(path: &Path) -> Result<Option<Self>> {
        let mut cursor = Self {
            path: path.to_path_buf(),
            reader: open(path)?,
            batch: RecordBatch::new_empty(super::file::schema()),
            row: 0,
        };
        Ok(cursor.fill()?.then_some(cursor))
    }

    /// Moves to the next non-empty batch; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        while self.row >= self.batch.num_rows() {
            match self.reader.next() {
                Some(batch) => {
                    self.batch = batch?;
                    self.row = 0;
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    fn stored_key(&self) -> Vec<u8> {
        let groups = column::<UInt16Array>(&self.batch, 0);
        let keys = column::<BinaryArray>(&self.batch, 1);
        with_group(groups.value(self.row), keys.value(self.row))
    }

    fn value(&self) -> Option<&[u8]> {
        let values = column::<BinaryArray>(&self.batch, 2);
        values.is_valid(self.row).then(|| values.value(self.row))
    }

    /// Steps to the next row; its key, or `None` at the end. A key that does
    /// not follow the last is an error naming the file.
    fn advance(&mut self, last: &[u8]) -> Result<Option<Vec<u8>>> {
        self.row += 1;
        if !self.fill()? {
            return Ok(None);
        }
        let key = self.stored_key();
        if key.as_slice() <= last {
            return Err(unsorted(&self.path));
        }
        Ok(Some(key))
    }
}

/// What a merge writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// Every key: deleted keys are dropped.
    Base,
    /// The keys the files changed: deleted keys are kept, as deletes.
    Run,
}

/// Merges `files` (oldest first) into a file at `out`; returns its entries and bytes.
pub fn merge(files: &[PathBuf], out: &Path, merged: Merged) -> Result<(u64, u64)> {
    let mut cursors = Vec::with_capacity(files.len());
    // Smallest key first; of equal keys, the newest file (highest index) first.
    let mut heap = BinaryHeap::new();
    for path in files {
        if let Some(cursor) = Cursor::open(path)? {
            heap.push(Reverse((cursor.stored_key(), Reverse(cursors.len()))));
            cursors.push(cursor);
        }
    }
    let mut sink = FileSink::create(out)?;
    let mut stepped = Vec::with_capacity(cursors.len());
    while let Some(Reverse((key, Reverse(newest)))) = heap.pop() {
        let value = cursors[newest].value();
        if value.is_some() || merged == Merged::Run {
            sink.push(u16::from_be_bytes([key[0], key[1]]), &key[2..], value)?;
        }
        stepped.push(newest);
        while let Some(Reverse((next, _))) = heap.peek()
            && *next == key
        {
            let Some(Reverse((_, Reverse(older)))) = heap.pop() else {
                unreachable!("peeked")
            };
            stepped.push(older);
        }
        for index in stepped.drain(..) {
            if let Some(next) = cursors[index].advance(&key)? {
                heap.push(Reverse((next, Reverse(index))));
            }
        }
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's rows: key group, key, value (`None`: deleted).
    type Row<'a> = (u16, &'a [u8], Option<&'a [u8]>);

    fn write(path: &Path, rows: &[Row<'_>]) {
        let mut sink = FileSink::create(path).unwrap();
        for (group, key, value) in rows {
            sink.push(*group, key, *value).unwrap();
        }
        sink.finish().unwrap();
    }

    #[test]
    fn the_newest_value_of_a_key_wins_and_deleted_keys_are_dropped_from_a_base_only() {
        let dir = tempfile::tempdir().unwrap();
        let [base, first, second, out] = ["base", "d1", "d2", "out"].map(|n| dir.path().join(n));
        write(
            &base,
            &[
                (0, b"a", Some(b"1")),
                (0, b"b", Some(b"1")),
                (1, b"a", Some(b"1")),
            ],
        );
        write(
            &first,
            &[
                (0, b"b", Some(b"2")),
                (0, b"c", Some(b"2")),
                (1, b"a", None),
            ],
        );
        write(&second, &[(0, b"b", Some(b"3")), (2, b"z", Some(b"3"))]);
        let (entries, _) =
            merge(&[base, first.clone(), second.clone()], &out, Merged::Base).unwrap();
        let expected: Vec<(u16, Vec<u8>, Option<Vec<u8>>)> = vec![
            (0, b"a".to_vec(), Some(b"1".to_vec())),
            (0, b"b".to_vec(), Some(b"3".to_vec())),
            (0, b"c".to_vec(), Some(b"2".to_vec())),
            (2, b"z".to_vec(), Some(b"3".to_vec())),
        ];
        assert_eq!(read(&out), expected);
        assert_eq!(entries, 4);
        // Deltas merged into a run keep the delete, which must still hide the base's key.
        let run = dir.path().join("run");
        let (entries, _) = merge(&[first, second], &run, Merged::Run).unwrap();
        let expected: Vec<(u16, Vec<u8>, Option<Vec<u8>>)> = vec![
            (0, b"b".to_vec(), Some(b"3".to_vec())),
            (0, b"c".to_vec(), Some(b"2".to_vec())),
            (1, b"a".to_vec(), None),
            (2, b"z".to_vec(), Some(b"3".to_vec())),
        ];
        assert_eq!(read(&run), expected);
        assert_eq!(entries, 4);
    }

    fn read(path: &Path) -> Vec<(u16, Vec<u8>, Option<Vec<u8>>)> {
        let mut rows = Vec::new();
        super::super::file::read(path, |group, key, value| {
            rows.push((group, key.to_vec(), value.map(<[u8]>::to_vec)));
            Ok(())
        })
        .unwrap();
        rows
    }

    #[test]
    fn a_file_out_of_order_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let [base, out] = ["base", "out"].map(|n| dir.path().join(n));
        write(&base, &[(0, b"b", Some(b"1")), (0, b"a", Some(b"1"))]);
        let err = merge(std::slice::from_ref(&base), &out, Merged::Base)
            .unwrap_err()
            .to_string();
        assert!(err.contains("base") && err.contains("not sorted"), "{err}");
    }
}
