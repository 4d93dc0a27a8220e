//! Watermarks, as Flink defines them: each source partition tracks the largest
//! event time it has seen; the pipeline's watermark is the smallest of the
//! partitions' `max event time - delay`. A partition that has been quiet for
//! the idle timeout stops holding the watermark back, and counts again as soon
//! as it delivers a record.
//!
//! ```text
//!   p0: max 10:00:07 ─┐
//!   p1: max 10:00:04 ─┼─▶ min = 10:00:04 ─▶ - delay 5 s ─▶ watermark 09:59:59
//!   p2: idle 30 s     ┘   (left out)
//! ```
//!
//! The watermark never goes backwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_ms: Option<i64>,
    last_record: Instant,
}

/// The watermark of one source.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    delay_ms: i64,
    idle_timeout: Duration,
    partitions: BTreeMap<i32, PartitionClock>,
    emitted: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker for `partitions`, all considered active from `now`.
    pub fn new(partitions: &[i32], delay_ms: i64, idle_timeout: Duration, now: Instant) -> Self {
        Self {
            delay_ms,
            idle_timeout,
            partitions: partitions
                .iter()
                .map(|&p| {
                    (
                        p,
                        PartitionClock {
                            max_event_ms: None,
                            last_record: now,
                        },
                    )
                })
                .collect(),
            emitted: None,
        }
    }

    /// Records that `partition` delivered records whose largest event time is `max_event_ms`.
    pub fn observe(&mut self, partition: i32, max_event_ms: Option<i64>, now: Instant) {
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_ms: None,
            last_record: now,
        });
        clock.last_record = now;
        if let Some(event) = max_event_ms {
            clock.max_event_ms = Some(clock.max_event_ms.map_or(event, |m| m.max(event)));
        }
    }

    /// The watermark at `now`, in milliseconds since the epoch; `None` until
    /// every active partition has seen an event time.
    pub fn current(&mut self, now: Instant) -> Option<i64> {
        let active: Vec<&PartitionClock> = self
            .partitions
            .values()
            .filter(|clock| now.duration_since(clock.last_record) < self.idle_timeout)
            .collect();
        let candidate = if active.is_empty() {
            // Every partition is idle: the largest seen event time holds.
            self.partitions
                .values()
                .filter_map(|c| c.max_event_ms)
                .max()
        } else if active.iter().all(|c| c.max_event_ms.is_some()) {
            active.iter().filter_map(|c| c.max_event_ms).min()
        } else {
            None
        }
        .map(|event| event - self.delay_ms);
        if let Some(candidate) = candidate {
            self.emitted = Some(self.emitted.map_or(candidate, |w| w.max(candidate)));
        }
        self.emitted
    }

    /// Continues a watermark the rows came with (an upstream pipeline's, which
    /// wrote them): the watermark is at least `watermark` from now on.
    pub fn carry(&mut self, watermark: i64) {
        self.emitted = Some(self.emitted.map_or(watermark, |w| w.max(watermark)));
    }

    /// Whether every partition has been quiet for the idle timeout.
    pub fn all_idle(&self, now: Instant) -> bool {
        self.partitions
            .values()
            .all(|clock| now.duration_since(clock.last_record) >= self.idle_timeout)
    }

    /// Saves each partition's largest event time and the watermark, for a checkpoint.
    pub fn encode(&self, out: &mut ByteWriter) {
        out.option(self.emitted.as_ref(), |out, w| out.i64(*w));
        out.u64(self.partitions.len() as u64);
        for (partition, clock) in &self.partitions {
            out.i64(i64::from(*partition));
            out.option(clock.max_event_ms.as_ref(), |out, m| out.i64(*m));
        }
    }

    /// Restores what [`encode`](Self::encode) saved; partitions count as active from `now`.
    pub fn restore(&mut self, input: &mut ByteReader<'_>, now: Instant) -> Result<()> {
        self.emitted = input.option(|r| r.i64())?;
        for _ in 0..input.u64()? {
            let partition = input.i64()? as i32;
            let max_event_ms = input.option(|r| r.i64())?;
            self.partitions.insert(
                partition,
                PartitionClock {
                    max_event_ms,
                    last_record: now,
                },
            );
        }
        Ok(())
    }
}

/// The watermark of a pipeline whose windows run on processing time: the
/// wall clock, stepped down to the last instant at which windows can close,
/// so that it moves (and commits) only when one may have; and until when
/// windows may be open, from when rows were last read.
///
/// ```text
///   tick 10 s:  clock 12:00:17.3 ──▶ watermark 12:00:09.999 (closes windows ending by 12:00:10)
///   rows read at 12:00:17.3, windows reach 10 s past a row ──▶ open until 12:00:27.3 at most
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingClock {
    tick_ms: i64,
    reach_ms: i64,
    open_until: i64,
}

impl ProcessingClock {
    /// A clock stepping by `tick_ms`, over windows that end at most `reach_ms`
    /// after a row's time; the state it starts from may hold windows open
    /// until `now_ms + reach_ms`.
    pub fn new(tick_ms: i64, reach_ms: i64, now_ms: i64) -> Self {
        Self {
            tick_ms: tick_ms.max(1),
            reach_ms,
            open_until: now_ms.saturating_add(reach_ms),
        }
    }

    /// Rows are read (and fall into windows) from `now_ms` on: windows may
    /// be open until their reach past it, and a tick more (the rows are
    /// assigned a moment later than this is noted).
    pub fn read_rows_at(&mut self, now_ms: i64) {
        let until = now_ms
            .saturating_add(self.reach_ms)
            .saturating_add(self.tick_ms);
        self.open_until = self.open_until.max(until);
    }

    /// Whether a window may still be open once the watermark is `watermark`.
    pub fn may_hold_windows_after(&self, watermark: i64) -> bool {
        watermark < self.open_until - 1
    }

    /// The watermark at `now_ms` on the wall clock.
    pub fn watermark_at(&self, now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(self.tick_ms) - 1
    }
}

/// Milliseconds since the epoch, by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processing_clock_steps_to_the_last_window_end() {
        let mut clock = ProcessingClock::new(10_000, 10_000, 0);
        assert_eq!(clock.watermark_at(17_300), 9_999);
        assert_eq!(clock.watermark_at(20_000), 19_999);
        assert_eq!(clock.watermark_at(19_999), 9_999);
        // Rows read at 17.3 s fall into windows ending by 27.3 s at most (a tick
        // more is allowed for the moment they are assigned).
        clock.read_rows_at(17_300);
        assert!(clock.may_hold_windows_after(29_999));
        assert!(!clock.may_hold_windows_after(39_999));
    }

    #[test]
    fn the_slowest_active_partition_sets_the_watermark() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(&[0, 1], 5_000, Duration::from_secs(30), start);
        tracker.observe(0, Some(100_000), start);
        assert_eq!(
            tracker.current(start),
            None,
            "partition 1 has no event time yet"
        );
        tracker.observe(1, Some(40_000), start);
        assert_eq!(tracker.current(start), Some(35_000));
        tracker.observe(1, Some(90_000), start);
        assert_eq!(tracker.current(start), Some(85_000));
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back_and_it_never_goes_back() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(&[0, 1], 0, Duration::from_secs(10), start);
        tracker.observe(0, Some(50_000), start);
        tracker.observe(1, Some(20_000), start);
        assert_eq!(tracker.current(start), Some(20_000));
        let later = start + Duration::from_secs(11);
        tracker.observe(0, Some(60_000), later);
        assert_eq!(
            tracker.current(later),
            Some(60_000),
            "partition 1 went idle"
        );
        tracker.observe(1, Some(25_000), later);
        assert_eq!(
            tracker.current(later),
            Some(60_000),
            "a returning partition cannot move it back"
        );
    }
}
