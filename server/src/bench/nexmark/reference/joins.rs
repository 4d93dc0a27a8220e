//! Regular joins of two streams (q3, q20) and a window join (q8): the whole of one side kept in a
//! map by its key, the other side's rows matched against it. An inner join
//! of two append-only streams emits every matching pair once, whichever
//! side arrives first, so the order of arrival does not enter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;

use super::{batch, column, pick, stream_rows};
use crate::bench::nexmark::NexmarkOptions;

/// q3: people of OR, ID or CA and the auctions of category 10 they sell.
pub(super) fn q3(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // person id → (name, city, state)
    let mut sellers: HashMap<i64, (String, String, String)> = HashMap::new();
    stream_rows(NexmarkStream::Person, options, |rows, _| {
        let id: Int64Array = column(rows, "id");
        let name: StringArray = column(rows, "name");
        let city: StringArray = column(rows, "city");
        let state: StringArray = column(rows, "state");
        for row in 0..rows.num_rows() {
            if matches!(state.value(row), "OR" | "ID" | "CA") {
                let person = (
                    name.value(row).to_string(),
                    city.value(row).to_string(),
                    state.value(row).to_string(),
                );
                sellers.insert(id.value(row), person);
            }
        }
        Ok(())
    })?;
    stream_rows(NexmarkStream::Auction, options, |rows, _| {
        let id: Int64Array = column(rows, "id");
        let seller: Int64Array = column(rows, "seller");
        let category: Int64Array = column(rows, "category");
        let (mut names, mut cities, mut states, mut ids) = (vec![], vec![], vec![], vec![]);
        for row in 0..rows.num_rows() {
            if category.value(row) != 10 {
                continue;
            }
            if let Some((name, city, state)) = sellers.get(&seller.value(row)) {
                names.push(name.clone());
                cities.push(city.clone());
                states.push(state.clone());
                ids.push(id.value(row));
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(cities)),
            Arc::new(StringArray::from(states)),
            Arc::new(Int64Array::from(ids)),
        ];
        add(batch(columns))
    })
}

/// q8: the people who created an auction in the 10-second window they
/// entered the system in, once per window that closed by `closing` (the
/// lower of the two streams' watermarks).
pub(super) fn q8(
    options: NexmarkOptions,
    closing: i64,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let size = 10_000i64;
    let start_of = |time: i64| time.div_euclid(size) * size;
    // (seller, window start) of every auction
    let mut selling: HashSet<(i64, i64)> = HashSet::new();
    stream_rows(NexmarkStream::Auction, options, |rows, _| {
        let seller: Int64Array = column(rows, "seller");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for row in 0..rows.num_rows() {
            selling.insert((seller.value(row), start_of(time.value(row))));
        }
        Ok(())
    })?;
    // GROUP BY id, name, window: each (id, name, window) once
    let mut people: HashSet<(i64, String, i64)> = HashSet::new();
    stream_rows(NexmarkStream::Person, options, |rows, _| {
        let id: Int64Array = column(rows, "id");
        let name: StringArray = column(rows, "name");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for row in 0..rows.num_rows() {
            let start = start_of(time.value(row));
            if start + size - 1 <= closing && selling.contains(&(id.value(row), start)) {
                people.insert((id.value(row), name.value(row).to_string(), start));
            }
        }
        Ok(())
    })?;
    let (mut ids, mut names, mut starts) = (vec![], vec![], vec![]);
    for (id, name, start) in people {
        ids.push(id);
        names.push(name);
        starts.push(start);
    }
    add(batch(vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(names)),
        Arc::new(TimestampMillisecondArray::from(starts)),
    ]))
}

/// The auction columns q9 and q20 write, in their order (q20 without the id).
const AUCTION_COLUMNS: [&str; 10] = [
    "id",
    "itemName",
    "description",
    "initialBid",
    "reserve",
    "dateTime",
    "expires",
    "seller",
    "category",
    "extra",
];

/// The auctions of the categories `keep` takes, in [`AUCTION_COLUMNS`].
fn auctions(options: NexmarkOptions, keep: impl Fn(i64) -> bool) -> anyhow::Result<RecordBatch> {
    let mut auctions: Vec<RecordBatch> = Vec::new();
    stream_rows(NexmarkStream::Auction, options, |rows, _| {
        let category: Int64Array = column(rows, "category");
        let at: Vec<u32> = (0..rows.num_rows() as u32)
            .filter(|&row| keep(category.value(row as usize)))
            .collect();
        auctions.push(batch(pick(rows, &at, &AUCTION_COLUMNS)?));
        Ok(())
    })?;
    Ok(arrow::compute::concat_batches(
        &auctions[0].schema(),
        &auctions,
    )?)
}

/// q20: each bid with its auction, for auctions of category 10.
pub(super) fn q20(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let auctions = auctions(options, |category| category == 10)?;
    let ids: Int64Array = super::downcast(auctions.column(0));
    let row_of: HashMap<i64, u32> = (0..ids.len())
        .map(|row| (ids.value(row), row as u32))
        .collect();
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let auction: Int64Array = column(rows, "auction");
        let (mut bids, mut matched) = (vec![], vec![]);
        for row in 0..rows.num_rows() {
            if let Some(&at) = row_of.get(&auction.value(row)) {
                bids.push(row as u32);
                matched.push(at);
            }
        }
        let mut columns = pick(
            rows,
            &bids,
            &[
                "auction", "bidder", "price", "channel", "url", "dateTime", "extra",
            ],
        )?;
        let matched = arrow::array::UInt32Array::from(matched);
        for column in auctions.columns().iter().skip(1) {
            columns.push(arrow::compute::take(column.as_ref(), &matched, None)?);
        }
        add(batch(columns))
    })
}

/// q9: each auction with its winning bid, among the bids made between its
/// start and its expiry (both included): the highest price, then the
/// earliest time, then the first to arrive.
pub(super) fn q9(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use arrow::array::TimestampMillisecondArray;
    let auctions = auctions(options, |_| true)?;
    let ids: Int64Array = super::downcast(auctions.column(0));
    let starts: TimestampMillisecondArray = super::downcast(auctions.column(5));
    let expiries: TimestampMillisecondArray = super::downcast(auctions.column(6));
    let row_of: HashMap<i64, usize> = (0..ids.len()).map(|row| (ids.value(row), row)).collect();
    // auction row → (price, time, event number) of its best bid so far
    let mut best: HashMap<usize, (i64, i64, u64)> = HashMap::new();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let auction: Int64Array = column(rows, "auction");
        let price: Int64Array = column(rows, "price");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for (row, &number) in numbers.iter().enumerate() {
            let Some(&at) = row_of.get(&auction.value(row)) else {
                continue;
            };
            let time = time.value(row);
            if time < starts.value(at) || time > expiries.value(at) {
                continue;
            }
            let bid = (price.value(row), time, number);
            let kept = best.entry(at).or_insert(bid);
            let better = (bid.0, std::cmp::Reverse(bid.1), std::cmp::Reverse(bid.2))
                > (kept.0, std::cmp::Reverse(kept.1), std::cmp::Reverse(kept.2));
            if better {
                *kept = bid;
            }
        }
        Ok(())
    })?;
    let winner_of: HashMap<u64, u32> = best
        .into_iter()
        .map(|(at, (_, _, number))| (number, at as u32))
        .collect();
    stream_rows(NexmarkStream::Bid, options, |rows, numbers| {
        let (mut bids, mut won) = (vec![], vec![]);
        for (row, number) in numbers.iter().enumerate() {
            if let Some(&at) = winner_of.get(number) {
                bids.push(row as u32);
                won.push(at);
            }
        }
        let won = arrow::array::UInt32Array::from(won);
        let mut columns = auctions
            .columns()
            .iter()
            .map(|column| Ok(arrow::compute::take(column.as_ref(), &won, None)?))
            .collect::<anyhow::Result<Vec<ArrayRef>>>()?;
        columns.extend(pick(
            rows,
            &bids,
            &["auction", "bidder", "price", "dateTime", "extra"],
        )?);
        add(batch(columns))
    })
}

/// q4: per category, the average (truncated, as Flink's AVG of BIGINT) of
/// its auctions' highest bids, among the bids made between each auction's
/// start and its expiry (both included); auctions without such a bid count
/// in no average.
pub(super) fn q4(options: NexmarkOptions) -> anyhow::Result<RecordBatch> {
    use arrow::array::TimestampMillisecondArray;
    let auctions = auctions(options, |_| true)?;
    let ids: Int64Array = super::downcast(auctions.column(0));
    let starts: TimestampMillisecondArray = super::downcast(auctions.column(5));
    let expiries: TimestampMillisecondArray = super::downcast(auctions.column(6));
    let categories: Int64Array = super::downcast(auctions.column(8));
    let row_of: HashMap<i64, usize> = (0..ids.len()).map(|row| (ids.value(row), row)).collect();
    // auction row → its highest bid in time
    let mut highest: HashMap<usize, i64> = HashMap::new();
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let auction: Int64Array = column(rows, "auction");
        let price: Int64Array = column(rows, "price");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        for row in 0..rows.num_rows() {
            let Some(&at) = row_of.get(&auction.value(row)) else {
                continue;
            };
            let time = time.value(row);
            if time < starts.value(at) || time > expiries.value(at) {
                continue;
            }
            let max = highest.entry(at).or_insert(i64::MIN);
            *max = (*max).max(price.value(row));
        }
        Ok(())
    })?;
    // category → (sum of the highest bids, auctions)
    let mut per_category: HashMap<i64, (i128, i128)> = HashMap::new();
    for (at, max) in highest {
        let (sum, count) = per_category.entry(categories.value(at)).or_default();
        *sum += i128::from(max);
        *count += 1;
    }
    let (mut ids, mut averages) = (vec![], vec![]);
    for (category, (sum, count)) in per_category {
        ids.push(category);
        averages.push((sum / count) as i64);
    }
    Ok(batch(vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int64Array::from(averages)),
    ]))
}
