//! Hostile input, generated: records mutated from valid ones (bytes flipped,
//! cut, deep nesting, duplicate keys, huge numbers, invalid UTF-8) through the
//! JSON and Debezium decoders, and DDL and pipeline SQL mutated the same way
//! through their parsers. Nothing may panic or overflow the stack, and every
//! record is either a row or set aside with a reason. The generator is seeded,
//! so a failure names the seed that reproduces it.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use strata_pipelines::decode::debezium::DebeziumDecoder;
use strata_pipelines::decode::json::JsonDecoder;
use strata_pipelines::source::SourceRecord;

/// xorshift64*: small, fast and the same everywhere.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    ",",
    ":",
    "null",
    "1e999",
    "-0",
    "\\u0000",
    "\\ud800",
    "99999999999999999999999999",
    "\"id\": 1",
    "\u{10ffff}",
];

/// One mutation of `input`.
fn mutate(random: &mut Random, mut input: Vec<u8>) -> Vec<u8> {
    let at = |random: &mut Random, input: &Vec<u8>| random.below(input.len() + 1);
    match random.below(8) {
        0 if !input.is_empty() => {
            let i = random.below(input.len());
            input[i] = random.next() as u8;
        }
        1 => {
            let end = at(random, &input);
            input.truncate(end);
        }
        2 => {
            let piece = PIECES[random.below(PIECES.len())].as_bytes();
            let i = at(random, &input);
            input.splice(i..i, piece.iter().copied());
        }
        3 => {
            let depth = 1 + random.below(60_000);
            let (open, close) = if random.below(2) == 0 {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            input = format!("{{\"name\": {nested}, \"id\": 1}}").into_bytes();
        }
        4 => {
            let copy = input.clone();
            let i = at(random, &input);
            input.splice(i..i, copy);
        }
        5 => {
            let digits = "7".repeat(1 + random.below(6000));
            input = format!("{{\"id\": {digits}, \"amount\": \"{digits}.5\"}}").into_bytes();
        }
        6 => {
            input = (0..random.below(64)).map(|_| random.next() as u8).collect();
        }
        _ => {
            let i = at(random, &input);
            input.insert(i, b'\xff');
        }
    }
    input
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("qty", DataType::Int32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "address",
            DataType::Struct(Fields::from(vec![Field::new("city", DataType::Utf8, true)])),
            true,
        ),
    ]))
}

const RECORDS: [&str; 3] = [
    r#"{"id": 1, "name": "a", "amount": "12.50", "qty": 3, "ts": "2024-05-01T10:00:00", "tags": ["x"], "address": {"city": "c"}}"#,
    r#"{"before": null, "after": {"id": 2, "name": "b", "amount": 1.5, "qty": 1}, "op": "c"}"#,
    r#"{"payload": {"before": {"id": 3}, "after": null, "op": "d"}}"#,
];

fn records(random: &mut Random, count: usize) -> Vec<SourceRecord> {
    (0..count)
        .map(|offset| {
            let mut payload = RECORDS[random.below(RECORDS.len())].as_bytes().to_vec();
            for _ in 0..1 + random.below(3) {
                payload = mutate(random, payload);
            }
            SourceRecord {
                partition: 0,
                offset: offset as i64,
                timestamp_ms: None,
                key: None,
                payload: Some(payload),
            }
        })
        .collect()
}

#[test]
fn no_record_crashes_a_decoder_and_each_is_a_row_or_set_aside() {
    let json = JsonDecoder::new(schema());
    let debezium = DebeziumDecoder::new(schema());
    for seed in 1..=300u64 {
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let batch = records(&mut random, 24);
        let decoded = json.decode(&batch);
        assert_eq!(
            decoded.batch.num_rows() + decoded.rejected.len(),
            batch.len(),
            "seed {seed}: JSON rows and rejects do not add up"
        );
        assert!(
            decoded.rejected.iter().all(|r| !r.error.is_empty()),
            "seed {seed}: a reject without a reason"
        );
        let changes = debezium.decode(&batch);
        assert!(
            changes.rows.len() + changes.rejected.len() >= batch.len(),
            "seed {seed}: a Debezium record vanished"
        );
    }
}

const DDL: &str = "CREATE TABLE shop.ods_orders (
  order_id BIGINT, amount DECIMAL(10, 2), tags ARRAY<STRING>, props MAP<STRING, INT>,
  order_time TIMESTAMP(3), proc AS PROCTIME(), PRIMARY KEY (order_id) NOT ENFORCED,
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'properties.bootstrap.servers' = '127.0.0.1:9092');";

const PIPELINE: &str = "INSERT INTO shop.dws_city_gmv
SELECT window_start, city, SUM(amount) FILTER (WHERE amount > 0), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
WHERE city <> '' GROUP BY window_start, window_end, city";

#[test]
fn no_ddl_or_pipeline_text_crashes_its_parser() {
    let connections = std::collections::BTreeMap::new();
    for seed in 1..=600u64 {
        let mut random = Random(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        for (template, is_ddl) in [(DDL, true), (PIPELINE, false)] {
            let mut bytes = template.as_bytes().to_vec();
            for _ in 0..1 + random.below(4) {
                bytes = mutate(&mut random, bytes);
            }
            let text = String::from_utf8_lossy(&bytes);
            // Either result is fine; a panic or a stack overflow is not.
            if is_ddl {
                let _ = strata_catalog::ddl::table_defs("hostile.sql", &text, &connections);
            } else {
                let _ = strata_pipelines::parse_pipeline(Path::new("hostile.sql"), &text);
            }
        }
    }
    let deep = format!(
        "INSERT INTO a.b SELECT {}1{} FROM a.c",
        "(".repeat(50_000),
        ")".repeat(50_000)
    );
    assert!(strata_pipelines::parse_pipeline(Path::new("deep.sql"), &deep).is_err());
}
