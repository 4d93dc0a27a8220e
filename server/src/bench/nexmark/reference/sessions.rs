//! q11: each bidder's sessions of bids, a session ending once 10 s pass
//! without a bid. As in Flink, a bid at most the gap after the session's
//! last one joins it (windows `[t, t + gap)` that touch merge); a session
//! counts as closed once the final watermark reaches its end − 1.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;

use super::{batch, column, longs, stream_rows};
use crate::bench::nexmark::NexmarkOptions;

const GAP_MS: i64 = 10_000;

/// The closed sessions' rows, and their ends.
pub(super) fn q11(
    options: NexmarkOptions,
    watermark: i64,
) -> anyhow::Result<(RecordBatch, Vec<i64>)> {
    let mut times: HashMap<i64, Vec<i64>> = HashMap::new();
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let bidder: Int64Array = column(rows, "bidder");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for row in 0..rows.num_rows() {
            times
                .entry(bidder.value(row))
                .or_default()
                .push(time.value(row));
        }
        Ok(())
    })?;
    let (mut bidders, mut counts, mut starts, mut ends) = (vec![], vec![], vec![], vec![]);
    for (bidder, mut times) in times {
        times.sort_unstable();
        let mut sessions: Vec<(i64, i64, i64)> = Vec::new();
        for time in times {
            match sessions.last_mut() {
                Some((_, last, count)) if time <= *last + GAP_MS => {
                    *last = time;
                    *count += 1;
                }
                _ => sessions.push((time, time, 1)),
            }
        }
        for (start, last, count) in sessions {
            let end = last + GAP_MS;
            if end - 1 <= watermark {
                bidders.push(bidder);
                counts.push(count);
                starts.push(start);
                ends.push(end);
            }
        }
    }
    let time = |values: Vec<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(values)) };
    let rows = batch(vec![
        longs(bidders),
        longs(counts),
        time(starts),
        time(ends.clone()),
    ]);
    ends.sort_unstable();
    ends.dedup();
    Ok((rows, ends))
}
