//! What each Nexmark query must output, computed plainly from the generated
//! events with loops and hash maps (no SQL, no engine), to check Strata's output.
//!
//! ```text
//!   generator ──bid rows, chunk by chunk──▶ per query: filter / map / per-window maps
//!     ──▶ rows (kept when small) + count + digest, as the blackhole computes them
//! ```
//!
//! Windows count as closed, as in the engine, once the final watermark
//! (`max dateTime − 4 s`, the smallest over the Kafka partitions) passes them:
//! HOP and TUMBLE results when `window_end − 1 ≤ watermark`, q7's (whose
//! bids reach up to `window_end` inclusive) when `window_end ≤ watermark`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{
    Array, ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;
use strata_catalog::connectors::nexmark::{Generator, kind_of, timestamp_ms};
use strata_pipelines::sink::digest::digest;

use super::{EventSource, KAFKA_PARTITIONS, NexmarkOptions, ROW_CHECK_EVENTS};

mod groups;
mod joins;
mod ranks;
mod rows;
mod sessions;

/// Events generated at a time.
pub const CHUNK: u64 = 100_000;

/// The watermark trails the largest event time by 4 s.
const WATERMARK_DELAY_MS: i64 = 4_000;

/// A query's expected output.
#[derive(Debug, Default)]
pub struct Expected {
    /// The rows themselves, for runs small enough to compare row by row.
    pub rows: Vec<RecordBatch>,
    pub count: u64,
    pub digest: u64,
    /// The final watermark of the run.
    pub watermark: i64,
    /// The first bid's event time.
    pub first_time: i64,
    /// The ends of the sessions the run closed, for session windows.
    pub window_ends: Vec<i64>,
}

impl Expected {
    fn add(&mut self, keep: bool, batch: RecordBatch) -> anyhow::Result<()> {
        let (count, digest) = digest(&batch)?;
        self.count += count;
        self.digest = self.digest.wrapping_add(digest);
        if keep && batch.num_rows() > 0 {
            self.rows.push(batch);
        }
        Ok(())
    }
}

/// One chunk of bids, as plain columns.
struct Bids {
    auction: Int64Array,
    bidder: Int64Array,
    price: Int64Array,
    time: TimestampMillisecondArray,
    extra: StringArray,
}

fn bids(
    options: NexmarkOptions,
    mut each: impl FnMut(&Bids) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let generator = Generator::new(NexmarkStream::Bid, options.rate);
    let mut from = 0;
    while from < options.events {
        let to = (from + CHUNK).min(options.events);
        let (rows, _) = generator.rows(from, to);
        let column = |name: &str| rows.column_by_name(name).expect("a bid column").clone();
        let bids = Bids {
            auction: downcast(&column("auction")),
            bidder: downcast(&column("bidder")),
            price: downcast(&column("price")),
            time: downcast(&column("dateTime")),
            extra: downcast(&column("extra")),
        };
        each(&bids)?;
        from = to;
    }
    Ok(())
}

fn downcast<T: Array + Clone + 'static>(array: &ArrayRef) -> T {
    array
        .as_any()
        .downcast_ref::<T>()
        .expect("the generator's types")
        .clone()
}

/// The rows of `stream`, chunk by chunk, with each row's event number.
fn stream_rows(
    stream: NexmarkStream,
    options: NexmarkOptions,
    mut each: impl FnMut(&RecordBatch, &[u64]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let generator = Generator::new(stream, options.rate);
    let mut from = 0;
    while from < options.events {
        let to = (from + CHUNK).min(options.events);
        let (rows, numbers) = generator.rows(from, to);
        each(&rows, &numbers)?;
        from = to;
    }
    Ok(())
}

/// The column `name` of `rows`, as the generator types it.
fn column<T: Array + Clone + 'static>(rows: &RecordBatch, name: &str) -> T {
    downcast(rows.column_by_name(name).expect("a column of the stream"))
}

/// The columns `names` of every row, in that order.
fn columns(rows: &RecordBatch, names: &[&str]) -> Vec<ArrayRef> {
    names
        .iter()
        .map(|name| {
            rows.column_by_name(name)
                .expect("a column of the stream")
                .clone()
        })
        .collect()
}

/// The columns `names` of the rows at `at`, in that order.
fn pick(rows: &RecordBatch, at: &[u32], names: &[&str]) -> anyhow::Result<Vec<ArrayRef>> {
    let at = arrow::array::UInt32Array::from(at.to_vec());
    names
        .iter()
        .map(|name| {
            let column = rows.column_by_name(name).expect("a column of the stream");
            Ok(arrow::compute::take(column.as_ref(), &at, None)?)
        })
        .collect()
}

/// The stream a query reads first, whose watermark the run reports.
fn source_stream(query: &str) -> NexmarkStream {
    match query {
        "q3" | "q4" | "q9" => NexmarkStream::Auction,
        "q8" => NexmarkStream::Person,
        _ => NexmarkStream::Bid,
    }
}

/// The final watermark of `stream` and the first bid's time, from the
/// events' numbers: over one partition (the generator), or the smallest over
/// the Kafka partitions the rows went to round robin (the earliest of the
/// last rows, one per partition).
fn final_watermark(options: NexmarkOptions, stream: NexmarkStream) -> anyhow::Result<(i64, i64)> {
    let is_bid = |n: &u64| kind_of(*n) == NexmarkStream::Bid;
    let Some(first) = (0..options.events).find(is_bid) else {
        bail!("{} events hold no bid", options.events);
    };
    let partitions = match options.source {
        EventSource::Gen => 1,
        EventSource::Kafka => KAFKA_PARTITIONS as usize,
    };
    let earliest_last = (0..options.events)
        .rev()
        .filter(|&n| kind_of(n) == stream)
        .take(partitions)
        .last()
        .with_context(|| format!("{} events hold no {}", options.events, stream.as_str()))?;
    Ok((
        timestamp_ms(earliest_last, options.rate) - WATERMARK_DELAY_MS,
        timestamp_ms(first, options.rate),
    ))
}

/// How many rows of `stream` the run's events hold.
pub fn rows_of(stream: NexmarkStream, options: NexmarkOptions) -> u64 {
    (0..options.events)
        .filter(|&n| kind_of(n) == stream)
        .count() as u64
}

/// The expected output of query `name` over the run's events.
pub fn expected(name: &str, options: NexmarkOptions) -> anyhow::Result<Expected> {
    let keep = options.events <= ROW_CHECK_EVENTS;
    let (watermark, first_time) = final_watermark(options, source_stream(name))?;
    let mut out = Expected {
        watermark,
        first_time,
        ..Expected::default()
    };
    match name {
        "q0" => bids(options, |b| {
            let batch = batch(vec![
                Arc::new(b.auction.clone()),
                Arc::new(b.bidder.clone()),
                Arc::new(b.price.clone()),
                Arc::new(b.time.clone()),
                Arc::new(b.extra.clone()),
            ]);
            out.add(keep, batch)
        })?,
        "q1" => bids(options, |b| {
            // 0.908 × price, exactly, at scale 3.
            let euros: Decimal128Array = b
                .price
                .values()
                .iter()
                .map(|&p| Some(i128::from(p) * 908))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(23, 3)?;
            let batch = batch(vec![
                Arc::new(b.auction.clone()),
                Arc::new(b.bidder.clone()),
                Arc::new(euros),
                Arc::new(b.time.clone()),
                Arc::new(b.extra.clone()),
            ]);
            out.add(keep, batch)
        })?,
        "q2" => bids(options, |b| {
            let (mut auctions, mut prices) = (Vec::new(), Vec::new());
            for row in 0..b.auction.len() {
                if b.auction.value(row) % 123 == 0 {
                    auctions.push(b.auction.value(row));
                    prices.push(b.price.value(row));
                }
            }
            out.add(keep, batch(vec![longs(auctions), longs(prices)]))
        })?,
        "q5" => {
            let (slide, size) = (2_000i64, 10_000i64);
            // window start → auction → bids
            let mut counts: HashMap<i64, HashMap<i64, i64>> = HashMap::new();
            bids(options, |b| {
                for row in 0..b.auction.len() {
                    let time = b.time.value(row);
                    let last_start = time.div_euclid(slide) * slide;
                    let mut start = last_start;
                    while start > time - size {
                        *counts
                            .entry(start)
                            .or_default()
                            .entry(b.auction.value(row))
                            .or_default() += 1;
                        start -= slide;
                    }
                }
                Ok(())
            })?;
            let mut starts: Vec<i64> = counts.keys().copied().collect();
            starts.sort_unstable();
            let (mut auctions, mut nums) = (Vec::new(), Vec::new());
            for start in starts {
                if start + size - 1 > watermark {
                    continue;
                }
                let window = &counts[&start];
                let max = window.values().copied().max().unwrap_or(0);
                for (&auction, &num) in window {
                    if num >= max {
                        auctions.push(auction);
                        nums.push(num);
                    }
                }
            }
            out.add(keep, batch(vec![longs(auctions), longs(nums)]))?;
        }
        "q7" => {
            let size = 10_000i64;
            // window end → highest price
            let mut highest: HashMap<i64, i64> = HashMap::new();
            bids(options, |b| {
                for row in 0..b.price.len() {
                    let end = b.time.value(row).div_euclid(size) * size + size;
                    let max = highest.entry(end).or_insert(i64::MIN);
                    *max = (*max).max(b.price.value(row));
                }
                Ok(())
            })?;
            bids(options, |b| {
                let mut rows = Vec::new();
                for row in 0..b.price.len() {
                    let time = b.time.value(row);
                    // Every closed window whose [end − 10 s, end] holds the bid.
                    let mut end = time.div_euclid(size) * size + size;
                    if time % size == 0 {
                        end = time;
                    }
                    while end - size <= time {
                        if end <= watermark && highest.get(&end) == Some(&b.price.value(row)) {
                            rows.push(row as u32);
                        }
                        end += size;
                    }
                }
                let take = arrow::array::UInt32Array::from(rows);
                let pick = |array: &dyn Array| arrow::compute::take(array, &take, None);
                // SELECT B.auction, B.price, B.bidder: price and bidder land in each other's column.
                let batch = batch(vec![
                    pick(&b.auction as &dyn Array)?,
                    pick(&b.price as &dyn Array)?,
                    pick(&b.bidder as &dyn Array)?,
                    pick(&b.time as &dyn Array)?,
                    pick(&b.extra as &dyn Array)?,
                ]);
                out.add(keep, batch)
            })?;
        }
        "q3" => joins::q3(options, |batch| out.add(keep, batch))?,
        "q4" => out.add(keep, joins::q4(options)?)?,
        "q8" => {
            // Windows close when both streams' watermarks pass them.
            let (auctions, _) = final_watermark(options, NexmarkStream::Auction)?;
            let closing = watermark.min(auctions);
            joins::q8(options, closing, |batch| out.add(keep, batch))?
        }
        "q9" => joins::q9(options, |batch| out.add(keep, batch))?,
        "q10" => rows::q10(options, |batch| out.add(keep, batch))?,
        "q11" => {
            let (rows, ends) = sessions::q11(options, watermark)?;
            out.add(keep, rows)?;
            out.window_ends = ends;
        }
        "q12" => {
            // Over processing time, the window a bid falls into depends on when it
            // is read; what is fixed is how many bids each bidder made in all.
            let mut per_bidder: HashMap<i64, i64> = HashMap::new();
            bids(options, |b| {
                for row in 0..b.bidder.len() {
                    *per_bidder.entry(b.bidder.value(row)).or_default() += 1;
                }
                Ok(())
            })?;
            let (bidders, counts): (Vec<i64>, Vec<i64>) = per_bidder.into_iter().unzip();
            out.add(true, batch(vec![longs(bidders), longs(counts)]))?;
        }
        "q13" => rows::q13(options, |batch| out.add(keep, batch))?,
        "q14" => rows::q14(options, |batch| out.add(keep, batch))?,
        "q15" => out.add(keep, groups::q15(options)?)?,
        "q16" => out.add(keep, groups::q16(options)?)?,
        "q17" => out.add(keep, groups::q17(options)?)?,
        "q18" => ranks::q18(options, |batch| out.add(keep, batch))?,
        "q19" => ranks::q19(options, |batch| out.add(keep, batch))?,
        "q20" => joins::q20(options, |batch| out.add(keep, batch))?,
        "q21" => rows::q21(options, |batch| out.add(keep, batch))?,
        "q22" => rows::q22(options, |batch| out.add(keep, batch))?,
        other => bail!("no reference computation for {other}"),
    }
    Ok(out)
}

fn longs(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

/// A batch of `columns`, named c0, c1, … (names do not enter the digest).
fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
    let fields: Vec<arrow::datatypes::Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| arrow::datatypes::Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .expect("columns of one length")
}
