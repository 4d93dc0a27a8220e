//! The operators a pipeline's SELECT can be planned into, beyond the
//! compiler's own cases: a new operator registers its planner here.
//!
//! ```text
//!   registry::planners() ──▶ [row_number::RowNumberPlanner, …] ──asked at every plan node──▶ transform
//! ```

use crate::operator::planner::OperatorPlanner;

/// The registered planners, asked in order.
pub fn planners() -> &'static [&'static dyn OperatorPlanner] {
    &[&crate::row_number::RowNumberPlanner]
}
