//! Ranking queries (q18, q19): per partition, the rows that rank first once
//! every bid is in, found in one pass over the bids' numbers and times, then
//! read in a second pass. Ties rank by arrival, earlier first: the order of
//! event numbers (one partition of generated events).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int64Array, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;

use super::{batch, column, pick, stream_rows};
use crate::bench::nexmark::NexmarkOptions;

const BID_COLUMNS: [&str; 7] = [
    "auction", "bidder", "price", "channel", "url", "dateTime", "extra",
];

/// q18: each (bidder, auction)'s last bid by event time; of bids at the same
/// time, the one that arrived last.
pub(super) fn q18(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // (bidder, auction) → (time, event number) of the last bid
    let mut last: HashMap<(i64, i64), (i64, u64)> = HashMap::new();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let bidder: Int64Array = column(rows, "bidder");
        let auction: Int64Array = column(rows, "auction");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for (row, &number) in numbers.iter().enumerate() {
            let bid = (time.value(row), number);
            let kept = last
                .entry((bidder.value(row), auction.value(row)))
                .or_insert(bid);
            if bid.0 >= kept.0 {
                *kept = bid;
            }
        }
        Ok(())
    })?;
    let mut winners: Vec<u64> = last.into_values().map(|(_, number)| number).collect();
    winners.sort_unstable();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let at: Vec<u32> = (0..rows.num_rows())
            .filter(|&row| winners.binary_search(&numbers[row]).is_ok())
            .map(|row| row as u32)
            .collect();
        add(batch(pick(rows, &at, &BID_COLUMNS)?))
    })
}

/// How many bids of each auction q19 keeps.
const TOP: usize = 10;

/// q19: each auction's ten highest bids, numbered from 1 by price (of equal
/// prices, the earlier bid first).
pub(super) fn q19(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // auction → its highest (price, event number), highest first
    let mut top: HashMap<i64, Vec<(i64, u64)>> = HashMap::new();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let auction: Int64Array = column(rows, "auction");
        let price: Int64Array = column(rows, "price");
        for (row, &number) in numbers.iter().enumerate() {
            let ranked = top.entry(auction.value(row)).or_default();
            let price = price.value(row);
            // After every bid of at least its price.
            let at = ranked.partition_point(|&(kept, _)| kept >= price);
            if at < TOP {
                ranked.insert(at, (price, number));
                ranked.truncate(TOP);
            }
        }
        Ok(())
    })?;
    let rank_of: HashMap<u64, i64> = top
        .into_values()
        .flat_map(|ranked| {
            ranked
                .into_iter()
                .enumerate()
                .map(|(rank, (_, number))| (number, rank as i64 + 1))
        })
        .collect();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let (mut at, mut ranks) = (vec![], vec![]);
        for (row, number) in numbers.iter().enumerate() {
            if let Some(&rank) = rank_of.get(number) {
                at.push(row as u32);
                ranks.push(rank);
            }
        }
        let mut columns = pick(rows, &at, &BID_COLUMNS)?;
        columns.push(Arc::new(Int64Array::from(ranks)));
        add(batch(columns))
    })
}
