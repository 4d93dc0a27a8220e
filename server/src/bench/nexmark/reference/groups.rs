//! Unbounded GROUP BY queries (q15–q17): each group's values once every bid
//! is in, which is what stands in the target at the end of the run (each
//! change took back the values emitted before).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;

use super::{batch, column, longs, stream_rows};
use crate::bench::nexmark::NexmarkOptions;

/// A group's counts, overall and per price rank (below 10,000; below
/// 1,000,000; the rest), of bids, distinct bidders and distinct auctions.
#[derive(Debug, Default)]
struct Counts {
    bids: [i64; 4],
    bidders: [HashSet<i64>; 4],
    auctions: [HashSet<i64>; 4],
}

impl Counts {
    fn add(&mut self, price: i64, bidder: i64, auction: i64) {
        for at in [0, price_rank(price)] {
            self.bids[at] += 1;
            self.bidders[at].insert(bidder);
            self.auctions[at].insert(auction);
        }
    }

    /// The twelve counts, in the queries' column order.
    fn columns(&self) -> [i64; 12] {
        let mut out = [0; 12];
        for at in 0..4 {
            out[at] = self.bids[at];
            out[4 + at] = self.bidders[at].len() as i64;
            out[8 + at] = self.auctions[at].len() as i64;
        }
        out
    }
}

/// The rank of a price, from 1: below 10,000; below 1,000,000; the rest.
fn price_rank(price: i64) -> usize {
    match price {
        ..10_000 => 1,
        10_000..1_000_000 => 2,
        _ => 3,
    }
}

/// `DATE_FORMAT(ms, pattern)` in UTC, with chrono's pattern letters.
fn format(ms: i64, pattern: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time within chrono's range")
        .format(pattern)
        .to_string()
}

/// Every bid as (its day, price, bidder, auction, channel, time).
fn each_bid(
    options: NexmarkOptions,
    mut each: impl FnMut(String, i64, i64, i64, &str, i64),
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let price: Int64Array = column(rows, "price");
        let bidder: Int64Array = column(rows, "bidder");
        let auction: Int64Array = column(rows, "auction");
        let channel: StringArray = column(rows, "channel");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for row in 0..rows.num_rows() {
            each(
                format(time.value(row), "%Y-%m-%d"),
                price.value(row),
                bidder.value(row),
                auction.value(row),
                channel.value(row),
                time.value(row),
            );
        }
        Ok(())
    })
}

/// The twelve count columns of `groups`, in order.
fn count_columns<'a>(groups: impl Iterator<Item = &'a Counts>) -> Vec<ArrayRef> {
    let rows: Vec<[i64; 12]> = groups.map(Counts::columns).collect();
    (0..12)
        .map(|at| longs(rows.iter().map(|row| row[at]).collect()))
        .collect()
}

fn texts(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// q15: per day, bids, bidders and auctions, overall and per price rank.
pub(super) fn q15(options: NexmarkOptions) -> anyhow::Result<RecordBatch> {
    let mut days: HashMap<String, Counts> = HashMap::new();
    each_bid(options, |day, price, bidder, auction, _, _| {
        days.entry(day).or_default().add(price, bidder, auction);
    })?;
    let (days, counts): (Vec<String>, Vec<Counts>) = days.into_iter().unzip();
    let mut columns = vec![texts(days)];
    columns.extend(count_columns(counts.iter()));
    Ok(batch(columns))
}

/// q16: q15's counts per channel and day, with the day's last minute (`HH:mm`).
pub(super) fn q16(options: NexmarkOptions) -> anyhow::Result<RecordBatch> {
    let mut groups: HashMap<(String, String), (String, Counts)> = HashMap::new();
    each_bid(options, |day, price, bidder, auction, channel, time| {
        let (minute, counts) = groups.entry((channel.to_string(), day)).or_default();
        let this = format(time, "%H:%M");
        if this > *minute {
            *minute = this;
        }
        counts.add(price, bidder, auction);
    })?;
    let (mut channels, mut days, mut minutes, mut counts) = (vec![], vec![], vec![], vec![]);
    for ((channel, day), (minute, group)) in groups {
        channels.push(channel);
        days.push(day);
        minutes.push(minute);
        counts.push(group);
    }
    let mut columns = vec![texts(channels), texts(days), texts(minutes)];
    columns.extend(count_columns(counts.iter()));
    Ok(batch(columns))
}

/// q17: per auction and day, bids overall and per price rank, and the
/// prices' MIN, MAX, AVG (a BIGINT, truncated as Flink's) and SUM.
pub(super) fn q17(options: NexmarkOptions) -> anyhow::Result<RecordBatch> {
    #[derive(Default)]
    struct Prices {
        bids: [i64; 4],
        min: Option<i64>,
        max: Option<i64>,
        sum: i64,
    }
    let mut groups: HashMap<(i64, String), Prices> = HashMap::new();
    each_bid(options, |day, price, _, auction, _, _| {
        let group = groups.entry((auction, day)).or_default();
        group.bids[0] += 1;
        group.bids[price_rank(price)] += 1;
        group.min = Some(group.min.map_or(price, |min| min.min(price)));
        group.max = Some(group.max.map_or(price, |max| max.max(price)));
        group.sum += price;
    })?;
    let mut columns: Vec<Vec<i64>> = vec![Vec::new(); 9];
    let mut days = Vec::new();
    for ((auction, day), group) in groups {
        days.push(day);
        let values = [
            auction,
            group.bids[0],
            group.bids[1],
            group.bids[2],
            group.bids[3],
            group.min.unwrap_or_default(),
            group.max.unwrap_or_default(),
            group.sum / group.bids[0],
            group.sum,
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    let mut arrays: Vec<ArrayRef> = columns.into_iter().map(longs).collect();
    arrays.insert(1, texts(days));
    Ok(batch(arrays))
}
