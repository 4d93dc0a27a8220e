//! Rows an operator holds until the watermark has passed their event time
//! (an OVER aggregation, a sort by time), then gives back: Flink's
//! event-time buffers.
//!
//! ```text
//!   take_in(rows, late) ──▶ held, but rows whose time is NULL or that the
//!                           operator's rule finds late ──▶ late (their positions)
//!   due(W) ──▶ the held rows with time ≤ W (the rest stay)
//!   encode / decode ──▶ the last watermark, the latest time given back, and the rows (Arrow IPC)
//!
//! What is late is the operator's to say, as Flink's operators differ: a sort
//! takes a row later than the last row it emitted, an unbounded OVER one past
//! the watermark, a bounded OVER one later than its partition's last row.
//! ```

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

/// Rows waiting for the watermark.
#[derive(Debug)]
pub struct HeldRows {
    time_column: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// The watermark rows were last given back at.
    due_up_to: Option<i64>,
    /// The latest event time of the rows given back.
    last_due: Option<i64>,
}

impl HeldRows {
    pub fn new(time_column: String, schema: SchemaRef) -> Self {
        Self {
            time_column,
            schema,
            batches: Vec::new(),
            due_up_to: None,
            last_due: None,
        }
    }

    /// The watermark rows were last given back at.
    pub fn due_up_to(&self) -> Option<i64> {
        self.due_up_to
    }

    /// The latest event time of the rows given back.
    pub fn last_due(&self) -> Option<i64> {
        self.last_due
    }

    /// The event-time column rows wait by.
    pub fn time_column(&self) -> &str {
        &self.time_column
    }

    /// Holds `batch`'s rows, but for those whose time is NULL or that `late`
    /// (given the row and its time) finds late: their positions are returned.
    pub fn take_in(
        &mut self,
        batch: &RecordBatch,
        late: impl Fn(usize, i64) -> bool,
    ) -> Result<Vec<usize>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let times = crate::window::event_times(batch, &self.time_column)?;
        let late: Vec<usize> = (0..batch.num_rows())
            .filter(|&row| times.is_null(row) || late(row, times.value(row)))
            .collect();
        let kept = match late.is_empty() {
            true => batch.clone(),
            false => {
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| Some(late.binary_search(&row).is_err()))
                    .collect();
                arrow::compute::filter_record_batch(batch, &keep)?
            }
        };
        if kept.num_rows() > 0 {
            self.batches
                .push(crate::batch::conform(&kept, &self.schema)?);
        }
        Ok(late)
    }

    /// The held rows the watermark `w` passed (the others stay), or `None`
    /// when `w` is not past the watermark rows were last given back at.
    pub fn due(&mut self, w: i64) -> Result<Option<RecordBatch>> {
        if self.due_up_to.is_some_and(|before| w <= before) {
            return Ok(None);
        }
        self.due_up_to = Some(w);
        let rows = arrow::compute::concat_batches(&self.schema, &self.batches)?;
        let times = crate::window::event_times(&rows, &self.time_column)?;
        let due: BooleanArray = times.values().iter().map(|&t| Some(t <= w)).collect();
        let later = arrow::compute::filter_record_batch(&rows, &arrow::compute::not(&due)?)?;
        self.batches = match later.num_rows() {
            0 => Vec::new(),
            _ => vec![later],
        };
        let latest = times.values().iter().copied().filter(|&t| t <= w).max();
        self.last_due = latest.max(self.last_due);
        Ok(Some(arrow::compute::filter_record_batch(&rows, &due)?))
    }

    /// The last watermark, then the rows as an Arrow IPC stream.
    pub fn encode(&self, out: &mut ByteWriter) {
        out.option(self.due_up_to.as_ref(), |out, w| out.i64(*w));
        out.option(self.last_due.as_ref(), |out, t| out.i64(*t));
        encode_batches(out, &self.batches, &self.schema);
    }

    /// Restores what [`Self::encode`] wrote.
    pub fn decode(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        self.due_up_to = input.option(|r| r.i64())?;
        self.last_due = input.option(|r| r.i64())?;
        self.batches = decode_batches(input, &self.schema)?;
        Ok(())
    }
}

/// `batches` of `schema` as one Arrow IPC stream.
pub fn encode_batches(out: &mut ByteWriter, batches: &[RecordBatch], schema: &SchemaRef) {
    let mut bytes = Vec::new();
    let mut writer =
        StreamWriter::try_new(&mut bytes, schema).expect("an IPC writer over memory opens");
    for batch in batches {
        writer.write(batch).expect("writing IPC to memory succeeds");
    }
    writer.finish().expect("finishing IPC in memory succeeds");
    out.bytes(&bytes);
}

/// What [`encode_batches`] wrote; a checkpoint of other columns is refused.
pub fn decode_batches(input: &mut ByteReader<'_>, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let bytes = input.bytes()?;
    let batches = StreamReader::try_new(std::io::Cursor::new(bytes), None)?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if batches
        .iter()
        .any(|batch| batch.schema().fields() != schema.fields())
    {
        return Err(input.corrupt(
            "its held rows have other columns than the pipeline reads now; start the pipeline afresh (drop its target) to rebuild its state",
        ));
    }
    Ok(batches)
}
