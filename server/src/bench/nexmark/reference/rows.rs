//! Queries that map, filter or enrich each bid alone (q10, q13, q14, q21, q22), with string
//! functions and arithmetic written out by hand.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::NexmarkStream;

use super::{batch, column, columns, pick, stream_rows};
use crate::bench::nexmark::NexmarkOptions;

/// q14: bids whose price in euros (× 0.908) lies strictly between 1,000,000
/// and 50,000,000, with the hour's kind and the count of `c`s in `extra`.
pub(super) fn q14(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let price: Int64Array = column(rows, "price");
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        let extra: StringArray = column(rows, "extra");
        let (mut at, mut euros, mut kinds, mut counts) = (vec![], vec![], vec![], vec![]);
        for row in 0..rows.num_rows() {
            // Thousandths of a euro.
            let milli_euros = i128::from(price.value(row)) * 908;
            if milli_euros <= 1_000_000_000 || milli_euros >= 50_000_000_000 {
                continue;
            }
            let hour = time.value(row).div_euclid(3_600_000).rem_euclid(24);
            at.push(row as u32);
            euros.push(Some(milli_euros));
            kinds.push(match hour {
                8..=18 => "dayTime",
                0..=6 | 20.. => "nightTime",
                _ => "otherTime",
            });
            counts.push(extra.value(row).chars().filter(|&c| c == 'c').count() as i64);
        }
        let picked = pick(rows, &at, &["auction", "bidder", "dateTime", "extra"])?;
        let euros = Decimal128Array::from(euros).with_precision_and_scale(23, 3)?;
        let columns: Vec<ArrayRef> = vec![
            picked[0].clone(),
            picked[1].clone(),
            Arc::new(euros),
            Arc::new(StringArray::from(kinds)),
            picked[2].clone(),
            picked[3].clone(),
            Arc::new(Int64Array::from(counts)),
        ];
        add(batch(columns))
    })
}

/// q10: every bid with its day (`yyyy-MM-dd`) and minute (`HH:mm`), in UTC.
pub(super) fn q10(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let time: TimestampMillisecondArray = column(rows, "dateTime");
        let mut columns = columns(rows, &["auction", "bidder", "price", "dateTime", "extra"]);
        for pattern in ["%Y-%m-%d", "%H:%M"] {
            let formatted: StringArray = time
                .values()
                .iter()
                .map(|&ms| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|at| at.format(pattern).to_string())
                })
                .collect();
            columns.push(Arc::new(formatted));
        }
        add(batch(columns))
    })
}

/// q13: each bid with the side input's value of its auction mod 10,000
/// (`side-<key>`, for keys 0–9,999: every bid matches).
pub(super) fn q13(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let auction: Int64Array = column(rows, "auction");
        let mut columns = columns(rows, &["auction", "bidder", "price", "dateTime"]);
        let values: StringArray = auction
            .values()
            .iter()
            .map(|auction| Some(format!("side-{}", auction.rem_euclid(10_000))))
            .collect();
        columns.push(Arc::new(values));
        add(batch(columns))
    })
}

/// q21: bids of the four named channels, numbered, and of others whose URL
/// carries a `channel_id` parameter, with its value.
pub(super) fn q21(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let channel: StringArray = column(rows, "channel");
        let url: StringArray = column(rows, "url");
        let (mut at, mut ids) = (vec![], vec![]);
        for row in 0..rows.num_rows() {
            let from_url = channel_id(url.value(row));
            let named = match channel.value(row).to_lowercase().as_str() {
                "apple" => Some("0"),
                "google" => Some("1"),
                "facebook" => Some("2"),
                "baidu" => Some("3"),
                _ => None,
            };
            if named.is_some() || from_url.is_some() {
                at.push(row as u32);
                ids.push(named.or(from_url).map(str::to_string));
            }
        }
        let mut columns = pick(rows, &at, &["auction", "bidder", "price", "channel"])?;
        columns.push(Arc::new(StringArray::from(ids)));
        add(batch(columns))
    })
}

/// The value of the first `channel_id=` parameter that starts the URL or
/// follows an `&`, up to the next `&`.
fn channel_id(url: &str) -> Option<&str> {
    const NAME: &str = "channel_id=";
    let mut from = 0;
    while let Some(found) = url[from..].find(NAME) {
        let at = from + found;
        if at == 0 || url.as_bytes()[at - 1] == b'&' {
            let value = &url[at + NAME.len()..];
            return Some(value.split('&').next().unwrap_or(value));
        }
        from = at + 1;
    }
    None
}

/// q22: the URL's third, fourth and fifth `/`-separated parts (from 0).
pub(super) fn q22(
    options: NexmarkOptions,
    mut add: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    stream_rows(NexmarkStream::Bid, options, |rows, _| {
        let url: StringArray = column(rows, "url");
        let mut columns = columns(rows, &["auction", "bidder", "price", "channel"]);
        for part in 3..=5 {
            let parts: StringArray = (0..rows.num_rows())
                .map(|row| url.value(row).split('/').nth(part))
                .collect();
            columns.push(Arc::new(parts));
        }
        add(batch(columns))
    })
}

#[cfg(test)]
mod tests {
    use super::channel_id;

    #[test]
    fn channel_ids_start_the_url_or_follow_an_ampersand() {
        assert_eq!(channel_id("a/item.htm?query=1&channel_id=42"), Some("42"));
        assert_eq!(channel_id("channel_id=7&x=1"), Some("7"));
        assert_eq!(channel_id("a?xchannel_id=1&channel_id=2&y"), Some("2"));
        assert_eq!(channel_id("a?query=1&channel_id="), Some(""));
        assert_eq!(channel_id("a?query=1"), None);
    }
}
