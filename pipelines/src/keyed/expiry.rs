//! Flink's state TTL (`SET 'table.exec.state.ttl'`) for an operator's keyed
//! state, by processing time: an entry not written for the TTL is treated as
//! gone when read, and each commit deletes such entries from one key group
//! in turn.
//!
//! ```text
//!   read:   written_ms + ttl <= now ─▶ as if not there (Flink's NeverReturnExpired)
//!   write:  written_ms = now (a key written again starts its time over)
//!   commit: key group g = next in turn ─▶ delete its expired entries   (every group within 128 commits)
//! ```

use std::sync::atomic::{AtomicU16, Ordering};

use super::{KEY_GROUPS, Slot, decode_count};
use crate::error::{PipelineError, Result};

/// A counted entry as keyed state keeps it, stamped for expiry: how many came,
/// when the last came (ms since the epoch), then the entry's own bytes.
pub fn counted(count: u64, written_ms: i64, rest: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + rest.len());
    value.extend_from_slice(&count.to_be_bytes());
    value.extend_from_slice(&written_ms.to_be_bytes());
    value.extend_from_slice(rest);
    value
}

/// Appends `part` to `out` behind its length, for [`take_part`] to read back.
pub fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

/// The next part [`push_part`] wrote at the start of `rest`, which moves past
/// it; `what` names the value in errors.
pub fn take_part(rest: &mut &[u8], what: &str) -> Result<Vec<u8>> {
    let truncated = || PipelineError::State(format!("{what} cut short in keyed state"));
    let (len, after) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
    let len = u32::from_be_bytes(*len) as usize;
    let part = after.get(..len).ok_or_else(truncated)?.to_vec();
    *rest = &after[len..];
    Ok(part)
}

/// A value [`counted`] wrote, read back.
pub struct Counted<'a> {
    pub count: u64,
    pub written_ms: i64,
    pub rest: &'a [u8],
}

/// Reads a value [`counted`] wrote; `what` names it in errors.
pub fn read_counted<'a>(value: &'a [u8], what: &str) -> Result<Counted<'a>> {
    if value.len() < 16 {
        return Err(PipelineError::State(format!(
            "{what} of {} bytes in keyed state (16 or more expected)",
            value.len()
        )));
    }
    let (count, rest) = value.split_at(8);
    let (written, rest) = rest.split_at(8);
    Ok(Counted {
        count: decode_count(count, what)?,
        written_ms: i64::from_be_bytes(written.try_into().expect("8 bytes")),
        rest,
    })
}

/// When an operator's keyed entries expire, if ever.
#[derive(Debug)]
pub struct Expiry {
    ttl_ms: Option<i64>,
    /// The key group the next clean-up goes through.
    next_group: AtomicU16,
    /// The wall clock, in ms since the epoch (a test's own clock).
    clock: fn() -> i64,
}

impl Default for Expiry {
    fn default() -> Self {
        Self::after(None)
    }
}

/// The wall clock, in ms since the epoch.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

impl Expiry {
    /// Entries expire `ttl_ms` after their last write; `None`: never.
    pub fn after(ttl_ms: Option<i64>) -> Self {
        Self {
            ttl_ms,
            next_group: AtomicU16::new(0),
            clock: wall_clock_ms,
        }
    }

    /// The same, reading the time from `clock` (ms since the epoch).
    #[cfg(test)]
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    pub fn ttl_ms(&self) -> Option<i64> {
        self.ttl_ms
    }

    /// The TTL as `strata explain` shows it on an operator:
    /// `"; {what} kept 1h after {since}"`, or nothing without one.
    pub fn describe(&self, what: &str, since: &str) -> String {
        match self.ttl_ms {
            Some(ttl) => format!(
                "; {what} kept {} after {since}",
                humantime::format_duration(std::time::Duration::from_millis(ttl.max(0) as u64))
            ),
            None => String::new(),
        }
    }

    /// Now, in ms since the epoch.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Whether an entry last written at `written_ms` has expired at `now_ms`.
    pub fn expired(&self, written_ms: i64, now_ms: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| written_ms.saturating_add(ttl) <= now_ms)
    }

    /// Deletes the expired entries of the next key group in turn from an
    /// operator's keyed state; `written_of` reads an entry's last write from
    /// its value (`None`: unknown, kept).
    pub fn clean(
        &self,
        slot: &Slot,
        written_of: impl Fn(&[u8]) -> Result<Option<i64>>,
    ) -> Result<()> {
        if self.ttl_ms.is_none() {
            return Ok(());
        }
        let group = self.next_group.fetch_add(1, Ordering::Relaxed) % KEY_GROUPS;
        let now = self.now();
        slot.with(|state| {
            let mut expired = Vec::new();
            for entry in state.group(group) {
                let (key, value) = entry?;
                if written_of(&value)?.is_some_and(|written| self.expired(written, now)) {
                    expired.push(key);
                }
            }
            state.write_grouped(expired.iter().map(|key| (group, key.as_slice(), None)))
        })
    }
}
