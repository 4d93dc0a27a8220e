//! Nexmark's event generator (`'connector' = 'nexmark'`): people, auctions and
//! bids of an online auction house, as the benchmark defines them.
//!
//! ```text
//!   event number n = 0, 1, 2, …   (one timeline; no parallel generators)
//!     kind      n mod 50:  0 → Person,  1..=3 → Auction,  4..=49 → Bid          (1 : 3 : 46)
//!     dateTime  base + ⌊n · 1e6 / rate⌋ µs, in ms                               (in order)
//!     fields    drawn from a random source seeded with n: any event can be made alone,
//!               and a run is the same every time
//!   hot keys:   ½ of bids go to the newest hot auction (every 100th), ¾ of bids come from a
//!               hot bidder and ¾ of auctions from a hot seller (every 100th person)
//! ```
//!
//! The ids, kinds, times, hot-key rules, value domains, name and city lists and
//! average sizes follow nexmark-flink's generator. Two differences, both on
//! purpose: its current version draws every value from one unseeded source (so
//! its values differ between runs) where this one seeds per event, as Beam's
//! and nexmark's first generator did; and it adds the first person id to a
//! bidder twice, so its bidders are never people, where this one adds it once.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;

use crate::error::{CatalogError, Result};
use crate::model::NexmarkStream;

/// Person : Auction : Bid.
pub const PROPORTIONS: (u64, u64, u64) = (1, 3, 46);
const TOTAL: u64 = PROPORTIONS.0 + PROPORTIONS.1 + PROPORTIONS.2;
pub const FIRST_PERSON_ID: i64 = 1000;
pub const FIRST_AUCTION_ID: i64 = 1000;
pub const FIRST_CATEGORY_ID: i64 = 10;
pub const CATEGORIES: i64 = 5;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
const ACTIVE_PEOPLE: u64 = 1000;
const IN_FLIGHT_AUCTIONS: u64 = 100;
/// Every 100th auction, bidder and seller is hot.
pub const HOT_RATIO: i64 = 100;
const HOT_AUCTIONS: u64 = 2;
const HOT_BIDDERS: u64 = 4;
const HOT_SELLERS: u64 = 4;
const CHANNELS: usize = 10_000;
pub const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
pub const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
pub const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
/// Nexmark's (and Beam's) base time, 2015-07-15T00:00:00Z, so that runs are repeatable.
pub const BASE_TIME_MS: i64 = 1_436_918_400_000;

/// Which stream event `n` belongs to.
pub fn kind_of(n: u64) -> NexmarkStream {
    match n % TOTAL {
        r if r < PROPORTIONS.0 => NexmarkStream::Person,
        r if r < PROPORTIONS.0 + PROPORTIONS.1 => NexmarkStream::Auction,
        _ => NexmarkStream::Bid,
    }
}

/// The event time of event `n` at `rate` events per second, in ms since the epoch.
pub fn timestamp_ms(n: u64, rate: u64) -> i64 {
    let offset = (n as u128 * 1_000) / rate.max(1) as u128;
    BASE_TIME_MS.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// SplitMix64: small, fast, and good enough for benchmark and demo data.
#[derive(Debug)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 3 to `max - 1` lowercase letters, with `special` one time in 13, trimmed.
    fn string(&mut self, max: u64, special: char, out: &mut String) {
        out.clear();
        let len = 3 + self.below(max - 3);
        for _ in 0..len {
            if self.below(13) == 0 {
                out.push(special);
            } else {
                out.push((b'a' + self.below(26) as u8) as char);
            }
        }
        let trimmed = out.trim().len();
        if trimmed != out.len() {
            *out = out.trim().to_string();
        }
    }

    /// `100` to `10^8`, log-uniform.
    fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// Padding that brings an event of `size` bytes to `average` on average.
    fn extra<'a>(&mut self, size: usize, average: usize, letters: &'a str) -> &'a str {
        if size > average {
            return "";
        }
        let wanted = average - size;
        let delta = (wanted as f64 * 0.2).round() as u64;
        let len = wanted as u64 - delta + if delta == 0 { 0 } else { self.below(2 * delta) };
        let at = self.below(letters.len() as u64 - len) as usize;
        &letters[at..at + len as usize]
    }
}

/// What every generator shares: the padding letters and the channels' URLs.
struct Shared {
    letters: String,
    /// `channel-i` and its URL, for the 10,000 ordinary channels.
    channels: Vec<(String, String)>,
    hot_urls: Vec<String>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut random = Random::new(0x006E_6578_6D61_726B);
        let letters = (0..1 << 20)
            .map(|_| (b'a' + random.below(26) as u8) as char)
            .collect();
        let base_url = |random: &mut Random| {
            let mut part = String::new();
            let mut url = String::from("https://www.nexmark.com/");
            for _ in 0..3 {
                random.string(5, '_', &mut part);
                url.push_str(&part);
                url.push('/');
            }
            url.push_str("item.htm?query=1");
            url
        };
        let hot_urls = (0..HOT_CHANNELS.len())
            .map(|_| base_url(&mut random))
            .collect();
        let channels = (0..CHANNELS)
            .map(|i| {
                let mut url = base_url(&mut random);
                if random.below(10) > 0 {
                    url.push_str(&format!(
                        "&channel_id={}",
                        (i as i32).reverse_bits().unsigned_abs()
                    ));
                }
                (format!("channel-{i}"), url)
            })
            .collect();
        Shared {
            letters,
            channels,
            hot_urls,
        }
    })
}

fn last_person(n: u64) -> u64 {
    let epoch = n / TOTAL;
    let offset = (n % TOTAL).min(PROPORTIONS.0 - 1);
    epoch * PROPORTIONS.0 + offset
}

fn next_person(n: u64, random: &mut Random) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + random.below(active + PERSON_ID_LEAD)
}

fn last_auction(n: u64) -> u64 {
    let mut epoch = n / TOTAL;
    let mut offset = n % TOTAL;
    if offset < PROPORTIONS.0 {
        // No auction yet in this epoch: the last one is the previous epoch's.
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = PROPORTIONS.1 - 1;
    } else if offset >= PROPORTIONS.0 + PROPORTIONS.1 {
        offset = PROPORTIONS.1 - 1;
    } else {
        offset -= PROPORTIONS.0;
    }
    epoch * PROPORTIONS.1 + offset
}

fn next_auction(n: u64, random: &mut Random) -> u64 {
    let max = last_auction(n);
    let min = max.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + random.below(max - min + 1 + AUCTION_ID_LEAD)
}

/// The columns of each stream, as nexmark-flink's DDL names and types them.
pub fn schema(stream: NexmarkStream) -> SchemaRef {
    let long = |name: &str| Field::new(name, DataType::Int64, false);
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )
    };
    let fields = match stream {
        NexmarkStream::Person => vec![
            long("id"),
            text("name"),
            text("emailAddress"),
            text("creditCard"),
            text("city"),
            text("state"),
            time("dateTime"),
            text("extra"),
        ],
        NexmarkStream::Auction => vec![
            long("id"),
            text("itemName"),
            text("description"),
            long("initialBid"),
            long("reserve"),
            time("dateTime"),
            time("expires"),
            long("seller"),
            long("category"),
            text("extra"),
        ],
        NexmarkStream::Bid => vec![
            long("auction"),
            long("bidder"),
            long("price"),
            text("channel"),
            text("url"),
            time("dateTime"),
            text("extra"),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// Builds the rows of one stream for a range of event numbers.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    pub stream: NexmarkStream,
    /// Events per second of event time.
    pub rate: u64,
}

impl Generator {
    pub fn new(stream: NexmarkStream, rate: u64) -> Self {
        Self {
            stream,
            rate: rate.max(1),
        }
    }

    /// The rows of the events numbered `from..to` that belong to this stream,
    /// in [`schema`]'s columns, and each row's event number.
    pub fn rows(&self, from: u64, to: u64) -> (RecordBatch, Vec<u64>) {
        let numbers: Vec<u64> = (from..to).filter(|&n| kind_of(n) == self.stream).collect();
        let columns = match self.stream {
            NexmarkStream::Person => self.people(&numbers),
            NexmarkStream::Auction => self.auctions(&numbers),
            NexmarkStream::Bid => self.bids(&numbers),
        };
        let batch = RecordBatch::try_new(schema(self.stream), columns)
            .expect("the generator builds its own schema");
        (batch, numbers)
    }

    fn people(&self, numbers: &[u64]) -> Vec<ArrayRef> {
        let shared = shared();
        let rows = numbers.len();
        let mut id = Int64Builder::with_capacity(rows);
        let mut name = StringBuilder::with_capacity(rows, rows * 12);
        let mut email = StringBuilder::with_capacity(rows, rows * 12);
        let mut card = StringBuilder::with_capacity(rows, rows * 19);
        let mut city = StringBuilder::with_capacity(rows, rows * 8);
        let mut state = StringBuilder::with_capacity(rows, rows * 2);
        let mut time = TimestampMillisecondBuilder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, rows * AVG_PERSON_BYTES);
        let (mut user, mut domain) = (String::new(), String::new());
        for &n in numbers {
            let mut random = Random::new(n);
            id.append_value(last_person(n) as i64 + FIRST_PERSON_ID);
            let full_name = format!(
                "{} {}",
                FIRST_NAMES[random.below(11) as usize],
                LAST_NAMES[random.below(9) as usize]
            );
            random.string(7, ' ', &mut user);
            random.string(5, ' ', &mut domain);
            let address = format!("{user}@{domain}.com");
            let digits: Vec<String> = (0..4)
                .map(|_| format!("{:04}", random.below(10_000)))
                .collect();
            let credit_card = digits.join(" ");
            let town = US_CITIES[random.below(10) as usize];
            let region = US_STATES[random.below(6) as usize];
            let size =
                8 + full_name.len() + address.len() + credit_card.len() + town.len() + region.len();
            extra.append_value(random.extra(size, AVG_PERSON_BYTES, &shared.letters));
            name.append_value(&full_name);
            email.append_value(&address);
            card.append_value(&credit_card);
            city.append_value(town);
            state.append_value(region);
            time.append_value(timestamp_ms(n, self.rate));
        }
        vec![
            Arc::new(id.finish()),
            Arc::new(name.finish()),
            Arc::new(email.finish()),
            Arc::new(card.finish()),
            Arc::new(city.finish()),
            Arc::new(state.finish()),
            Arc::new(time.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn auctions(&self, numbers: &[u64]) -> Vec<ArrayRef> {
        let shared = shared();
        let rows = numbers.len();
        let mut id = Int64Builder::with_capacity(rows);
        let mut item = StringBuilder::with_capacity(rows, rows * 12);
        let mut description = StringBuilder::with_capacity(rows, rows * 50);
        let mut initial = Int64Builder::with_capacity(rows);
        let mut reserve = Int64Builder::with_capacity(rows);
        let mut time = TimestampMillisecondBuilder::with_capacity(rows);
        let mut expires = TimestampMillisecondBuilder::with_capacity(rows);
        let mut seller = Int64Builder::with_capacity(rows);
        let mut category = Int64Builder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, rows * AVG_AUCTION_BYTES);
        let (mut name, mut text) = (String::new(), String::new());
        // An auction lasts up to twice the time the next 100 auctions take to arrive.
        let horizon_events = IN_FLIGHT_AUCTIONS * TOTAL / PROPORTIONS.1;
        for &n in numbers {
            let mut random = Random::new(n);
            let at = timestamp_ms(n, self.rate);
            id.append_value(last_auction(n) as i64 + FIRST_AUCTION_ID);
            let base = if random.below(HOT_SELLERS) > 0 {
                (last_person(n) as i64 / HOT_RATIO) * HOT_RATIO
            } else {
                next_person(n, &mut random) as i64
            };
            seller.append_value(base + FIRST_PERSON_ID);
            category.append_value(FIRST_CATEGORY_ID + random.below(CATEGORIES as u64) as i64);
            let initial_bid = random.price();
            initial.append_value(initial_bid);
            let horizon = (timestamp_ms(n + horizon_events, self.rate) - at).max(0) as u64;
            expires.append_value(at + 1 + random.below((horizon * 2).max(1)) as i64);
            random.string(20, ' ', &mut name);
            random.string(100, ' ', &mut text);
            reserve.append_value(initial_bid + random.price());
            let size = 8 + name.len() + text.len() + 40;
            extra.append_value(random.extra(size, AVG_AUCTION_BYTES, &shared.letters));
            item.append_value(&name);
            description.append_value(&text);
            time.append_value(at);
        }
        vec![
            Arc::new(id.finish()),
            Arc::new(item.finish()),
            Arc::new(description.finish()),
            Arc::new(initial.finish()),
            Arc::new(reserve.finish()),
            Arc::new(time.finish()),
            Arc::new(expires.finish()),
            Arc::new(seller.finish()),
            Arc::new(category.finish()),
            Arc::new(extra.finish()),
        ]
    }

    fn bids(&self, numbers: &[u64]) -> Vec<ArrayRef> {
        let shared = shared();
        let rows = numbers.len();
        let mut auction = Int64Builder::with_capacity(rows);
        let mut bidder = Int64Builder::with_capacity(rows);
        let mut price = Int64Builder::with_capacity(rows);
        let mut channel = StringBuilder::with_capacity(rows, rows * 12);
        let mut url = StringBuilder::with_capacity(rows, rows * 70);
        let mut time = TimestampMillisecondBuilder::with_capacity(rows);
        let mut extra = StringBuilder::with_capacity(rows, rows * AVG_BID_BYTES);
        for &n in numbers {
            let mut random = Random::new(n);
            let base = if random.below(HOT_AUCTIONS) > 0 {
                (last_auction(n) as i64 / HOT_RATIO) * HOT_RATIO
            } else {
                next_auction(n, &mut random) as i64
            };
            auction.append_value(base + FIRST_AUCTION_ID);
            let base = if random.below(HOT_BIDDERS) > 0 {
                (last_person(n) as i64 / HOT_RATIO) * HOT_RATIO + 1
            } else {
                next_person(n, &mut random) as i64
            };
            bidder.append_value(base + FIRST_PERSON_ID);
            price.append_value(random.price());
            if random.below(2) > 0 {
                let hot = random.below(HOT_CHANNELS.len() as u64) as usize;
                channel.append_value(HOT_CHANNELS[hot]);
                url.append_value(&shared.hot_urls[hot]);
            } else {
                let (name, address) = &shared.channels[random.below(CHANNELS as u64) as usize];
                channel.append_value(name);
                url.append_value(address);
            }
            extra.append_value(random.extra(32, AVG_BID_BYTES, &shared.letters));
            time.append_value(timestamp_ms(n, self.rate));
        }
        vec![
            Arc::new(auction.finish()),
            Arc::new(bidder.finish()),
            Arc::new(price.finish()),
            Arc::new(channel.finish()),
            Arc::new(url.finish()),
            Arc::new(time.finish()),
            Arc::new(extra.finish()),
        ]
    }
}

/// Puts generated rows in a table's declared columns (matched by name, in any
/// case), cast to their declared types.
pub fn conform(rows: &RecordBatch, declared: &SchemaRef) -> Result<RecordBatch> {
    let columns = declared
        .fields()
        .iter()
        .map(|field| {
            let index = rows
                .schema()
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(field.name()))
                .ok_or_else(|| unknown_column(field.name(), rows.schema()))?;
            Ok(arrow::compute::cast(rows.column(index), field.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(declared.clone(), columns)?)
}

/// Checks that every declared column is one the stream has.
pub fn check_columns(stream: NexmarkStream, declared: &Schema) -> Result<()> {
    let own = schema(stream);
    for field in declared.fields() {
        if !own
            .fields()
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case(field.name()))
        {
            return Err(unknown_column(field.name(), own));
        }
    }
    Ok(())
}

fn unknown_column(name: &str, own: SchemaRef) -> CatalogError {
    let names: Vec<&str> = own.fields().iter().map(|f| f.name().as_str()).collect();
    CatalogError::Nexmark {
        message: format!("a Nexmark stream has no column {name}"),
        hint: format!("its columns are {}", names.join(", ")),
    }
}

/// The events a table's generator makes, read through DataFusion: only for a
/// table with an end (`'events.num'`), made batch by batch as they are read.
pub fn table_provider(
    declared: &SchemaRef,
    stream: NexmarkStream,
    events: Option<u64>,
    rate: u64,
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::physical_plan::streaming::PartitionStream;

    #[derive(Debug)]
    struct Events {
        schema: SchemaRef,
        generator: Generator,
        events: u64,
    }

    impl PartitionStream for Events {
        fn schema(&self) -> &SchemaRef {
            &self.schema
        }

        fn execute(
            &self,
            _ctx: Arc<datafusion::execution::TaskContext>,
        ) -> datafusion::execution::SendableRecordBatchStream {
            const BATCH_EVENTS: u64 = 8192;
            let (generator, schema, events) = (self.generator, self.schema.clone(), self.events);
            let batches = futures::stream::iter((0..events.div_ceil(BATCH_EVENTS)).map(move |i| {
                let from = i * BATCH_EVENTS;
                let (rows, _) = generator.rows(from, (from + BATCH_EVENTS).min(events));
                conform(&rows, &schema)
                    .map_err(|err| datafusion::error::DataFusionError::External(err.into()))
            }));
            Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
        }
    }

    let Some(events) = events else {
        return Err(CatalogError::Nexmark {
            message: format!(
                "the Nexmark {} stream has no end, so it cannot be queried",
                stream.as_str()
            ),
            hint: "give the table 'events.num'".to_string(),
        });
    };
    check_columns(stream, declared)?;
    let partition = Events {
        schema: declared.clone(),
        generator: Generator::new(stream, rate),
        events,
    };
    let table = datafusion::catalog::streaming::StreamingTable::try_new(
        declared.clone(),
        vec![Arc::new(partition)],
    )?;
    Ok(Arc::new(table))
}
