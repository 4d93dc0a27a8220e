//! Partitioned Delta tables read with their declared types.
//!
//! ```text
//!   deltalake's scan:  dt Dictionary(UInt16, Utf8)  ──cast──▶  dt Utf8 (STRING, as declared)
//!   filters on dt:     evaluated above the scan, on the text
//!   INSERT INTO:       passed to deltalake as it is; it writes one folder per dt value
//! ```
//!
//! deltalake dictionary-encodes a STRING partition column's values; every
//! other reader of a Strata table (the live view, lookups, the PostgreSQL
//! port, a pipeline's target schema) expects the column's declared type.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

/// A Delta table provider whose dictionary-encoded columns read as their values.
#[derive(Debug)]
pub struct PlainPartitionValues {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl PlainPartitionValues {
    /// `inner` itself when it has no dictionary column.
    pub fn wrap(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let inner_schema = inner.schema();
        if !inner_schema
            .fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Dictionary(_, _)))
        {
            return inner;
        }
        let fields: Vec<Field> = inner_schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Dictionary(_, value) => field
                    .as_ref()
                    .clone()
                    .with_data_type(value.as_ref().clone()),
                _ => field.as_ref().clone(),
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            inner_schema.metadata().clone(),
        ));
        Arc::new(Self { inner, schema })
    }

    fn is_dictionary(&self, name: &str) -> bool {
        self.inner
            .schema()
            .field_with_name(name)
            .is_ok_and(|f| matches!(f.data_type(), DataType::Dictionary(_, _)))
    }
}

#[async_trait]
impl TableProvider for PlainPartitionValues {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter on a partition column is typed for its text: it runs above the scan.
        let plain: Vec<usize> = (0..filters.len())
            .filter(|&i| {
                !filters[i]
                    .column_refs()
                    .iter()
                    .any(|column| self.is_dictionary(&column.name))
            })
            .collect();
        let plain_filters: Vec<&Expr> = plain.iter().map(|&i| filters[i]).collect();
        let mut answers = vec![TableProviderFilterPushDown::Unsupported; filters.len()];
        for (&index, answer) in plain
            .iter()
            .zip(self.inner.supports_filters_pushdown(&plain_filters)?)
        {
            answers[index] = answer;
        }
        Ok(answers)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.inner.scan(state, projection, filters, limit).await?;
        let scanned = scan.schema();
        let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = scanned
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), index));
                let expr = match field.data_type() {
                    DataType::Dictionary(_, value) => {
                        Arc::new(CastExpr::new(column, value.as_ref().clone(), None))
                    }
                    _ => column,
                };
                (expr, field.name().clone())
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(columns, scan)?))
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}
