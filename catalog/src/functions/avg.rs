//! Flink's `AVG`: of integers an integer of the same type (the sum divided
//! by the count, truncated toward zero, as Java's division), of FLOAT a
//! FLOAT and of DOUBLE a DOUBLE, where DataFusion's gives a DOUBLE for all
//! of them. DECIMALs average as DataFusion's do. Pipelines use it, so that a
//! sink column typed as the Flink job types it (`avg_price BIGINT`) takes
//! the result without a CAST; queries keep DataFusion's (PostgreSQL's kind).
//!
//! ```text
//!   AVG(BIGINT 1, 2, 2) ──▶ 5 / 3 = 1 (BIGINT)      AVG(DOUBLE 1, 2, 2) ──▶ 1.666… (DOUBLE)
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Coercion, Signature, TypeSignature,
    TypeSignatureClass, Volatility,
};

/// Flink's AVG, registered as `avg` over DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct FlinkAvg {
    signature: Signature,
}

impl FlinkAvg {
    pub(super) fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::one_of(
                [
                    TypeSignatureClass::Decimal,
                    TypeSignatureClass::Integer,
                    TypeSignatureClass::Float,
                ]
                .into_iter()
                .map(|class| TypeSignature::Coercible(vec![Coercion::new_exact(class)]))
                .collect(),
                Volatility::Immutable,
            ),
        })
    }
}

/// DataFusion's AVG, for DECIMALs.
fn datafusion_avg() -> Arc<AggregateUDF> {
    datafusion::functions_aggregate::average::avg_udaf()
}

/// How the values are summed: exactly (integers) or as doubles.
fn sums_exactly(input: &DataType) -> bool {
    input.is_integer()
}

impl AggregateUDFImpl for FlinkAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            decimal if decimal.is_decimal() => datafusion_avg().return_type(arg_types),
            other => Ok(other.clone()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let input = args.expr_fields[0].data_type();
        if input.is_decimal() {
            return datafusion_avg().inner().accumulator(args);
        }
        if args.is_distinct {
            return exec_err!("AVG(DISTINCT …) of {input} is not supported");
        }
        Ok(Box::new(Average {
            exact: sums_exactly(input),
            sum: 0,
            float_sum: 0.0,
            count: 0,
            output: args.return_type().clone(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let input = args.input_fields[0].data_type();
        if input.is_decimal() {
            return datafusion_avg().inner().state_fields(args);
        }
        let sum = match sums_exactly(input) {
            true => DataType::Decimal128(38, 0),
            false => DataType::Float64,
        };
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::UInt64,
                true,
            )),
            Arc::new(Field::new(format_state_name(args.name, "sum"), sum, true)),
        ])
    }
}

/// A running average of integers (summed exactly) or floats.
#[derive(Debug)]
struct Average {
    exact: bool,
    sum: i128,
    float_sum: f64,
    count: u64,
    output: DataType,
}

impl Average {
    /// `values` as 64-bit integers or doubles, by how they are summed.
    fn add(&mut self, values: &ArrayRef, sign: i8) -> Result<()> {
        if self.exact {
            // Every integer type, unsigned 64-bit ones too, fits a DECIMAL(38, 0) exactly.
            let values = datafusion::arrow::compute::cast(values, &DataType::Decimal128(38, 0))?;
            for value in values.as_primitive::<Decimal128Type>().iter().flatten() {
                self.sum += i128::from(sign) * value;
                self.count = self.count.wrapping_add_signed(i64::from(sign));
            }
        } else {
            let values = datafusion::arrow::compute::cast(values, &DataType::Float64)?;
            for value in values.as_primitive::<Float64Type>().iter().flatten() {
                self.float_sum += f64::from(sign) * value;
                self.count = self.count.wrapping_add_signed(i64::from(sign));
            }
        }
        Ok(())
    }
}

impl Accumulator for Average {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.count == 0 {
            return ScalarValue::try_from(&self.output);
        }
        let average = match self.exact {
            // i128 division truncates toward zero, as Java's long division; the
            // average of values of a type fits that type.
            true => ScalarValue::Decimal128(Some(self.sum / i128::from(self.count)), 38, 0),
            false => ScalarValue::Float64(Some(self.float_sum / self.count as f64)),
        };
        average.cast_to(&self.output)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let sum = match self.exact {
            true => ScalarValue::Decimal128(Some(self.sum), 38, 0),
            false => ScalarValue::Float64(Some(self.float_sum)),
        };
        Ok(vec![ScalarValue::UInt64(Some(self.count)), sum])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let counts = states[0]
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("the count state is UInt64");
        self.count += counts.iter().flatten().sum::<u64>();
        match self.exact {
            true => {
                let sums = states[1]
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .expect("the exact sum state is a DECIMAL(38, 0)");
                self.sum += sums.iter().flatten().sum::<i128>();
            }
            false => {
                let sums = states[1].as_primitive::<Float64Type>();
                self.float_sum += sums.iter().flatten().sum::<f64>();
            }
        }
        Ok(())
    }
}
