//! How a regular join keeps a row in its keyed state.
//!
//! ```text
//!   key:   len k ‖ k ‖ side ‖ 128-bit hash of the row          (in the key group of k)
//!   value: how many such rows ‖ when last written ‖ [matches] ‖ the row
//!            └ matches: how many rows of the other stream it joins, kept only for
//!              a side the join pads with NULLs (a LEFT JOIN's left side): its
//!              NULL-padded row is out while the count is 0
//! ```

use twox_hash::XxHash64;

use crate::error::{PipelineError, Result};
use crate::keyed::{counted, read_counted};
use crate::operator::Side;

/// What the state's values are, in errors.
const ROW_COUNT: &str = "a regular join's row count";

/// A side's tag in the state's keys.
pub(super) fn tag(side: Side) -> u8 {
    match side {
        Side::Left => 0,
        Side::Right => 1,
    }
}

/// The start of the state's keys of a join key's rows of one side.
pub(super) fn scope(key: &[u8], side: Side) -> Vec<u8> {
    let mut scope = Vec::with_capacity(key.len() + 5 + 16);
    scope.extend_from_slice(&(key.len() as u32).to_be_bytes());
    scope.extend_from_slice(key);
    scope.push(tag(side));
    scope
}

/// A row's key in the state: its scope and a 128-bit hash of its bytes (the
/// row itself, which may be long, is in the value).
pub(super) fn row_key(key: &[u8], side: Side, row: &[u8]) -> Vec<u8> {
    let mut stored = scope(key, side);
    stored.extend_from_slice(&XxHash64::oneshot(0, row).to_be_bytes());
    stored.extend_from_slice(&XxHash64::oneshot(1, row).to_be_bytes());
    stored
}

/// A kept row, as read back.
#[derive(Debug, Clone)]
pub(super) struct StoredRow {
    /// How many such rows are in.
    pub count: u64,
    pub written_ms: i64,
    /// How many rows of the other stream it joins (for a side padded with NULLs).
    pub matches: u64,
    /// The row, as the side's row converter wrote it.
    pub row: Vec<u8>,
}

impl StoredRow {
    /// The value to keep; `padded` keeps the match count.
    pub fn encode(&self, padded: bool, now_ms: i64) -> Vec<u8> {
        let mut rest = Vec::with_capacity(8 + self.row.len());
        if padded {
            rest.extend_from_slice(&self.matches.to_be_bytes());
        }
        rest.extend_from_slice(&self.row);
        counted(self.count, now_ms, &rest)
    }

    /// Reads what [`Self::encode`] wrote with the same `padded`.
    pub fn decode(value: &[u8], padded: bool) -> Result<Self> {
        let kept = read_counted(value, ROW_COUNT)?;
        let (matches, row) = match padded {
            false => (0, kept.rest),
            true => {
                let Some((matches, row)) = kept.rest.split_first_chunk::<8>() else {
                    return Err(PipelineError::State(format!(
                        "{ROW_COUNT} without the match count of a side padded with NULLs"
                    )));
                };
                (u64::from_be_bytes(*matches), row)
            }
        };
        Ok(Self {
            count: kept.count,
            written_ms: kept.written_ms,
            matches,
            row: row.to_vec(),
        })
    }
}

/// When a kept row was last written, for the TTL's cleaning.
pub(super) fn written_ms(value: &[u8]) -> Result<Option<i64>> {
    Ok(Some(read_counted(value, ROW_COUNT)?.written_ms))
}

#[cfg(test)]
mod tests {
    use super::StoredRow;

    #[test]
    fn a_row_reads_back_with_its_match_count_only_where_it_is_kept() {
        let row = StoredRow {
            count: 3,
            written_ms: 0,
            matches: 7,
            row: b"row".to_vec(),
        };
        let padded = StoredRow::decode(&row.encode(true, 42), true).unwrap();
        assert_eq!(
            (padded.count, padded.written_ms, padded.matches, padded.row),
            (3, 42, 7, b"row".to_vec())
        );
        let plain = StoredRow::decode(&row.encode(false, 42), false).unwrap();
        assert_eq!((plain.matches, plain.row), (0, b"row".to_vec()));
        let short = StoredRow::decode(&row.encode(false, 42), true).unwrap_err();
        assert!(short.to_string().contains("match count"), "{short}");
    }
}
