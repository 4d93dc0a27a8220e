//! A GROUP BY (over a window TVF or not) as an operator of the plan.
//!
//! ```text
//!   process(rows, their row kinds) ──▶ no rows go on; one state write that folds them in
//!                                        └─ rows whose window the last commit's watermark
//!                                           dropped ──▶ Missed(Late) ──▶ the late table
//!   on_watermark(W) ──▶ Emitted { upserts: completed windows and changed groups,
//!                                 deletes: groups a changelog emptied }
//!   provisional()   ──▶ open windows and changed groups, for the realtime view
//! ```

use std::sync::Mutex;

use arrow::record_batch::RecordBatch;

use super::{AggregatePlan, AggregateState};
use crate::error::Result;
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, KeepsState, Operator, OperatorKind,
    Processed, StateInfo, Traced, Watermarks,
};
use crate::state::{ByteReader, ByteWriter};

/// An aggregation and its open windows and groups.
#[derive(Debug)]
pub struct Aggregation {
    plan: AggregatePlan,
    state: Mutex<AggregateState>,
}

impl Aggregation {
    pub fn new(plan: AggregatePlan) -> Self {
        Self {
            plan,
            state: Mutex::new(AggregateState::default()),
        }
    }

    pub fn plan(&self) -> &AggregatePlan {
        &self.plan
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AggregateState> {
        self.state.lock().expect("not poisoned")
    }
}

#[async_trait::async_trait]
impl Operator for Aggregation {
    fn kind(&self) -> OperatorKind {
        match self.plan.window {
            Some(_) => OperatorKind::WindowAggregate,
            None => OperatorKind::GroupAggregate,
        }
    }

    async fn process(
        self: std::sync::Arc<Self>,
        input: Traced,
        ctx: &BatchContext<'_>,
    ) -> Result<Processed> {
        let watermark = ctx.watermark;
        let output = self.plan.output_schema().clone();
        Ok(Processed::held(
            output,
            input,
            "its window had closed: the watermark passed its end and the allowed lateness",
            move |rows| {
                self.state()
                    .update(&self.plan, &rows.batch, rows.kinds.as_deref(), watermark)
            },
        ))
    }

    fn describe(&self, _input: &InputStream) -> Described {
        let (watermark, holds) = match self.plan.window {
            Some(_) => (
                Some("window_time".to_string()),
                "each open window's groups and their accumulators",
            ),
            None => (None, "every group's accumulators"),
        };
        Described {
            detail: self.plan.describe(),
            schema: self.plan.output_schema().clone(),
            watermark,
            state: Some(StateInfo {
                holds: holds.to_string(),
                fingerprint: self.plan.state_shape().join("\n"),
            }),
        }
    }

    /// Windows are forgotten as the watermark closes them; a GROUP BY's
    /// groups as the state TTL expires them.
    fn keeps_state_past_ttl(&self) -> bool {
        false
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        self.plan.accepts(input)
    }

    /// Results that a late row or a changelog can change again upsert by the
    /// GROUP BY's columns (or, asked for update-before rows, retract: each
    /// change takes back the row emitted before); windows emitted once and
    /// final are appended.
    fn emits(&self, input: Changelog, _key: &[String]) -> (Changelog, Vec<String>) {
        let changes = match self.plan.update_before {
            true => Changelog::Retracting,
            false => Changelog::Upsert,
        };
        match self.plan.updates() || input != Changelog::AppendOnly {
            true => (changes, self.plan.group_columns()),
            false => (Changelog::AppendOnly, Vec::new()),
        }
    }

    fn holds_rows(&self) -> bool {
        true
    }

    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        self.state().emit(&self.plan, watermarks.pipeline)
    }

    fn shows_provisional(&self) -> bool {
        true
    }

    fn provisional(&self) -> Result<Option<RecordBatch>> {
        self.state().provisional(&self.plan).map(Some)
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for Aggregation {
    fn snapshot(&self, out: &mut ByteWriter) {
        let expiring = self.plan.state_ttl_ms().is_some();
        self.state().encode(out, self.plan.update_before, expiring);
    }

    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        let now = self.plan.expiry.now();
        *self.state() = AggregateState::decode(input, self.plan.update_before, now)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    use super::Aggregation;
    use crate::aggregate::accumulator::{AggFunction, AggregateCall};
    use crate::aggregate::{AggregatePlan, GroupRole};
    use crate::operator::harness::Harness;
    use crate::operator::{Changelog, MissAction, Operator, RowKind};
    use crate::window::WindowKind;

    fn input_schema() -> Arc<Schema> {
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("window_start", time.clone(), false),
            Field::new("window_end", time, false),
            Field::new("city", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, true),
        ]))
    }

    /// `SUM(amount) … GROUP BY [window_start, window_end,] city`.
    fn aggregation(window: Option<WindowKind>, allowed_lateness_ms: i64) -> Arc<Aggregation> {
        Arc::new(Aggregation::new(plan(window, allowed_lateness_ms)))
    }

    fn plan(window: Option<WindowKind>, allowed_lateness_ms: i64) -> AggregatePlan {
        let schema = input_schema();
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        let mut groups = Vec::new();
        let mut fields = Vec::new();
        if window.is_some() {
            for (name, role) in [
                ("window_start", GroupRole::WindowStart),
                ("window_end", GroupRole::WindowEnd),
            ] {
                groups.push((col(name, &schema).unwrap(), role, time.clone()));
                fields.push(Field::new(name, time.clone(), false));
            }
        }
        groups.push((
            col("city", &schema).unwrap(),
            GroupRole::Key(0),
            DataType::Utf8,
        ));
        fields.push(Field::new("city", DataType::Utf8, true));
        fields.push(Field::new("total", DataType::Int64, true));
        let sum = AggregateCall::new(
            AggFunction::Sum,
            col("amount", &schema).unwrap(),
            None,
            DataType::Int64,
            DataType::Int64,
            0,
        )
        .unwrap();
        AggregatePlan::new(
            window,
            allowed_lateness_ms,
            groups,
            vec![sum],
            Arc::new(Schema::new(fields)),
        )
        .unwrap()
    }

    /// Rows of ten-second windows: (window start in seconds, city, amount).
    fn rows(rows: &[(i64, &str, i64)]) -> RecordBatch {
        let starts: Vec<i64> = rows.iter().map(|r| r.0 * 1000).collect();
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(starts.clone())),
                Arc::new(TimestampMillisecondArray::from(
                    starts.iter().map(|s| s + 10_000).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// The (city, total) pairs of emitted batches, sorted.
    fn totals(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for batch in batches {
            let city = batch.column_by_name("city").unwrap();
            let city = city.as_any().downcast_ref::<StringArray>().unwrap();
            let total = batch.column_by_name("total").unwrap();
            let total = total.as_any().downcast_ref::<Int64Array>().unwrap();
            for row in 0..batch.num_rows() {
                out.push((city.value(row).to_string(), total.value(row)));
            }
        }
        out.sort();
        out
    }

    fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
        expected.iter().map(|(c, t)| (c.to_string(), *t)).collect()
    }

    #[tokio::test]
    async fn a_window_emits_once_the_watermark_passes_its_end_and_later_rows_are_late() {
        let mut harness = Harness::new(aggregation(Some(WindowKind::Tumble { size: 10_000 }), 0));
        let (through, missed) = harness
            .push(&rows(&[(0, "oslo", 5), (0, "oslo", 7), (10, "rome", 1)]))
            .await
            .unwrap();
        assert_eq!(through.batch.num_rows(), 0, "an aggregation holds its rows");
        assert!(missed.is_empty());
        let open = harness.provisional().unwrap().unwrap();
        assert_eq!(totals(&[open]), pairs(&[("oslo", 12), ("rome", 1)]));

        let emitted = harness.watermark(9_999).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("oslo", 12)]));
        // The first window is gone: a row of it is late, and goes nowhere else.
        let (_, missed) = harness
            .push(&rows(&[(10, "rome", 2), (0, "oslo", 100)]))
            .await
            .unwrap();
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].action, MissAction::Late);
        assert_eq!(missed[0].origins, vec![1]);
        let emitted = harness.watermark(19_999).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("rome", 3)]));
    }

    #[tokio::test]
    async fn a_changelog_takes_updates_back_out_and_deletes_emptied_groups() {
        let aggregation = aggregation(None, 0);
        assert_eq!(
            aggregation.emits(Changelog::Retracting, &[]),
            (Changelog::Upsert, vec!["city".to_string()])
        );
        let mut harness = Harness::new(aggregation);
        harness
            .push_changes(
                &rows(&[(0, "oslo", 5), (0, "rome", 3)]),
                &[RowKind::Insert, RowKind::Insert],
            )
            .await
            .unwrap();
        assert_eq!(
            totals(&harness.watermark(0).await.unwrap().upserts),
            pairs(&[("oslo", 5), ("rome", 3)])
        );
        // oslo's 5 becomes 8; rome's only row is deleted.
        harness
            .push_changes(
                &rows(&[(0, "oslo", 5), (0, "oslo", 8), (0, "rome", 3)]),
                &[RowKind::UpdateBefore, RowKind::UpdateAfter, RowKind::Delete],
            )
            .await
            .unwrap();
        let emitted = harness.watermark(1).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("oslo", 8)]));
        let deleted: usize = emitted.deletes.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(deleted, 1, "rome's group is deleted, not written as 0");
    }

    /// The test's own wall clock, in ms.
    static NOW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);

    fn test_clock() -> i64 {
        NOW_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn with_a_ttl_a_group_not_updated_for_that_long_is_forgotten_and_starts_over() {
        use std::sync::atomic::Ordering;
        let make = || {
            Arc::new(Aggregation::new(plan(None, 0).expiring(
                crate::keyed::Expiry::after(Some(1_000)).with_clock(test_clock),
            )))
        };
        assert!(!make().keeps_state_past_ttl());
        assert!(
            make().plan().describe().contains("groups kept 1s"),
            "{}",
            make().plan().describe()
        );
        let mut harness = Harness::new(make());
        harness
            .push(&rows(&[(0, "oslo", 5), (0, "rome", 3)]))
            .await
            .unwrap();
        harness.watermark(0).await.unwrap();
        // rome is updated later than oslo; the checkpoint keeps when.
        NOW_MS.store(1_600, Ordering::Relaxed);
        harness.push(&rows(&[(0, "rome", 1)])).await.unwrap();
        harness.watermark(0).await.unwrap();
        let bytes = harness.snapshot();
        let aggregation = make();
        let mut restored = Harness::restore_into(aggregation.clone(), &bytes).unwrap();
        // At 2 000, oslo (last changed at 1 000) has expired: its next row starts
        // the group over, as Flink's expired state does; rome (1 600) has not.
        NOW_MS.store(2_000, Ordering::Relaxed);
        restored
            .push(&rows(&[(0, "oslo", 2), (0, "rome", 2)]))
            .await
            .unwrap();
        let emitted = restored.watermark(0).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("oslo", 2), ("rome", 6)]));
        // Groups past their time are dropped at a commit, without a delete:
        // their last row stays in the target.
        NOW_MS.store(3_000, Ordering::Relaxed);
        let emitted = restored.watermark(0).await.unwrap();
        let deleted: usize = emitted.deletes.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(deleted, 0);
        assert_eq!(aggregation.state().open_groups(), 0);
    }

    #[tokio::test]
    async fn a_retraction_of_a_group_holding_no_rows_is_ignored_as_in_flink() {
        for update_before in [false, true] {
            let plan = match update_before {
                true => plan(None, 0).with_update_before(),
                false => plan(None, 0),
            };
            let mut harness = Harness::new(Arc::new(Aggregation::new(plan)));
            // An update of a group never seen (its insert before the stream
            // began, or forgotten by a TTL): only its new row counts.
            let changes = [RowKind::UpdateBefore, RowKind::UpdateAfter, RowKind::Delete];
            let rows = rows(&[(0, "oslo", 2), (0, "oslo", 9), (0, "rome", 4)]);
            harness.push_changes(&rows, &changes).await.unwrap();
            let emitted = harness.watermark(0).await.unwrap();
            assert_eq!(totals(&emitted.upserts), pairs(&[("oslo", 9)]));
            let deleted: usize = emitted.deletes.iter().map(RecordBatch::num_rows).sum();
            let retracted: usize = emitted.retracts.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(
                (deleted, retracted),
                (0, 0),
                "update_before {update_before}"
            );
        }
    }

    #[tokio::test]
    async fn a_row_exactly_the_gap_after_a_session_joins_it_as_in_flink() {
        let session = Some(WindowKind::Session { gap: 10_000 });
        let mut harness = Harness::new(aggregation(session, 0));
        // oslo at 0 s and 10 s: [0, 10) and [10, 20) touch and merge; rome's
        // rows 10.001 s apart stay two sessions.
        harness
            .push(&rows(&[(0, "oslo", 5), (10, "oslo", 7), (0, "rome", 1)]))
            .await
            .unwrap();
        let mut late_rome = rows(&[(0, "rome", 2)]);
        let later = TimestampMillisecondArray::from(vec![10_001]);
        late_rome = RecordBatch::try_new(
            late_rome.schema(),
            vec![
                Arc::new(later.clone()),
                Arc::new(later),
                late_rome.column(2).clone(),
                late_rome.column(3).clone(),
            ],
        )
        .unwrap();
        harness.push(&late_rome).await.unwrap();
        let emitted = harness.watermark(19_999).await.unwrap();
        assert_eq!(
            totals(&emitted.upserts),
            pairs(&[("oslo", 12), ("rome", 1)])
        );
        let emitted = harness.watermark(20_000).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("rome", 2)]));
    }

    #[tokio::test]
    async fn asked_for_update_before_a_change_takes_back_what_its_group_emitted() {
        let make = || Arc::new(Aggregation::new(plan(None, 0).with_update_before()));
        assert_eq!(
            make().emits(Changelog::AppendOnly, &[]),
            (Changelog::Retracting, vec!["city".to_string()])
        );
        let mut harness = Harness::new(make());
        harness
            .push(&rows(&[(0, "oslo", 5), (0, "rome", 3)]))
            .await
            .unwrap();
        let first = harness.watermark(0).await.unwrap();
        assert_eq!(totals(&first.upserts), pairs(&[("oslo", 5), ("rome", 3)]));
        assert_eq!(totals(&first.retracts), pairs(&[]));

        // oslo changes, rome gets a row of 0 (its total does not change).
        harness
            .push(&rows(&[(0, "oslo", 2), (0, "rome", 0)]))
            .await
            .unwrap();
        let second = harness.watermark(1).await.unwrap();
        assert_eq!(totals(&second.retracts), pairs(&[("oslo", 5)]));
        assert_eq!(totals(&second.upserts), pairs(&[("oslo", 7)]));

        // What each group emitted survives a restore: rome's rows taken back
        // delete the 3 it emitted.
        let mut restored = Harness::restore_into(make(), &harness.snapshot()).unwrap();
        restored
            .push_changes(
                &rows(&[(0, "rome", 3), (0, "rome", 0)]),
                &[RowKind::Delete, RowKind::Delete],
            )
            .await
            .unwrap();
        let third = restored.watermark(2).await.unwrap();
        assert_eq!(totals(&third.deletes), pairs(&[("rome", 3)]));
        assert_eq!(totals(&third.upserts), pairs(&[]));
        assert_eq!(totals(&third.retracts), pairs(&[]));
    }

    #[tokio::test]
    async fn open_windows_survive_a_snapshot_and_restore() {
        let make = || aggregation(Some(WindowKind::Tumble { size: 10_000 }), 0);
        let harness = Harness::new(make());
        harness
            .push(&rows(&[(0, "oslo", 5), (0, "rome", 1)]))
            .await
            .unwrap();
        let bytes = harness.snapshot();
        let mut restored = Harness::restore_into(make(), &bytes).unwrap();
        restored.push(&rows(&[(0, "oslo", 2)])).await.unwrap();
        let emitted = restored.watermark(9_999).await.unwrap();
        assert_eq!(totals(&emitted.upserts), pairs(&[("oslo", 7), ("rome", 1)]));
    }

    #[tokio::test]
    async fn a_batch_whose_writes_are_dropped_leaves_no_trace() {
        let harness = Harness::new(aggregation(None, 0));
        harness.try_push(&rows(&[(0, "oslo", 5)])).await.unwrap();
        harness.push(&rows(&[(0, "oslo", 1)])).await.unwrap();
        let open = harness.provisional().unwrap().unwrap();
        assert_eq!(totals(&[open]), pairs(&[("oslo", 1)]));
    }
}
