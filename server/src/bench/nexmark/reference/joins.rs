//! Regular joins of two streams (q3, q20): the whole of one side kept in a
//! map by its key, the other side's rows matched against it. An inner join
//! of two append-only streams emits every matching pair once, whichever
//! side arrives first, so the order of arrival does not enter.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
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

/// The auction columns q20 writes, in its order.
const AUCTION_COLUMNS: [&str; 9] = [
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

/// q20: each bid with its auction, for auctions of category 10.
pub(super) fn q20(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // The auctions of category 10, and each one's row among them by id.
    let mut auctions: Vec<RecordBatch> = Vec::new();
    stream_rows(NexmarkStream::Auction, options, |rows, _| {
        let category: Int64Array = column(rows, "category");
        let at: Vec<u32> = (0..rows.num_rows() as u32)
            .filter(|&row| category.value(row as usize) == 10)
            .collect();
        let mut names = vec!["id"];
        names.extend(AUCTION_COLUMNS);
        auctions.push(batch(pick(rows, &at, &names)?));
        Ok(())
    })?;
    let auctions = arrow::compute::concat_batches(&auctions[0].schema(), &auctions)?;
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
