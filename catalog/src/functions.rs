//! Flink SQL functions DataFusion lacks under Flink's name, so that Flink
//! jobs run as written: each is rewritten to DataFusion's own expression when
//! the plan is simplified, and costs nothing at run time.
//!
//! ```text
//!   MOD(a, b)  ──simplify──▶  a % b
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, binary_expr,
};

/// The functions to register in every session that plans Flink SQL.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::new_from_impl(Mod::new()))]
}

/// `MOD(a, b)`: the remainder of `a / b`, as `a % b`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Mod {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion::common::internal_err!("MOD is rewritten to % before it runs")
    }

    fn simplify(&self, mut args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let divisor = args.pop().expect("MOD takes two arguments");
        let dividend = args.pop().expect("MOD takes two arguments");
        Ok(ExprSimplifyResult::Simplified(binary_expr(
            dividend,
            Operator::Modulo,
            divisor,
        )))
    }
}
