//! What every target keeps across a restart, checked the same way for each
//! connector's sink: the positions its commits covered, numbers and tokens,
//! and the state checkpoint id.

use std::future::Future;

use arrow::record_batch::RecordBatch;

use super::TargetSink;
use crate::position::{Position, Positions};

/// Commits through a sink `open` gives, then reopens it as a restart would and
/// checks what it says it has committed. `rows` are rows of the sink's table.
pub(crate) async fn keeps_positions<F, Fut>(open: F, rows: Vec<RecordBatch>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn TargetSink>>,
{
    let binlog = ("binlog/shop.orders".to_string(), 0);
    let topic = ("orders".to_string(), 3);
    let at_binlog = |order: i64, token: &str| Position {
        order,
        token: token.as_bytes().to_vec(),
    };
    let mut sink = open().await;
    assert_eq!(
        sink.committed_position(&binlog.0, binlog.1).await.unwrap(),
        None
    );
    assert_eq!(sink.committed_state().await.unwrap(), None);
    let first = Positions::from([
        (binlog.clone(), at_binlog(7, "mysql-bin.000002:4711")),
        (topic.clone(), Position::at(41)),
    ]);
    sink.commit(rows, &first, Some(1)).await.unwrap();
    // A commit that moves the topic alone: the binlog keeps its token.
    let second = Positions::from([(topic.clone(), Position::at(42))]);
    sink.commit(Vec::new(), &second, Some(2)).await.unwrap();
    drop(sink);

    let mut sink = open().await;
    assert_eq!(
        sink.committed_position(&binlog.0, binlog.1).await.unwrap(),
        Some(at_binlog(7, "mysql-bin.000002:4711"))
    );
    assert_eq!(
        sink.committed_position(&topic.0, topic.1).await.unwrap(),
        Some(Position::at(42))
    );
    assert_eq!(sink.committed_position(&topic.0, 4).await.unwrap(), None);
    assert_eq!(sink.committed_state().await.unwrap(), Some(2));
    let third = Positions::from([(binlog.clone(), at_binlog(9, "mysql-bin.000003:4"))]);
    sink.commit(Vec::new(), &third, Some(3)).await.unwrap();
    drop(sink);

    let sink = open().await;
    assert_eq!(
        sink.committed_position(&binlog.0, binlog.1).await.unwrap(),
        Some(at_binlog(9, "mysql-bin.000003:4"))
    );
    assert_eq!(
        sink.committed_position(&topic.0, topic.1).await.unwrap(),
        Some(Position::at(42))
    );
    assert_eq!(sink.committed_state().await.unwrap(), Some(3));
}
