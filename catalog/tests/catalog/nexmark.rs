//! Nexmark's generator: the event mix, each field's domain and hot keys, and
//! that events are the same however they are generated; and its DDL.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::nexmark::{
    BASE_TIME_MS, FIRST_AUCTION_ID, FIRST_PERSON_ID, Generator, HOT_CHANNELS, US_CITIES, US_STATES,
    kind_of, timestamp_ms,
};
use strata_catalog::ddl::table_defs;
use strata_catalog::{NexmarkStream, TableKind};

const EVENTS: u64 = 100_000;
const RATE: u64 = 10_000;

fn longs(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = batch.column_by_name(name).unwrap();
    column
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn texts(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap();
    let array = column.as_any().downcast_ref::<StringArray>().unwrap();
    (0..array.len())
        .map(|i| array.value(i).to_string())
        .collect()
}

fn times(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = batch.column_by_name(name).unwrap();
    column
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap()
        .values()
        .to_vec()
}

fn rows(stream: NexmarkStream) -> (RecordBatch, Vec<u64>) {
    Generator::new(stream, RATE).rows(0, EVENTS)
}

#[test]
fn the_event_mix_is_one_person_three_auctions_and_forty_six_bids_in_fifty() {
    let count = |stream| (0..EVENTS).filter(|&n| kind_of(n) == stream).count();
    assert_eq!(count(NexmarkStream::Person), 2_000);
    assert_eq!(count(NexmarkStream::Auction), 6_000);
    assert_eq!(count(NexmarkStream::Bid), 92_000);
    for stream in [
        NexmarkStream::Person,
        NexmarkStream::Auction,
        NexmarkStream::Bid,
    ] {
        let (batch, numbers) = rows(stream);
        assert_eq!(batch.num_rows(), count(stream));
        assert!(numbers.iter().all(|&n| kind_of(n) == stream));
        // Event time follows the event number at the rate, in order.
        let at = times(&batch, "dateTime");
        let expected: Vec<i64> = numbers.iter().map(|&n| timestamp_ms(n, RATE)).collect();
        assert_eq!(at, expected);
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
    }
    assert_eq!(timestamp_ms(0, RATE), BASE_TIME_MS);
    assert_eq!(timestamp_ms(RATE, RATE), BASE_TIME_MS + 1_000);
}

#[test]
fn people_have_sequential_ids_and_values_from_the_spec_lists() {
    let (batch, _) = rows(NexmarkStream::Person);
    let ids = longs(&batch, "id");
    let expected: Vec<i64> = (0..ids.len() as i64).map(|i| FIRST_PERSON_ID + i).collect();
    assert_eq!(ids, expected);
    assert!(
        texts(&batch, "state")
            .iter()
            .all(|s| US_STATES.contains(&s.as_str()))
    );
    assert!(
        texts(&batch, "city")
            .iter()
            .all(|c| US_CITIES.contains(&c.as_str()))
    );
    for card in texts(&batch, "creditCard") {
        let groups: Vec<&str> = card.split(' ').collect();
        assert_eq!(groups.len(), 4, "{card}");
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_digit()))
        );
    }
    assert!(
        texts(&batch, "emailAddress")
            .iter()
            .all(|e| e.contains('@') && e.ends_with(".com"))
    );
    assert!(
        texts(&batch, "name")
            .iter()
            .all(|n| n.split(' ').count() == 2)
    );
    // Sizes average about 200 bytes, as the spec sets.
    let sizes: Vec<usize> = texts(&batch, "extra").iter().map(String::len).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!((110.0..170.0).contains(&mean), "mean extra {mean}");
}

#[test]
fn auctions_have_sequential_ids_hot_sellers_and_valid_prices() {
    let (batch, numbers) = rows(NexmarkStream::Auction);
    let ids = longs(&batch, "id");
    let expected: Vec<i64> = (0..ids.len() as i64)
        .map(|i| FIRST_AUCTION_ID + i)
        .collect();
    assert_eq!(ids, expected);
    assert!(
        longs(&batch, "category")
            .iter()
            .all(|c| (10..15).contains(c))
    );
    let initial = longs(&batch, "initialBid");
    let reserve = longs(&batch, "reserve");
    assert!(initial.iter().all(|p| (100..=100_000_000).contains(p)));
    assert!(initial.iter().zip(&reserve).all(|(i, r)| r > i));
    let start = times(&batch, "dateTime");
    let expires = times(&batch, "expires");
    assert!(start.iter().zip(&expires).all(|(s, e)| e > s));
    // A seller is a person already made (or about to be), and three in four are hot
    // (a multiple of 100 above the first id).
    let sellers = longs(&batch, "seller");
    for (&seller, &n) in sellers.iter().zip(&numbers) {
        let people_so_far = (n / 50 + 1) as i64;
        assert!(seller >= FIRST_PERSON_ID && seller < FIRST_PERSON_ID + people_so_far + 10);
    }
    let hot = sellers
        .iter()
        .filter(|&&s| (s - FIRST_PERSON_ID) % 100 == 0)
        .count();
    let share = hot as f64 / sellers.len() as f64;
    assert!((0.70..0.80).contains(&share), "hot sellers {share}");
}

#[test]
fn bids_go_mostly_to_hot_auctions_and_from_hot_bidders() {
    let (batch, numbers) = rows(NexmarkStream::Bid);
    let auctions = longs(&batch, "auction");
    let bidders = longs(&batch, "bidder");
    let prices = longs(&batch, "price");
    for ((&auction, &bidder), &n) in auctions.iter().zip(&bidders).zip(&numbers) {
        let auctions_so_far = (n / 50 * 3 + 3) as i64;
        assert!(auction >= FIRST_AUCTION_ID && auction < FIRST_AUCTION_ID + auctions_so_far + 10);
        let people_so_far = (n / 50 + 1) as i64;
        assert!(bidder >= FIRST_PERSON_ID && bidder < FIRST_PERSON_ID + people_so_far + 10);
    }
    assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
    let share = |hits: usize| hits as f64 / auctions.len() as f64;
    // Half the bids go to the newest hot auction; a few more hit a multiple of 100 by chance.
    let hot_auctions = auctions
        .iter()
        .filter(|&&a| (a - FIRST_AUCTION_ID) % 100 == 0)
        .count();
    assert!(
        (0.48..0.56).contains(&share(hot_auctions)),
        "{}",
        share(hot_auctions)
    );
    let hot_bidders = bidders
        .iter()
        .filter(|&&b| (b - FIRST_PERSON_ID) % 100 == 1)
        .count();
    assert!(
        (0.72..0.80).contains(&share(hot_bidders)),
        "{}",
        share(hot_bidders)
    );
    let channels = texts(&batch, "channel");
    let urls = texts(&batch, "url");
    let hot_channels = channels
        .iter()
        .filter(|c| HOT_CHANNELS.contains(&c.as_str()))
        .count();
    assert!(
        (0.47..0.53).contains(&share(hot_channels)),
        "{}",
        share(hot_channels)
    );
    for channel in channels
        .iter()
        .filter(|c| !HOT_CHANNELS.contains(&c.as_str()))
    {
        let number: usize = channel.strip_prefix("channel-").unwrap().parse().unwrap();
        assert!(number < 10_000);
    }
    assert!(
        urls.iter()
            .all(|u| u.starts_with("https://www.nexmark.com/"))
    );
    let sizes: Vec<usize> = texts(&batch, "extra").iter().map(String::len).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!((60.0..76.0).contains(&mean), "mean extra {mean}");
}

#[test]
fn an_event_is_the_same_however_the_events_are_split() {
    let generator = Generator::new(NexmarkStream::Bid, RATE);
    let (whole, _) = generator.rows(0, 2_000);
    let (first, _) = generator.rows(0, 777);
    let (rest, _) = generator.rows(777, 2_000);
    let joined = arrow::compute::concat_batches(&whole.schema(), &[first, rest]).unwrap();
    assert_eq!(whole, joined);
    assert_eq!(generator.rows(0, 2_000).0, whole);
}

#[test]
fn nexmark_tables_are_declared_in_flink_ddl() {
    let tables = table_defs(
        "nexmark.sql",
        "CREATE TABLE nexmark.bid (auction BIGINT, price BIGINT, `dateTime` TIMESTAMP(3),
           WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND)
         WITH ('connector' = 'nexmark', 'stream' = 'bid', 'first-event.rate' = '1000',
               'next-event.rate' = '1000', 'events.num' = '5000', 'layer' = 'ods');
         CREATE TABLE nexmark.nexmark_q0 (auction BIGINT) WITH ('connector' = 'blackhole', 'layer' = 'app');",
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(
        tables[0].kind,
        TableKind::Nexmark {
            stream: NexmarkStream::Bid,
            events: Some(5_000),
            rate: 1_000
        }
    );
    assert_eq!(tables[1].kind, TableKind::Blackhole);
    let refused = |ddl: &str| {
        table_defs("nexmark.sql", ddl, &BTreeMap::new())
            .unwrap_err()
            .to_string()
    };
    let err = refused(
        "CREATE TABLE nexmark.bid (auction BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bids', 'layer' = 'ods');",
    );
    assert!(
        err.contains("nexmark.sql:1:") && err.contains("unknown Nexmark stream \"bids\""),
        "{err}"
    );
    let err = refused(
        "CREATE TABLE nexmark.bid (seller BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'layer' = 'ods');",
    );
    assert!(
        err.contains("no column seller") && err.contains("auction, bidder, price"),
        "{err}"
    );
    let err = refused(
        "CREATE TABLE nexmark.bid (auction BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'first-event.rate' = '10', 'next-event.rate' = '20', 'layer' = 'ods');",
    );
    assert!(
        err.contains("'next-event.rate' must equal 'first-event.rate'"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bounded_nexmark_table_reads_as_sql_and_an_unbounded_one_says_why_not() {
    use strata_catalog::{Catalog, RegisterMode};
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(crate::support::project(dir.path(), ""))
        .await
        .unwrap();
    catalog
        .register_sql(
            "nexmark.sql",
            "CREATE TABLE nexmark.bid (auction BIGINT, price BIGINT, `dateTime` TIMESTAMP(3))
               WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events.num' = '20000', 'layer' = 'ods');
             CREATE TABLE nexmark.person (id BIGINT, state VARCHAR)
               WITH ('connector' = 'nexmark', 'stream' = 'person', 'layer' = 'ods');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    let result = catalog
        .query("SELECT COUNT(*), MIN(price) >= 100, MAX(price) <= 100000000 FROM nexmark.bid")
        .await
        .unwrap();
    assert_eq!(result.text_rows().unwrap(), [["18400", "true", "true"]]);
    let err = catalog
        .query("SELECT COUNT(*) FROM nexmark.person")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no end") && err.contains("'events.num'"),
        "{err}"
    );
}
