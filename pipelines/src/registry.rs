//! What the engine is built from beyond its core: the planners of operators
//! a pipeline's SELECT can be planned into, and the connectors of the tables
//! it reads, writes and looks up. A new operator or connector registers here.
//!
//! ```text
//!   registry::planners()   ──▶ [row_number::RowNumberPlanner, …] ──asked at every plan node──▶ transform
//!   registry::connectors() ──▶ [Kafka, Delta, MySQL, embedded, Nexmark, blackhole] ──by 'connector'──▶ connector::of
//! ```

use crate::connector::{
    Connector, blackhole::Blackhole, delta::Delta, embedded::Embedded, kafka::Kafka, mysql::Mysql,
    nexmark::Nexmark,
};
use crate::operator::planner::OperatorPlanner;

/// The registered planners, asked in order.
pub fn planners() -> &'static [&'static dyn OperatorPlanner] {
    &[&crate::row_number::RowNumberPlanner]
}

/// The registered connectors, one per `'connector'` option value.
pub fn connectors() -> &'static [&'static dyn Connector] {
    &[&Kafka, &Delta, &Mysql, &Embedded, &Nexmark, &Blackhole]
}
