//! Interval joins: two streams joined on a key and a band of event time,
//! `a JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '30' MINUTE AND a.ts`
//! (exposure ⋈ click, order ⋈ shipment).
//!
//! ```text
//!   a row (key k, time t) ─▶ joins the b rows of k held with time in [t + lower, t + upper] ─▶ out
//!                        └─▶ held, by k, for the b rows still to come
//!   b row (key k, time u) ─▶ joins the a rows of k held with time in [u - upper, u - lower] ─▶ out
//!                        └─▶ held, by k, for the a rows still to come
//!   commit: a rows older than b's watermark - upper can meet no b row to come: dropped (and b rows
//!           older than a's watermark + lower); a row of a side older than its own watermark at that
//!           cleaning may have lost partners: it is quarantined as late, not joined in part
//! ```
//!
//! Each pair is emitted once, when the later of its two rows is read. The held
//! rows are part of the pipeline's checkpoint, committed with both streams'
//! offsets, so a restart neither loses nor repeats a pair.
//!
//! A LEFT, RIGHT or FULL interval join (Flink's outer interval join) marks the
//! held rows of its padded side as they meet a partner; a row that leaves the
//! state at a commit without having met one comes out then, padded with NULLs.
//! The output stays append-only: no row to come can meet a row that left the
//! state (it would be late, and quarantined).
//!
//! ```text
//!   LEFT: a row (k, t) held, unmatched ──(b's watermark passes t + upper)──▶ out: a row + NULLs
//!         a row (k, t) that met a b row ──(b's watermark passes t + upper)──▶ dropped
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
pub use crate::operator::Side;
use crate::operator::{
    BatchContext, Changelog, Described, InputStream, KeepsState, MissAction, Missed, Operator,
    OperatorKind, Processed, StateInfo, StateWrite, Traced, Watermarks,
};
use crate::regular_join::JoinKind;
use crate::state::{ByteReader, ByteWriter};

/// One side's inputs, as the join reads them.
#[derive(Debug)]
pub struct SideInput {
    /// The input's columns at the join.
    pub schema: SchemaRef,
    /// The key expressions, over `schema`.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The event-time column, by name in `schema`.
    pub time: String,
}

/// Everything needed to build an [`IntervalJoin`].
#[derive(Debug)]
pub struct IntervalJoinParts {
    /// INNER, LEFT, RIGHT or FULL.
    pub kind: JoinKind,
    pub left: SideInput,
    pub right: SideInput,
    /// The types both sides' keys are compared as.
    pub key_types: Vec<DataType>,
    /// The ON clause beyond the key equalities (the band and any other condition), over `output`.
    pub filter: Arc<dyn PhysicalExpr>,
    /// `lower ≤ right time - left time ≤ upper`, in milliseconds.
    pub lower_ms: i64,
    pub upper_ms: i64,
    /// The left input's columns, then the right's.
    pub output: SchemaRef,
}

/// A compiled interval join and the rows it holds.
#[derive(Debug)]
pub struct IntervalJoin {
    kind: JoinKind,
    left: SideInput,
    right: SideInput,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    filter: Arc<dyn PhysicalExpr>,
    pub lower_ms: i64,
    pub upper_ms: i64,
    output: SchemaRef,
    state: Mutex<[HeldRows; 2]>,
}

/// The rows of one side held for the other's rows to come.
#[derive(Debug)]
struct HeldRows {
    converter: RowConverter,
    by_key: HashMap<Box<[u8]>, Vec<HeldRow>>,
    /// Rows of this side older than this may have lost partners to a cleaning: late.
    late_below: i64,
}

/// One held row: its event time, its columns, and whether it has met a
/// partner (for the padded side of an outer join).
#[derive(Debug)]
struct HeldRow {
    time: i64,
    row: OwnedRow,
    matched: bool,
}

/// What a probe leaves to hold once the rows have gone through the pipeline.
#[derive(Debug)]
pub struct HeldWrites {
    side: Side,
    rows: RecordBatch,
    held: Vec<usize>,
    /// For each held row, whether it met a partner.
    matched: Vec<bool>,
    /// The other side's held rows it met: key, place among the key's rows, and time.
    partners: Vec<(Box<[u8]>, usize, i64)>,
}

/// What probing a batch of one side produced.
#[derive(Debug)]
pub struct Probed {
    /// The joined rows, left columns then right ones.
    pub batch: RecordBatch,
    /// For each joined row, the probing row it came from.
    pub origins: Vec<usize>,
    /// Probing rows too late to join in full.
    pub late: Vec<usize>,
    pub writes: HeldWrites,
}

impl IntervalJoin {
    /// The join in SQL terms: its keys and its band of event time.
    pub fn describe_join(&self) -> String {
        format!(
            "{} ON {} AND {} BETWEEN {} {:+} ms AND {} {:+} ms",
            self.kind.as_sql(),
            crate::batch::equalities(&self.left.keys, &self.right.keys),
            self.right.time,
            self.left.time,
            self.lower_ms,
            self.left.time,
            self.upper_ms
        )
    }

    /// What the held rows' bytes depend on: both sides' columns and the keys.
    pub fn state_fingerprint(&self) -> String {
        let side = |input: &SideInput| {
            let keys: Vec<String> = input.keys.iter().map(|k| k.to_string()).collect();
            format!(
                "keys ({}) time {} rows {}",
                keys.join(", "),
                input.time,
                crate::state::schema_fingerprint(&input.schema)
            )
        };
        // An inner join's fingerprint stays as it was before outer joins.
        let kind = match self.kind {
            JoinKind::Inner => String::new(),
            kind => format!("{} ", kind.as_sql()),
        };
        format!(
            "{kind}interval join; left: {}; right: {}; key types {:?}",
            side(&self.left),
            side(&self.right),
            self.key_types
        )
    }

    pub fn new(parts: IntervalJoinParts) -> Result<Self> {
        let held = |schema: &SchemaRef| -> Result<HeldRows> {
            Ok(HeldRows {
                converter: crate::batch::row_converter(schema)?,
                by_key: HashMap::new(),
                late_below: i64::MIN,
            })
        };
        Ok(Self {
            key_converter: RowConverter::new(
                parts
                    .key_types
                    .iter()
                    .cloned()
                    .map(SortField::new)
                    .collect(),
            )?,
            state: Mutex::new([held(&parts.left.schema)?, held(&parts.right.schema)?]),
            kind: parts.kind,
            left: parts.left,
            right: parts.right,
            key_types: parts.key_types,
            filter: parts.filter,
            lower_ms: parts.lower_ms,
            upper_ms: parts.upper_ms,
            output: parts.output,
        })
    }

    fn input(&self, side: Side) -> &SideInput {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// A batch's join keys, as the types both sides compare as.
    fn keys(&self, side: Side, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        crate::batch::key_columns(&self.input(side).keys, &self.key_types, batch)
    }

    /// Joins a batch of one side with the other side's held rows.
    pub fn probe(&self, side: Side, batch: &RecordBatch) -> Result<Probed> {
        let rows = batch.num_rows();
        let times = crate::window::event_times(batch, &self.input(side).time)?;
        let keys = self.keys(side, batch)?;
        let encoded = self.key_converter.convert_columns(&keys)?;
        let state = self.state.lock().expect("not poisoned");
        let (own, other) = match side {
            Side::Left => (&state[0], &state[1]),
            Side::Right => (&state[1], &state[0]),
        };
        // The other side's times that can meet a row at `t`.
        let band = |t: i64| match side {
            Side::Left => (t + self.lower_ms, t + self.upper_ms),
            Side::Right => (t - self.upper_ms, t - self.lower_ms),
        };
        let mut late = Vec::new();
        let mut held = Vec::new();
        let mut probe_rows: Vec<u32> = Vec::new();
        let mut partners = Vec::new();
        let mut partner_places: Vec<(&[u8], usize, i64)> = Vec::new();
        for row in 0..rows {
            if times.is_null(row) || keys.iter().any(|k| k.is_null(row)) {
                // A NULL key or time meets nothing; the padded side's row still comes out.
                if self.kind.pads(side) {
                    held.push(row);
                }
                continue;
            }
            let time = times.value(row);
            if time < own.late_below {
                late.push(row);
                continue;
            }
            held.push(row);
            let key = encoded.row(row).data();
            let Some(candidates) = other.by_key.get(key) else {
                continue;
            };
            let (from, to) = band(time);
            for (place, candidate) in candidates.iter().enumerate() {
                if (from..=to).contains(&candidate.time) {
                    probe_rows.push(row as u32);
                    partners.push(candidate.row.row());
                    partner_places.push((key, place, candidate.time));
                }
            }
        }
        let other_columns = other.converter.convert_rows(partners)?;
        drop(state);
        let probe_rows = UInt32Array::from(probe_rows);
        let probe_columns = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, &probe_rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let columns = match side {
            Side::Left => [probe_columns, other_columns].concat(),
            Side::Right => [other_columns, probe_columns].concat(),
        };
        let pairs = RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(probe_rows.len())),
        )?;
        // A NULL condition keeps no pair.
        let mask = crate::batch::condition_mask(&self.filter, &pairs)?;
        let origins: Vec<usize> = probe_rows
            .values()
            .iter()
            .zip(mask.values().iter())
            .filter_map(|(&row, keep)| keep.then_some(row as usize))
            .collect();
        let mut met = vec![false; rows];
        for &row in &origins {
            met[row] = true;
        }
        let partners = match self.kind.pads(side.other()) {
            true => partner_places
                .into_iter()
                .zip(mask.values().iter())
                .filter(|(_, keep)| *keep)
                .map(|((key, place, time), _)| (key.into(), place, time))
                .collect(),
            false => Vec::new(),
        };
        Ok(Probed {
            batch: arrow::compute::filter_record_batch(&pairs, &mask)?,
            origins,
            late,
            writes: HeldWrites {
                side,
                rows: batch.clone(),
                matched: held.iter().map(|&row| met[row]).collect(),
                held,
                partners,
            },
        })
    }

    /// Holds the probing rows for the other side's rows to come, and marks
    /// the other side's rows they met (for an outer join's padded side).
    pub fn hold(&self, writes: HeldWrites) -> Result<()> {
        let HeldWrites {
            side,
            rows,
            held,
            matched,
            partners,
        } = writes;
        let mut state = self.state.lock().expect("not poisoned");
        let other = &mut state[side.other() as usize];
        for (key, place, time) in partners {
            if let Some(partner) = other
                .by_key
                .get_mut(&key)
                .and_then(|rows| rows.get_mut(place))
                .filter(|partner| partner.time == time)
            {
                partner.matched = true;
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        let times = crate::window::event_times(&rows, &self.input(side).time)?;
        let keys = self.keys(side, &rows)?;
        let encoded = self.key_converter.convert_columns(&keys)?;
        let own = &mut state[side as usize];
        let converted = own.converter.convert_columns(rows.columns())?;
        for (row, matched) in held.into_iter().zip(matched) {
            // A padded row whose key or time is NULL meets nothing: it is held
            // under no key until a commit lets it out.
            let (key, time): (&[u8], i64) =
                match times.is_null(row) || keys.iter().any(|k| k.is_null(row)) {
                    true => (&[], i64::MIN),
                    false => (encoded.row(row).data(), times.value(row)),
                };
            own.by_key.entry(key.into()).or_default().push(HeldRow {
                time,
                row: converted.row(row).owned(),
                matched,
            });
        }
        Ok(())
    }

    /// Drops the rows no row to come can meet: left rows older than the right
    /// watermark - upper, right rows older than the left watermark + lower.
    /// Those of a padded side that met no partner come out, padded with NULLs.
    pub fn clean(&self, left_watermark: i64, right_watermark: i64) -> Result<Option<RecordBatch>> {
        let mut state = self.state.lock().expect("not poisoned");
        let [left, right] = &mut *state;
        let left_bound = right_watermark.saturating_sub(self.upper_ms);
        let left_alone = drop_below(left, left_bound, self.kind.pads(Side::Left));
        right.late_below = right.late_below.max(right_watermark);
        let right_bound = left_watermark.saturating_add(self.lower_ms);
        let right_alone = drop_below(right, right_bound, self.kind.pads(Side::Right));
        left.late_below = left.late_below.max(left_watermark);
        let mut padded = Vec::new();
        for (side, alone) in [(Side::Left, left_alone), (Side::Right, right_alone)] {
            if alone.is_empty() {
                continue;
            }
            let held = match side {
                Side::Left => &*left,
                Side::Right => &*right,
            };
            let own = held
                .converter
                .convert_rows(alone.iter().map(OwnedRow::row))?;
            padded.push(self.pad(side, own, alone.len())?);
        }
        match padded.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Ok(Some(arrow::compute::concat_batches(&self.output, &padded)?)),
        }
    }

    /// `rows` of `side` with NULLs for the other side's columns.
    fn pad(&self, side: Side, own: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let left_width = self.left.schema.fields().len();
        let fields = self.output.fields();
        let nulls = |range: std::ops::Range<usize>| -> Vec<ArrayRef> {
            fields[range]
                .iter()
                .map(|field| arrow::array::new_null_array(field.data_type(), rows))
                .collect()
        };
        let columns = match side {
            Side::Left => [own, nulls(left_width..fields.len())].concat(),
            Side::Right => [nulls(0..left_width), own].concat(),
        };
        Ok(RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    fn encode(&self, out: &mut ByteWriter) {
        let state = self.state.lock().expect("not poisoned");
        let flagged = self.kind != JoinKind::Inner;
        for held in state.iter() {
            out.i64(held.late_below);
            // Each held row records whether it has met a partner (an outer join's).
            out.flagged_count(held.by_key.len(), flagged);
            for (key, rows) in &held.by_key {
                out.bytes(key);
                out.u64(rows.len() as u64);
                for held in rows {
                    out.i64(held.time);
                    out.bytes(held.row.row().data());
                    if flagged {
                        out.u8(u8::from(held.matched));
                    }
                }
            }
        }
    }

    fn decode(&self, input: &mut ByteReader) -> Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        for held in state.iter_mut() {
            held.late_below = input.i64()?;
            let parser = held.converter.parser();
            let mut by_key = HashMap::new();
            let (keys, flagged) = input.flagged_count()?;
            for _ in 0..keys {
                let key: Box<[u8]> = input.bytes()?.into();
                let mut rows = Vec::new();
                for _ in 0..input.u64()? {
                    let time = input.i64()?;
                    let row = parser.parse(input.bytes()?).owned();
                    // Rows of a checkpoint without flags were held by an inner join.
                    let matched = match flagged {
                        true => input.u8()? == 1,
                        false => true,
                    };
                    rows.push(HeldRow { time, row, matched });
                }
                by_key.insert(key, rows);
            }
            held.by_key = by_key;
        }
        Ok(())
    }
}

/// Drops `held`'s rows older than `bound`, returning those that met no
/// partner when `padded` (their side comes out padded with NULLs).
fn drop_below(held: &mut HeldRows, bound: i64, padded: bool) -> Vec<OwnedRow> {
    let mut alone = Vec::new();
    held.by_key.retain(|_, rows| {
        if rows.iter().all(|row| row.time >= bound) {
            return true;
        }
        let (kept, gone): (Vec<HeldRow>, Vec<HeldRow>) = std::mem::take(rows)
            .into_iter()
            .partition(|row| row.time >= bound);
        *rows = kept;
        alone.extend(
            gone.into_iter()
                .filter(|row| padded && !row.matched)
                .map(|row| row.row),
        );
        !rows.is_empty()
    });
    alone
}

/// The band an interval join's ON clause puts the right time in, relative to
/// the left time: `(lower, upper)` with `lower ≤ right - left ≤ upper`, in
/// milliseconds, from comparisons (or a BETWEEN) of the two event-time columns
/// give or take interval literals. `None` unless both ends are bounded.
pub fn band(
    filter: &datafusion::logical_expr::Expr,
    left: &datafusion::common::DFSchema,
    right: &datafusion::common::DFSchema,
    left_time: &str,
    right_time: &str,
) -> Option<(i64, i64)> {
    use datafusion::logical_expr::utils::split_conjunction;
    use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
    let term = |expr: &Expr| time_term(expr, left, right, left_time, right_time);
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    // `x op y` as a bound on right - left.
    let mut bound = |x: &Expr, op: Operator, y: &Expr| {
        let (Some((x_side, x_offset)), Some((y_side, y_offset))) = (term(x), term(y)) else {
            return;
        };
        // right + a op left + b  ⇔  right - left op b - a   (and mirrored when x is the left side)
        let (op, value) = match (x_side, y_side) {
            (Side::Right, Side::Left) => (op, y_offset - x_offset),
            (Side::Left, Side::Right) => match op.swap() {
                Some(swapped) => (swapped, x_offset - y_offset),
                None => return,
            },
            _ => return,
        };
        match op {
            Operator::Gt | Operator::GtEq => lower = Some(lower.map_or(value, |l| l.max(value))),
            Operator::Lt | Operator::LtEq => upper = Some(upper.map_or(value, |u| u.min(value))),
            _ => {}
        }
    };
    for conjunct in split_conjunction(filter) {
        match conjunct {
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                bound(expr, Operator::GtEq, low);
                bound(expr, Operator::LtEq, high);
            }
            Expr::BinaryExpr(BinaryExpr {
                left: x,
                op,
                right: y,
            }) => bound(x, *op, y),
            _ => {}
        }
    }
    Some((lower?, upper?)).filter(|(lower, upper)| lower <= upper)
}

/// An event-time column of one side, plus or minus a constant interval.
fn time_term(
    expr: &datafusion::logical_expr::Expr,
    left: &datafusion::common::DFSchema,
    right: &datafusion::common::DFSchema,
    left_time: &str,
    right_time: &str,
) -> Option<(Side, i64)> {
    use datafusion::logical_expr::{BinaryExpr, Cast, Expr, Operator};
    let term = |expr: &Expr| time_term(expr, left, right, left_time, right_time);
    match expr {
        Expr::Column(column) if column.name == left_time && left.has_column(column) => {
            Some((Side::Left, 0))
        }
        Expr::Column(column) if column.name == right_time && right.has_column(column) => {
            Some((Side::Right, 0))
        }
        // A cast to a coarser type (a DATE) would change the band; a timestamp keeps it.
        Expr::Cast(Cast { expr, field })
            if matches!(
                field.data_type(),
                DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond
                        | arrow::datatypes::TimeUnit::Microsecond
                        | arrow::datatypes::TimeUnit::Nanosecond,
                    _
                )
            ) =>
        {
            term(expr)
        }
        Expr::BinaryExpr(BinaryExpr {
            left: x,
            op,
            right: y,
        }) => {
            let (side, offset) = term(x)?;
            let interval = interval_ms(y)?;
            match op {
                Operator::Plus => Some((side, offset + interval)),
                Operator::Minus => Some((side, offset - interval)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A constant interval of days and smaller units, in milliseconds.
fn interval_ms(expr: &datafusion::logical_expr::Expr) -> Option<i64> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        _ => None,
    }
}

#[async_trait::async_trait]
impl Operator for IntervalJoin {
    fn kind(&self) -> OperatorKind {
        OperatorKind::IntervalJoin
    }

    async fn process(self: Arc<Self>, input: Traced, ctx: &BatchContext<'_>) -> Result<Processed> {
        let probed = self.probe(ctx.side, &input.batch)?;
        let mut missed = Vec::new();
        if !probed.late.is_empty() {
            missed.push(Missed {
                origins: probed.late.iter().map(|&r| input.origins[r]).collect(),
                action: MissAction::Quarantine,
                reason: "the interval join read this row too late: rows of the other stream it may have met were dropped from state once both watermarks passed them".to_string(),
            });
        }
        let join = self.clone();
        let writes = probed.writes;
        Ok(Processed {
            traced: input.rows_from(probed.batch, &probed.origins),
            missed,
            writes: vec![StateWrite::new(move || {
                join.hold(writes).map(|()| Vec::new())
            })],
        })
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: self.describe_join(),
            schema: self.output.clone(),
            // The pipeline's watermark follows the left stream; the right one's only cleans state.
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: "each stream's rows within the band of the other's watermark".to_string(),
                fingerprint: self.state_fingerprint(),
            }),
        }
    }

    fn reads_second_stream(&self) -> bool {
        true
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err(format!(
                "an interval join of a {} stream (Flink's interval join reads append-only streams; join a changelog with a regular join, without the band of time)",
                input.as_str()
            )),
        }
    }

    /// Rows that no row to come of the other stream can meet leave the
    /// state; an outer join's rows that met none come out padded.
    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<crate::operator::Emitted> {
        let (Some(left), Some(right)) = (watermarks.source, watermarks.second) else {
            return Ok(crate::operator::Emitted::default());
        };
        Ok(match self.clean(left, right)? {
            Some(padded) => crate::operator::Emitted {
                changes: vec![Traced::of(&padded)],
                ..crate::operator::Emitted::default()
            },
            None => crate::operator::Emitted::default(),
        })
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for IntervalJoin {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.encode(out);
    }
    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        self.decode(input)
    }
}
