use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{binary, col, lit};

use super::{JoinKind, JoinSide, RegularJoin};
use crate::keyed::Expiry;
use crate::operator::harness::Harness;
use crate::operator::{Changelog, Operator as _, RowKind, Side, Traced};

fn orders() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, true),
        Field::new("user_id", DataType::Int64, true),
    ]))
}

fn users() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn join() -> Arc<RegularJoin> {
    join_where(None)
}

/// The left stream's columns, then the right's.
fn joined_schema(left: &Schema, right: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        left.fields()
            .iter()
            .chain(right.fields().iter())
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ))
}

/// The rest of an ON clause, made for the joined columns.
type Condition = fn(&Schema) -> Arc<dyn PhysicalExpr>;

/// The inner join, with `filter` (over the joined columns) as the rest of its ON clause.
fn join_where(filter: Option<Condition>) -> Arc<RegularJoin> {
    join_of(JoinKind::Inner, filter)
}

/// The join of `kind`, with `filter` as the rest of its ON clause.
fn join_of(kind: JoinKind, filter: Option<Condition>) -> Arc<RegularJoin> {
    let (left, right) = (orders(), users());
    let pairs = joined_schema(&left, &right);
    let output = match kind {
        JoinKind::Semi | JoinKind::Anti | JoinKind::NotIn => orders(),
        _ => pairs.clone(),
    };
    Arc::new(
        RegularJoin::new(
            kind,
            JoinSide {
                keys: vec![col("user_id", &left).unwrap()],
                schema: left,
            },
            JoinSide {
                keys: vec![col("id", &right).unwrap()],
                schema: right,
            },
            vec![DataType::Int64],
            filter.map(|filter| filter(&pairs)),
            output,
        )
        .unwrap(),
    )
}

fn order_rows(rows: &[(i64, Option<i64>)]) -> RecordBatch {
    RecordBatch::try_new(
        orders(),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn user_rows(rows: &[(i64, &str)]) -> RecordBatch {
    let named: Vec<(i64, Option<&str>)> = rows.iter().map(|&(id, name)| (id, Some(name))).collect();
    maybe_named(&named)
}

fn maybe_named(rows: &[(i64, Option<&str>)]) -> RecordBatch {
    RecordBatch::try_new(
        users(),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// The joined rows as (order id, user name), sorted.
fn pairs(batch: &RecordBatch) -> Vec<(i64, String)> {
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let names = batch
        .column(3)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let mut pairs: Vec<(i64, String)> = (0..batch.num_rows())
        .map(|row| (ids.value(row), names.value(row).to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn each_pair_is_emitted_once_by_the_later_row_whichever_stream_it_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::keyed(join(), dir.path(), "run").unwrap();
    // Orders before their user: kept, nothing joined yet; a NULL key joins nothing.
    let (early, _) = harness
        .push(&order_rows(&[(1, Some(7)), (2, Some(8)), (3, None)]))
        .await
        .unwrap();
    assert_eq!(early.batch.num_rows(), 0);
    let (users, _) = harness
        .push_side(&user_rows(&[(7, "ann"), (9, "bob")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(pairs(&users.batch), [(1, "ann".to_string())]);
    assert_eq!(users.origins, [0], "the pair comes from the user row");
    // A later order meets the user in state; a second user row of key 7 is a second match.
    harness
        .push_side(&user_rows(&[(7, "ann2")]), Side::Right)
        .await
        .unwrap();
    let (late, _) = harness
        .push(&order_rows(&[(4, Some(7)), (5, Some(9)), (6, Some(10))]))
        .await
        .unwrap();
    assert_eq!(
        pairs(&late.batch),
        [
            (4, "ann".to_string()),
            (4, "ann2".to_string()),
            (5, "bob".to_string())
        ]
    );
    // The same order twice: both are kept, and both meet a later user of their key.
    harness.push(&order_rows(&[(2, Some(8))])).await.unwrap();
    let (twice, _) = harness
        .push_side(&user_rows(&[(8, "cy")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(
        pairs(&twice.batch),
        [(2, "cy".to_string()), (2, "cy".to_string())]
    );
}

#[tokio::test]
async fn a_batch_whose_writes_are_dropped_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::keyed(join(), dir.path(), "run").unwrap();
    harness
        .try_push(&order_rows(&[(1, Some(7))]))
        .await
        .unwrap();
    let (users, _) = harness
        .push_side(&user_rows(&[(7, "ann")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(users.batch.num_rows(), 0);
}

#[tokio::test]
async fn both_streams_rows_are_restored_from_a_checkpoint_in_another_run() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::keyed(join(), dir.path(), "run-1").unwrap();
    harness.push(&order_rows(&[(1, Some(7))])).await.unwrap();
    harness
        .push_side(&user_rows(&[(8, "bo")]), Side::Right)
        .await
        .unwrap();
    let entry = harness.checkpoint_keyed(1).await.unwrap();
    let restored = Harness::keyed(join(), dir.path(), "run-2").unwrap();
    restored.restore_keyed(&entry).await.unwrap();
    let (users, _) = restored
        .push_side(&user_rows(&[(7, "ann")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(pairs(&users.batch), [(1, "ann".to_string())]);
    let (orders, _) = restored.push(&order_rows(&[(2, Some(8))])).await.unwrap();
    assert_eq!(pairs(&orders.batch), [(2, "bo".to_string())]);
}

#[tokio::test]
async fn the_rest_of_the_on_clause_keeps_the_pairs_it_is_true_for_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let not_bob: Condition = |schema| {
        binary(
            col("name", schema).unwrap(),
            Operator::NotEq,
            lit("bob"),
            schema,
        )
        .unwrap()
    };
    let harness = Harness::keyed(join_where(Some(not_bob)), dir.path(), "run").unwrap();
    harness
        .push_side(
            &maybe_named(&[(7, Some("ann")), (7, Some("bob")), (7, None)]),
            Side::Right,
        )
        .await
        .unwrap();
    let (joined, _) = harness.push(&order_rows(&[(1, Some(7))])).await.unwrap();
    assert_eq!(pairs(&joined.batch), [(1, "ann".to_string())]);
    assert_eq!(joined.origins, [0]);
}

#[tokio::test]
async fn a_row_whose_key_is_too_long_to_keep_goes_to_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let by_name = |schema: &SchemaRef| col("name", schema).unwrap();
    let (left, right) = (users(), users());
    let output = joined_schema(&left, &right);
    let join = RegularJoin::new(
        JoinKind::Inner,
        JoinSide {
            keys: vec![by_name(&left)],
            schema: left,
        },
        JoinSide {
            keys: vec![by_name(&right)],
            schema: right,
        },
        vec![DataType::Utf8],
        None,
        output,
    )
    .unwrap();
    let harness = Harness::keyed(Arc::new(join), dir.path(), "run").unwrap();
    let long = "x".repeat(70_000);
    let (_, missed) = harness
        .push(&user_rows(&[(1, "short"), (2, long.as_str())]))
        .await
        .unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].origins, [1]);
    assert!(missed[0].reason.contains("16 KiB"), "{}", missed[0].reason);
    let (joined, _) = harness
        .push_side(&user_rows(&[(3, "short"), (4, long.as_str())]), Side::Right)
        .await
        .unwrap();
    assert_eq!(
        joined.batch.num_rows(),
        1,
        "the short key joins; the long one is not kept"
    );
}

/// The test's own wall clock, in ms.
static NOW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);

fn test_clock() -> i64 {
    NOW_MS.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn with_a_ttl_a_row_not_written_for_that_long_is_no_longer_met_and_is_cleaned() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let join = Arc::into_inner(join())
        .unwrap()
        .expiring(Expiry::after(Some(1_000)).with_clock(test_clock));
    let join = Arc::new(join);
    let mut harness = Harness::keyed(join.clone(), dir.path(), "run").unwrap();
    harness
        .push_side(&user_rows(&[(7, "ann"), (8, "bo")]), Side::Right)
        .await
        .unwrap();
    NOW_MS.store(1_500, Ordering::Relaxed);
    // ann is written again: her time to be kept starts over; bo's does not.
    harness
        .push_side(&user_rows(&[(7, "ann")]), Side::Right)
        .await
        .unwrap();
    NOW_MS.store(2_200, Ordering::Relaxed);
    let (joined, _) = harness
        .push(&order_rows(&[(1, Some(7)), (2, Some(8))]))
        .await
        .unwrap();
    assert_eq!(
        pairs(&joined.batch),
        [(1, "ann".to_string()), (1, "ann".to_string())],
        "ann came twice and is kept; bo expired at 2,000"
    );
    // Every key group is cleaned in turn, one per commit: bo's row is deleted.
    let before = join
        .state
        .with(|state| Ok(state.entries().count()))
        .unwrap();
    for _ in 0..crate::keyed::KEY_GROUPS {
        harness.watermark(0).await.unwrap();
    }
    let after = join
        .state
        .with(|state| Ok(state.entries().count()))
        .unwrap();
    assert_eq!(
        before - after,
        1,
        "bo's row is gone, ann's and the orders stay"
    );
}

#[test]
fn an_upsert_stream_is_refused_and_an_outer_join_or_a_changelog_makes_retractions() {
    let join = join();
    assert!(join.accepts(Changelog::AppendOnly).is_ok());
    assert!(join.accepts(Changelog::Retracting).is_ok());
    let refused = join.accepts(Changelog::Upsert).unwrap_err();
    assert!(refused.contains("upsert"), "{refused}");
    assert_eq!(
        join.emits(Changelog::AppendOnly, &[]).0,
        Changelog::AppendOnly
    );
    assert_eq!(
        join.emits(Changelog::Retracting, &[]).0,
        Changelog::Retracting
    );
    let left = join_of(JoinKind::Left, None);
    assert_eq!(
        left.emits(Changelog::AppendOnly, &[]).0,
        Changelog::Retracting
    );
}

/// The rows as (kind, order id, user name), in order.
fn changes(traced: &Traced) -> Vec<(RowKind, Option<i64>, Option<String>)> {
    let batch = &traced.batch;
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let names = batch
        .column(3)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..batch.num_rows())
        .map(|row| {
            let kind = traced
                .kinds
                .as_ref()
                .map_or(RowKind::Insert, |kinds| kinds[row]);
            let id = ids.is_valid(row).then(|| ids.value(row));
            let name = names.is_valid(row).then(|| names.value(row).to_string());
            (kind, id, name)
        })
        .collect()
}

fn change(
    kind: RowKind,
    id: Option<i64>,
    name: Option<&str>,
) -> (RowKind, Option<i64>, Option<String>) {
    (kind, id, name.map(str::to_string))
}

#[tokio::test]
async fn a_left_join_pads_an_order_until_its_user_comes_and_again_once_its_users_are_deleted() {
    use RowKind::{Delete, Insert};
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::keyed(join_of(JoinKind::Left, None), dir.path(), "run").unwrap();
    let (out, _) = harness
        .push(&order_rows(&[(1, Some(7)), (2, None)]))
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [change(Insert, Some(1), None), change(Insert, Some(2), None)],
        "an order without a user comes out padded, a NULL key too"
    );
    let (out, _) = harness
        .push_side(&user_rows(&[(7, "ann")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [
            change(Delete, Some(1), None),
            change(Insert, Some(1), Some("ann"))
        ]
    );
    let (out, _) = harness
        .push_side(&user_rows(&[(7, "al")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(changes(&out), [change(Insert, Some(1), Some("al"))]);
    let (out, _) = harness
        .push_side_changes(&user_rows(&[(7, "ann")]), &[Delete], Side::Right)
        .await
        .unwrap();
    assert_eq!(changes(&out), [change(Delete, Some(1), Some("ann"))]);
    let (out, _) = harness
        .push_side_changes(&user_rows(&[(7, "al")]), &[Delete], Side::Right)
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [
            change(Delete, Some(1), Some("al")),
            change(Insert, Some(1), None)
        ],
        "the last user gone, the order is padded again"
    );
    let (out, _) = harness
        .push_changes(&order_rows(&[(1, Some(7))]), &[Delete])
        .await
        .unwrap();
    assert_eq!(changes(&out), [change(Delete, Some(1), None)]);
}

#[tokio::test]
async fn a_full_join_pads_both_streams_and_a_row_in_and_out_in_one_batch_leaves_nothing() {
    use RowKind::{Delete, Insert};
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::keyed(join_of(JoinKind::Full, None), dir.path(), "run").unwrap();
    let (out, _) = harness
        .push_side(&user_rows(&[(7, "ann")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(changes(&out), [change(Insert, None, Some("ann"))]);
    let (out, _) = harness
        .push(&order_rows(&[(1, Some(7)), (2, Some(7))]))
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [
            change(Delete, None, Some("ann")),
            change(Insert, Some(1), Some("ann")),
            change(Insert, Some(2), Some("ann")),
        ]
    );
    let (out, _) = harness
        .push_changes(
            &order_rows(&[(3, Some(9)), (3, Some(9))]),
            &[Insert, Delete],
        )
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [change(Insert, Some(3), None), change(Delete, Some(3), None)]
    );
    let (out, _) = harness
        .push_side(&user_rows(&[(9, "bo")]), Side::Right)
        .await
        .unwrap();
    assert_eq!(
        changes(&out),
        [change(Insert, None, Some("bo"))],
        "the order in and out of one batch is not kept"
    );
}

/// A small random generator, the same run after run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

type Order = (i64, Option<i64>);
type User = (i64, String);

/// A joined row, as text: order id, user id, id, name (NULLs as None).
fn text(order: Option<&Order>, user: Option<&User>) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}",
        order.map(|o| o.0),
        order.and_then(|o| o.1),
        user.map(|u| u.0),
        user.map(|u| u.1.clone())
    )
}

/// The join of what is left of both streams, computed with plain loops.
fn expected(
    kind: JoinKind,
    filtered: bool,
    orders: &[Order],
    users: &[User],
) -> std::collections::BTreeMap<String, i64> {
    let meets = |o: &Order, u: &User| o.1 == Some(u.0) && (!filtered || o.0 >= u.0);
    let mut rows = std::collections::BTreeMap::new();
    for order in orders {
        let matched = users.iter().any(|u| meets(order, u));
        if matches!(kind, JoinKind::Semi | JoinKind::Anti) {
            if matched == (kind == JoinKind::Semi) {
                *rows.entry(text(Some(order), None)).or_insert(0) += 1;
            }
            continue;
        }
        for user in users.iter().filter(|u| meets(order, u)) {
            *rows.entry(text(Some(order), Some(user))).or_insert(0) += 1;
        }
        if !matched && kind.pads(Side::Left) {
            *rows.entry(text(Some(order), None)).or_insert(0) += 1;
        }
    }
    for user in users {
        if kind.pads(Side::Right) && !orders.iter().any(|o| meets(o, user)) {
            *rows.entry(text(None, Some(user))).or_insert(0) += 1;
        }
    }
    rows
}

/// The net rows of what the join emitted: inserts add one, retractions take one back.
fn apply(net: &mut std::collections::BTreeMap<String, i64>, out: &Traced) {
    let batch = &out.batch;
    let int = |column: usize| {
        batch
            .column(column)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone()
    };
    let (order_ids, user_ids) = (int(0), int(1));
    // A semi or anti join emits the orders' columns alone.
    let users = (batch.num_columns() == 4).then(|| {
        let names = batch
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        (int(2), names)
    });
    for row in 0..batch.num_rows() {
        let order = order_ids.is_valid(row).then(|| {
            let user = user_ids.is_valid(row).then(|| user_ids.value(row));
            (order_ids.value(row), user)
        });
        let user = users.as_ref().and_then(|(ids, names)| {
            ids.is_valid(row)
                .then(|| (ids.value(row), names.value(row).to_string()))
        });
        let count = net.entry(text(order.as_ref(), user.as_ref())).or_insert(0);
        *count += if out.retracts(row) { -1 } else { 1 };
    }
    net.retain(|_, count| *count != 0);
}

#[tokio::test]
async fn every_kind_of_join_ends_where_joining_what_is_left_of_both_streams_does_across_a_restart()
{
    let at_least_order: Condition = |schema| {
        binary(
            col("order_id", schema).unwrap(),
            Operator::GtEq,
            col("id", schema).unwrap(),
            schema,
        )
        .unwrap()
    };
    for kind in [
        JoinKind::Inner,
        JoinKind::Left,
        JoinKind::Right,
        JoinKind::Full,
        JoinKind::Semi,
        JoinKind::Anti,
    ] {
        for filtered in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let make = || join_of(kind, filtered.then_some(at_least_order));
            let mut harness = Harness::keyed(make(), dir.path(), "run-0").unwrap();
            let mut random = Lcg(kind as u64 * 2 + filtered as u64);
            let (mut orders, mut users): (Vec<Order>, Vec<User>) = (Vec::new(), Vec::new());
            let mut net = std::collections::BTreeMap::new();
            for step in 0..120 {
                if step % 40 == 39 {
                    let entry = harness.checkpoint_keyed(step).await.unwrap();
                    let run = format!("run-{step}");
                    harness = Harness::keyed(make(), dir.path(), &run).unwrap();
                    harness.restore_keyed(&entry).await.unwrap();
                }
                let on_orders = random.below(2) == 0;
                let mut kinds = Vec::new();
                let mut order_batch = Vec::new();
                let mut user_batch = Vec::new();
                for _ in 0..1 + random.below(4) {
                    let retract = random.below(3) == 0;
                    if on_orders {
                        if retract && !orders.is_empty() {
                            let order = orders.remove(random.below(orders.len() as u64) as usize);
                            order_batch.push(order);
                            kinds.push(RowKind::Delete);
                        } else {
                            let user = (random.below(5) > 0).then(|| random.below(3) as i64);
                            let order = (random.below(6) as i64, user);
                            orders.push(order);
                            order_batch.push(order);
                            kinds.push(RowKind::Insert);
                        }
                    } else if retract && !users.is_empty() {
                        let user = users.remove(random.below(users.len() as u64) as usize);
                        user_batch.push(user);
                        kinds.push(RowKind::Delete);
                    } else {
                        let name = ["ann", "bo"][random.below(2) as usize].to_string();
                        let user = (random.below(3) as i64, name);
                        users.push(user.clone());
                        user_batch.push(user);
                        kinds.push(RowKind::Insert);
                    }
                }
                let (out, _) = if on_orders {
                    harness
                        .push_side_changes(&order_rows(&order_batch), &kinds, Side::Left)
                        .await
                        .unwrap()
                } else {
                    let named: Vec<(i64, &str)> = user_batch
                        .iter()
                        .map(|(id, name)| (*id, name.as_str()))
                        .collect();
                    harness
                        .push_side_changes(&user_rows(&named), &kinds, Side::Right)
                        .await
                        .unwrap()
                };
                apply(&mut net, &out);
                assert_eq!(
                    net,
                    expected(kind, filtered, &orders, &users),
                    "{kind:?} (filtered: {filtered}) after step {step}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_update_keeps_its_kinds_through_an_inner_join_and_a_left_join_pads_between_them() {
    use RowKind::{Delete, Insert, UpdateAfter, UpdateBefore};
    let update = [UpdateBefore, UpdateAfter];
    let users = user_rows(&[(7, "ann"), (7, "anna")]);
    for (kind, expected) in [
        (
            JoinKind::Inner,
            vec![
                change(UpdateBefore, Some(1), Some("ann")),
                change(UpdateAfter, Some(1), Some("anna")),
            ],
        ),
        (
            JoinKind::Left,
            vec![
                change(UpdateBefore, Some(1), Some("ann")),
                change(Insert, Some(1), None),
                change(Delete, Some(1), None),
                change(Insert, Some(1), Some("anna")),
            ],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(join_of(kind, None), dir.path(), "run").unwrap();
        harness
            .push_side(&user_rows(&[(7, "ann")]), Side::Right)
            .await
            .unwrap();
        harness.push(&order_rows(&[(1, Some(7))])).await.unwrap();
        let (out, _) = harness
            .push_side_changes(&users, &update, Side::Right)
            .await
            .unwrap();
        assert_eq!(changes(&out), expected, "{kind:?}");
    }
}

#[tokio::test]
async fn a_semi_join_lets_an_order_out_once_and_an_anti_join_takes_it_back_when_its_user_comes() {
    use RowKind::{Delete, Insert};
    for (kind, on_user, on_user_gone) in [
        (JoinKind::Semi, Insert, Delete),
        (JoinKind::Anti, Delete, Insert),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(join_of(kind, None), dir.path(), "run").unwrap();
        let (out, _) = harness
            .push(&order_rows(&[(1, Some(7)), (2, None)]))
            .await
            .unwrap();
        let waiting: Vec<Option<i64>> = match kind {
            JoinKind::Semi => vec![],
            _ => vec![Some(1), Some(2)],
        };
        assert_eq!(out.batch.num_rows(), waiting.len(), "{kind:?}");
        assert_eq!(out.batch.num_columns(), 2, "the orders' columns alone");
        // Two users of key 7: the order comes out (or goes) once.
        let (out, _) = harness
            .push_side(&user_rows(&[(7, "ann"), (7, "al")]), Side::Right)
            .await
            .unwrap();
        let kinds = out
            .kinds
            .clone()
            .unwrap_or_else(|| vec![Insert; out.batch.num_rows()]);
        assert_eq!(
            (out.batch.num_rows(), kinds),
            (1, vec![on_user]),
            "{kind:?}"
        );
        let (out, _) = harness
            .push_side_changes(&user_rows(&[(7, "ann")]), &[Delete], Side::Right)
            .await
            .unwrap();
        assert_eq!(out.batch.num_rows(), 0, "{kind:?}: al still matches");
        let (out, _) = harness
            .push_side_changes(&user_rows(&[(7, "al")]), &[Delete], Side::Right)
            .await
            .unwrap();
        assert_eq!(out.kinds, Some(vec![on_user_gone]), "{kind:?}");
    }
}

/// Blocked user ids, some NULL, as the right stream of a NOT IN.
fn blocked_rows(ids: &[Option<i64>]) -> RecordBatch {
    RecordBatch::try_new(
        users(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(vec![Some("x"); ids.len()])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn not_in_of_nullable_values_ends_where_three_valued_logic_does_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let make = || join_of(JoinKind::NotIn, None);
    let mut harness = Harness::keyed(make(), dir.path(), "run-0").unwrap();
    let mut random = Lcg(11);
    let (mut orders, mut blocked): (Vec<Order>, Vec<Option<i64>>) = (Vec::new(), Vec::new());
    let mut net = std::collections::BTreeMap::new();
    let (mut emptied, mut nulled) = (0, 0);
    for step in 0..300 {
        if step % 60 == 59 {
            let entry = harness.checkpoint_keyed(step).await.unwrap();
            harness = Harness::keyed(make(), dir.path(), &format!("run-{step}")).unwrap();
            harness.restore_keyed(&entry).await.unwrap();
        }
        let on_orders = random.below(2) == 0;
        let mut kinds = Vec::new();
        let (mut order_batch, mut blocked_batch) = (Vec::new(), Vec::new());
        for _ in 0..1 + random.below(3) {
            let retract = random.below(2) == 0;
            if on_orders {
                if retract && !orders.is_empty() {
                    order_batch.push(orders.remove(random.below(orders.len() as u64) as usize));
                    kinds.push(RowKind::Delete);
                } else {
                    let user = (random.below(4) > 0).then(|| random.below(4) as i64);
                    let order = (random.below(6) as i64, user);
                    orders.push(order);
                    order_batch.push(order);
                    kinds.push(RowKind::Insert);
                }
            } else if retract && !blocked.is_empty() {
                blocked_batch.push(blocked.remove(random.below(blocked.len() as u64) as usize));
                kinds.push(RowKind::Delete);
            } else {
                let id = (random.below(5) > 0).then(|| random.below(4) as i64);
                blocked.push(id);
                blocked_batch.push(id);
                kinds.push(RowKind::Insert);
            }
        }
        let batch = match on_orders {
            true => order_rows(&order_batch),
            false => blocked_rows(&blocked_batch),
        };
        let side = match on_orders {
            true => Side::Left,
            false => Side::Right,
        };
        let (out, _) = harness
            .push_side_changes(&batch, &kinds, side)
            .await
            .unwrap();
        apply(&mut net, &out);
        // SQL's NOT IN, with plain loops: out while nothing is blocked, or while
        // the order's user is known, no blocked id is NULL and none is its user.
        let mut wanted = std::collections::BTreeMap::new();
        for order in &orders {
            let out = blocked.is_empty()
                || (order.1.is_some()
                    && blocked.iter().all(Option::is_some)
                    && !blocked.contains(&order.1));
            if out {
                *wanted.entry(text(Some(order), None)).or_insert(0) += 1;
            }
        }
        assert_eq!(net, wanted, "after step {step}: blocked {blocked:?}");
        emptied += usize::from(blocked.is_empty() && !orders.is_empty());
        nulled += usize::from(blocked.contains(&None) && !orders.is_empty());
    }
    assert!(
        emptied > 10 && nulled > 10,
        "both global states were met: {emptied}, {nulled}"
    );
}
