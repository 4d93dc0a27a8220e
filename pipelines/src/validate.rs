//! Checks a project's pipelines before anything runs, and orders them.
//!
//! ```text
//!   every pipeline ──▶ its tables exist ──▶ layers flow forward ──▶ its SELECT plans
//!                       (file:line:col)      (ods → dwd → dws → app;   against the catalog's
//!                                             dim feeds any layer)     schemas, and fits the target
//!   all pipelines  ──▶ no cycles ──▶ dependency order (from the SQL, not the folders)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use petgraph::graph::DiGraph;
use sqlparser::ast::{Expr, Spanned, Statement, visit_expressions};
use strata_catalog::ddl::types::flink_type_name;
use strata_catalog::provider::CATALOG_NAME;
use strata_catalog::{Layer, SourceLocation, TableDef, TableName};

use strata_lineage::PipelineLineage;

use crate::error::{PipelineError, Result};
use crate::lookup::spec::{LookupSpec, MissPolicy};
use crate::project::{Pipeline, TableMention};
use crate::window::{WINDOW_END, WINDOW_SCHEMA, WINDOW_START, WindowTvf};

/// A pipeline that passed validation, with the schema its SELECT produces.
#[derive(Debug, Clone)]
pub struct ValidPipeline {
    pub pipeline: Pipeline,
    pub target: TableDef,
    /// Every table it reads: streams and lookup joins' dimensions.
    pub sources: Vec<TableDef>,
    pub output: Arc<Schema>,
}

impl ValidPipeline {
    /// Where each target column comes from, from the pipeline's logical plan
    /// (`tables`: every table of the catalog).
    pub async fn lineage(&self, tables: &[TableDef]) -> Result<PipelineLineage> {
        let plan = self.logical_plan(tables).await?;
        let resolve = |table: &datafusion::common::TableReference, column: &str| {
            let space = table.schema()?;
            if space == WINDOW_SCHEMA {
                // The window TVF's scan: its bounds come from its event time.
                let window = self
                    .pipeline
                    .windows()
                    .find(|w| w.relation().name == table.table())?;
                let column = match column {
                    // Over processing time, the bounds come from the clock.
                    WINDOW_START | WINDOW_END | crate::window::WINDOW_TIME
                        if window.processing_time =>
                    {
                        return None;
                    }
                    WINDOW_START | WINDOW_END | crate::window::WINDOW_TIME => {
                        window.time_column.clone()
                    }
                    other => other.to_string(),
                };
                return Some((window.source.table.to_string(), column));
            }
            Some((format!("{space}.{}", table.table()), column.to_string()))
        };
        let target_columns: Vec<String> = self
            .target
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Ok(PipelineLineage::derive(
            &self.pipeline.name,
            &self.target.name.to_string(),
            &target_columns,
            &plan,
            &resolve,
        )?)
    }

    /// The target's columns that carry the pipeline's event time forward, so
    /// that a pipeline reading the target as a stream may continue its
    /// watermark: its one stream's WATERMARK FOR column passed through
    /// unchanged (not beside window-aligned joins, which write rows the
    /// watermark passed), or the ends of its windows (`window_end`,
    /// `window_time`). A later commit writes no value of them at or below the
    /// watermark of an earlier one, but for rows the stream itself brought late.
    /// None when rows can land after the watermark passed them for another
    /// reason: a lookup retried later, a window updated by allowed lateness.
    pub async fn event_time_columns(&self) -> Result<Vec<String>> {
        let streams: Vec<&TableDef> = self.streams().collect();
        let [stream] = streams.as_slice() else {
            return Ok(Vec::new());
        };
        let retries = self
            .pipeline
            .lookups
            .iter()
            .any(|lookup| matches!(lookup.miss, crate::lookup::spec::MissPolicy::Retry { .. }));
        let processing_time = self.pipeline.windows().any(|w| w.processing_time);
        if retries || processing_time || self.pipeline.settings.allowed_lateness_ms > 0 {
            return Ok(Vec::new());
        }
        let Some(watermark) = &stream.watermark else {
            return Ok(Vec::new());
        };
        let plan = self.logical_plan(&self.sources).await?;
        let output = plan.schema();
        let mut columns = Vec::new();
        for (at, target) in self.target.schema.fields().iter().enumerate() {
            if at >= output.fields().len() {
                break;
            }
            let (qualifier, field) = output.qualified_field(at);
            let column = datafusion::common::Column::new(qualifier.cloned(), field.name());
            let carries = crate::aligned::origin_of(&plan, &column).is_some_and(|(scan, name)| {
                match scan.table_name.schema() == Some(WINDOW_SCHEMA) {
                    true => name == WINDOW_END || name == crate::window::WINDOW_TIME,
                    false => {
                        !self.pipeline.aligned
                            && name == watermark.column
                            && scan.table_name.table() == stream.name.name
                            && scan
                                .table_name
                                .schema()
                                .is_none_or(|space| space == stream.name.space)
                    }
                }
            });
            if carries {
                columns.push(target.name().clone());
            }
        }
        Ok(columns)
    }

    /// Its query's logical plan over `tables`' schemas.
    async fn logical_plan(
        &self,
        tables: &[TableDef],
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let ctx = schema_session(tables);
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(Statement::Query(
            self.pipeline.query.clone(),
        )));
        ctx.state()
            .statement_to_plan(statement)
            .await
            .map_err(|err| planning_error(&self.pipeline, &err.strip_backtrace(), &ctx))
    }

    /// The tables it reads as streams (not through lookup joins).
    pub fn streams(&self) -> impl Iterator<Item = &TableDef> {
        self.sources.iter().filter(|table| {
            !self
                .pipeline
                .lookups
                .iter()
                .any(|lookup| lookup.table.table == table.name)
        })
    }
}

/// Validates every pipeline against the catalog's tables, and returns them in
/// the order they must run: a pipeline comes after those that fill its sources.
pub async fn validate(pipelines: Vec<Pipeline>, tables: &[TableDef]) -> Result<Vec<ValidPipeline>> {
    let by_name: HashMap<&TableName, &TableDef> = tables.iter().map(|t| (&t.name, t)).collect();
    let ctx = schema_session(tables);
    refuse_same_names(&pipelines)?;
    let mut valid = Vec::with_capacity(pipelines.len());
    for mut pipeline in pipelines {
        let target = (*lookup(&by_name, &pipeline.target)?).clone();
        let mut sources = pipeline
            .sources
            .iter()
            .map(|mention| {
                let source = lookup(&by_name, mention)?;
                check_layers(&target, source, mention)?;
                Ok((*source).clone())
            })
            .collect::<Result<Vec<_>>>()?;
        for tvf in pipeline
            .window
            .iter_mut()
            .chain(&mut pipeline.second_window)
        {
            let source = sources
                .iter()
                .find(|t| t.name == tvf.source.table)
                .expect("a window's table is among the sources");
            check_window_time(tvf, source)?;
        }
        refuse_processing_time_beside(&pipeline, &sources)?;
        check_lookups(&pipeline, &sources)?;
        refuse_unsupported_calls(&pipeline)?;
        read_processing_time(&mut pipeline, &sources);
        let (output, aggregates, leftmost) = plan_output(&ctx, &pipeline).await?;
        // The stream a join or UNION ALL starts from is the source, the
        // others enter it (a view read on the right is mentioned first).
        if pipeline.window.is_none()
            && let Some(at) = sources
                .iter()
                .position(|t| Some(&t.name) == leftmost.as_ref())
        {
            sources[..=at].rotate_right(1);
            pipeline.sources[..=at].rotate_right(1);
        }
        check_fits(&pipeline, &output, &target)?;
        let streams: Vec<TableDef> = sources
            .iter()
            .filter(|t| !pipeline.lookups.iter().any(|l| l.table.table == t.name))
            .cloned()
            .collect();
        check_upsert_target(&pipeline, aggregates, &streams, &target)?;
        valid.push(ValidPipeline {
            pipeline,
            target,
            sources,
            output,
        });
    }
    dependency_order(valid)
}

/// A pipeline's name keys its consumer group, its transactions and its state:
/// two pipelines of one name (files of one name in two folders, or a
/// statement set's INSERTs into tables of one name in two spaces) are refused.
fn refuse_same_names(pipelines: &[Pipeline]) -> Result<()> {
    let mut seen: HashMap<&str, &Pipeline> = HashMap::new();
    for pipeline in pipelines {
        if let Some(first) = seen.insert(pipeline.name.as_str(), pipeline) {
            return Err(PipelineError::Invalid {
                location: pipeline.target.location.clone(),
                message: format!(
                    "a second pipeline named {} (the first fills {}, at {})",
                    pipeline.name, first.target.table, first.target.location
                ),
                hint: Some(
                    "rename one of the files (a pipeline is named after its file, a statement set's INSERT after the file and its table)".to_string(),
                ),
            });
        }
    }
    Ok(())
}

fn lookup<'a>(
    tables: &HashMap<&TableName, &'a TableDef>,
    mention: &TableMention,
) -> Result<&'a TableDef> {
    tables.get(&mention.table).copied().ok_or_else(|| {
        let mut known: Vec<String> = tables
            .keys()
            .filter(|name| name.space == mention.table.space)
            .map(|name| name.to_string())
            .collect();
        known.sort();
        PipelineError::Invalid {
            location: mention.location.clone(),
            message: format!("unknown table {}", mention.table),
            hint: Some(if known.is_empty() {
                "declare it in catalog/*.sql and register it with `strata catalog register`"
                    .to_string()
            } else {
                format!(
                    "tables in space {} are {}",
                    mention.table.space,
                    known.join(", ")
                )
            }),
        }
    })
}

/// Layers flow forward: a table may read its own layer and those below it;
/// DIM tables feed any layer, and are fed from ODS and DWD.
fn check_layers(target: &TableDef, source: &TableDef, mention: &TableMention) -> Result<()> {
    let rank = |layer: Layer| match layer {
        Layer::Ods => 0,
        Layer::Dwd | Layer::Dim => 1,
        Layer::Dws => 2,
        Layer::App => 3,
    };
    if source.layer == Layer::Dim || rank(source.layer) <= rank(target.layer) {
        return Ok(());
    }
    Err(PipelineError::Invalid {
        location: mention.location.clone(),
        message: format!(
            "the {} table {} cannot read the {} table {}",
            target.layer.as_str().to_uppercase(),
            target.name,
            source.layer.as_str().to_uppercase(),
            source.name
        ),
        hint: Some("layers flow ODS → DWD → DWS → APP, and DIM feeds any layer; read an earlier layer, or move the pipeline".to_string()),
    })
}

/// A session that knows every table's schema and reads nothing.
pub(crate) fn schema_session(tables: &[TableDef]) -> SessionContext {
    let catalog = MemoryCatalogProvider::new();
    let mut spaces: BTreeMap<&str, Arc<MemorySchemaProvider>> = BTreeMap::new();
    for table in tables {
        let space = spaces
            .entry(table.name.space.as_str())
            .or_insert_with(|| Arc::new(MemorySchemaProvider::new()));
        let _ = space.register_table(
            table.name.name.clone(),
            Arc::new(EmptyTable::new(table.schema.clone())),
        );
    }
    // What a window TVF over each table produces, for pipelines that use one.
    let windows = Arc::new(MemorySchemaProvider::new());
    for table in tables {
        let _ = windows.register_table(
            format!("{}__{}", table.name.space, table.name.name),
            Arc::new(EmptyTable::new(WindowTvf::schema(&table.schema))),
        );
    }
    let _ = catalog.register_schema(WINDOW_SCHEMA, windows);
    for (name, space) in spaces {
        let _ = catalog.register_schema(name, space);
    }
    let config =
        flink_sql(SessionConfig::new().with_default_catalog_and_schema(CATALOG_NAME, "public"));
    let mut ctx = SessionContext::new_with_config(config);
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    strata_catalog::functions::register_flink_pipeline_functions(&mut ctx)
        .expect("a session context takes every function");
    ctx
}

/// Flink's reading of SQL: `0.908` is a DECIMAL(3, 3), not a DOUBLE, and
/// identifiers keep their case.
pub(crate) fn flink_sql(config: SessionConfig) -> SessionConfig {
    strata_catalog::provider::flink_identifiers(config)
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
}

/// A lookup join reads a MySQL/TiDB, Delta or embedded table (or a broadcast
/// Kafka table) as of the probe table's processing time; an event-time
/// temporal join reads a versioned Kafka table (a changelog with a primary key
/// and a watermark) as of the probe's event time.
fn check_lookups(pipeline: &Pipeline, sources: &[TableDef]) -> Result<()> {
    let is_dimension = |table: &TableDef| {
        pipeline
            .lookups
            .iter()
            .any(|lookup| lookup.table.table == table.name)
    };
    let probes: Vec<&TableDef> = sources.iter().filter(|t| !is_dimension(t)).collect();
    for lookup in &pipeline.lookups {
        let dimension = sources
            .iter()
            .find(|t| t.name == lookup.table.table)
            .expect("every table was found");
        let event_time = probes.iter().any(|p| {
            p.watermark
                .as_ref()
                .is_some_and(|w| w.column == lookup.time_column)
        });
        let versioned = crate::registry::connector(dimension).versions(dimension);
        if versioned {
            check_versioned(lookup, dimension, event_time)?;
            continue;
        }
        let processing_time = probes.iter().find_map(|p| p.processing_time.as_deref());
        let derived = names_proctime(&pipeline.query, &lookup.time_column);
        if processing_time != Some(lookup.time_column.as_str()) && !derived {
            let message = if event_time {
                format!(
                    "FOR SYSTEM_TIME AS OF {} (an event time) joins a versioned table, but {} is a {} table, looked up as of processing time",
                    lookup.time_column,
                    dimension.name,
                    dimension.kind.connector()
                )
            } else {
                format!(
                    "{} is not the processing-time attribute of the table joined to {}",
                    lookup.time_column, lookup.alias
                )
            };
            return Err(PipelineError::Invalid {
                location: lookup.time_location.clone(),
                message,
                hint: Some(match processing_time {
                    Some(column) => format!("a lookup join is FOR SYSTEM_TIME AS OF {column}, the table's PROCTIME() column; an event-time temporal join reads a Kafka changelog with a PRIMARY KEY and a WATERMARK"),
                    None => "declare `proc_time AS PROCTIME()` on the probe table and join FOR SYSTEM_TIME AS OF proc_time".to_string(),
                }),
            });
        }
    }
    Ok(())
}

/// Whether the pipeline's probe relation (the first of its SELECT's FROM) is
/// a subquery naming `PROCTIME()` `column`, as Flink's
/// `FROM (SELECT *, PROCTIME() AS p_time FROM bid) B JOIN … AS OF B.p_time` does.
fn names_proctime(query: &sqlparser::ast::Query, column: &str) -> bool {
    use sqlparser::ast::{Expr, Select, SelectItem, SetExpr, TableFactor};
    fn select_of(query: &sqlparser::ast::Query) -> Option<&Select> {
        match query.body.as_ref() {
            SetExpr::Select(select) => Some(select),
            _ => None,
        }
    }
    let Some(select) = select_of(query) else {
        return false;
    };
    let Some(TableFactor::Derived { subquery, .. }) =
        select.from.first().map(|from| &from.relation)
    else {
        return false;
    };
    select_of(subquery).is_some_and(|probe| {
        probe.projection.iter().any(|item| {
            matches!(item, SelectItem::ExprWithAlias { expr: Expr::Function(function), alias }
                if alias.value.eq_ignore_ascii_case(column)
                    && function.name.to_string().eq_ignore_ascii_case("proctime"))
        })
    })
}

/// An event-time temporal join: AS OF the probe's event time, against a Kafka
/// changelog (json upserts or debezium-json) with a primary key and a watermark.
fn check_versioned(lookup: &LookupSpec, table: &TableDef, event_time: bool) -> Result<()> {
    let refuse = |location: &SourceLocation, message: String, hint: &str| {
        Err(PipelineError::Invalid {
            location: location.clone(),
            message,
            hint: Some(hint.to_string()),
        })
    };
    if !event_time {
        return refuse(
            &lookup.time_location,
            format!(
                "{} is a Kafka topic, joined as a versioned table as of the probe's event time, but {} is not the probe table's event-time (WATERMARK FOR) column",
                table.name, lookup.time_column
            ),
            "join FOR SYSTEM_TIME AS OF the probe's WATERMARK FOR column, or declare a small table 'lookup.broadcast' = 'true' to look it up as of processing time",
        );
    }
    if table.primary_key.is_empty() || table.watermark.is_none() {
        return refuse(
            &lookup.table.location,
            format!(
                "{} has no {}: an event-time temporal join reads a versioned table, whose rows are versions of a primary key at an event time",
                table.name,
                if table.primary_key.is_empty() {
                    "PRIMARY KEY"
                } else {
                    "WATERMARK"
                }
            ),
            "declare PRIMARY KEY (...) NOT ENFORCED and WATERMARK FOR <time column> AS <time column> - INTERVAL '5' SECOND on the versioned table",
        );
    }
    if crate::registry::stream_of(table).is_err() {
        return refuse(
            &lookup.table.location,
            format!(
                "{} is not in format json or debezium-json, which a versioned table's changelog is read in",
                table.name
            ),
            "write the changelog as json upserts (a tombstone deletes its key) or as debezium-json",
        );
    }
    if matches!(lookup.miss, MissPolicy::Retry { .. }) {
        return refuse(
            &lookup.time_location,
            format!(
                "'miss' = 'retry' on the temporal join of {}: its rows wait for the versioned side's watermark instead",
                lookup.alias
            ),
            "use 'miss' = 'null' (LEFT JOIN) or 'quarantine'",
        );
    }
    Ok(())
}

/// Calls Flink runs that pipelines do not, refused at their place with the
/// way that works, before planning would fail on them with DataFusion's words
/// (`Invalid function 'session_start'`, or a RANK as a DECIMAL). ROW_NUMBER
/// runs (see [`crate::row_number`]), which refuses the orders it cannot keep.
fn refuse_unsupported_calls(pipeline: &Pipeline) -> Result<()> {
    let mut refusal = None;
    let _ = visit_expressions(&pipeline.query, |expr| {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let name = function.name.to_string().to_ascii_lowercase();
        let start = function.span().start;
        let refuse = |message: String, hint: String| PipelineError::Invalid {
            location: pipeline.location(start.line, start.column),
            message,
            hint: Some(hint),
        };
        let legacy_window = ["tumble", "hop", "session"].into_iter().find(|kind| {
            name == *kind
                || name
                    .strip_prefix(kind)
                    .is_some_and(|rest| ["_start", "_end", "_rowtime", "_proctime"].contains(&rest))
        });
        if let Some(kind) = legacy_window {
            let tvf = match kind {
                "tumble" => "TUMBLE(TABLE space.t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)",
                "hop" => {
                    "HOP(TABLE space.t, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE)"
                }
                _ => "SESSION(TABLE space.t PARTITION BY key, DESCRIPTOR(ts), INTERVAL '5' MINUTE)",
            };
            refusal = Some(refuse(
                format!(
                    "{}(…), Flink's older group-window syntax, runs in the pipeline's outer SELECT over one table, not here",
                    name.to_ascii_uppercase()
                ),
                format!(
                    "use the window table-valued function, as Flink recommends: FROM TABLE({tvf}) … GROUP BY window_start, window_end, …, selecting window_start and window_end"
                ),
            ));
        } else if function.over.is_some() && ["rank", "dense_rank"].contains(&name.as_str()) {
            refusal = Some(refuse(
                format!(
                    "{}() OVER (…), Flink's Top-N with ties, is not supported in pipelines yet",
                    name.to_ascii_uppercase()
                ),
                "for a Top-N without ties, use ROW_NUMBER() OVER (PARTITION BY key ORDER BY …) with WHERE rn <= N; to rank, query the table with strata query, where RANK runs".to_string(),
            ));
        }
        match refusal {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    });
    refusal.map_or(Ok(()), Err)
}

/// Windows over processing time close on the wall clock, which nothing
/// else of a pipeline reads: they run as one window aggregation (or SELECT)
/// over one table, not joined or beside anything that reads event time.
fn refuse_processing_time_beside(pipeline: &Pipeline, sources: &[TableDef]) -> Result<()> {
    let Some(tvf) = pipeline.windows().find(|tvf| tvf.processing_time) else {
        return Ok(());
    };
    let versioned = pipeline.lookups.iter().any(|lookup| {
        sources
            .iter()
            .find(|t| t.name == lookup.table.table)
            .is_some_and(|table| crate::registry::connector(table).versions(table))
    });
    let beside = if pipeline.aligned {
        Some("joined or in a subquery (a window join or a window-aligned query runs on event time)")
    } else if pipeline.settings.allowed_lateness_ms > 0 {
        Some("with allowed lateness (no row comes late to a window over processing time)")
    } else if versioned {
        Some("beside an event-time temporal join (whose versions wait for event time)")
    } else if first_call(&pipeline.query, &["current_watermark"]).is_some() {
        Some(
            "beside CURRENT_WATERMARK (the pipeline's watermark is the clock then, not event time)",
        )
    } else {
        None
    };
    match beside {
        Some(beside) => Err(PipelineError::Invalid {
            location: tvf.time_location.clone(),
            message: format!(
                "a window over processing time ({}) {beside} is not supported",
                tvf.time_column
            ),
            hint: Some(
                "aggregate the window over processing time in a pipeline of its own, or window over event time (a column with a WATERMARK)"
                    .to_string(),
            ),
        }),
        None => Ok(()),
    }
}

/// A stream's `PROCTIME()` column named in the query (a lookup join's
/// `FOR SYSTEM_TIME AS OF` is not in it any more) reads the clock, as in
/// Flink: each reference becomes a `PROCTIME()` call, evaluated per batch,
/// and a SELECT item keeps the column's name.
fn read_processing_time(pipeline: &mut Pipeline, sources: &[TableDef]) {
    use sqlparser::ast::{SelectItem, SetExpr, visit_expressions_mut};
    let windows_proctime: Vec<String> = pipeline
        .windows()
        .filter(|tvf| tvf.processing_time)
        .map(|tvf| tvf.time_column.clone())
        .collect();
    let columns: Vec<&str> = sources
        .iter()
        .filter_map(|source| source.processing_time.as_deref())
        .chain(windows_proctime.iter().map(String::as_str))
        .collect();
    let names = |expr: &Expr| -> Option<String> {
        let ident = match expr {
            Expr::Identifier(ident) => ident,
            Expr::CompoundIdentifier(parts) => parts.last()?,
            _ => return None,
        };
        columns
            .contains(&ident.value.as_str())
            .then(|| ident.value.clone())
    };
    if let SetExpr::Select(select) = pipeline.query.body.as_mut() {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && let Some(name) = names(expr)
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: sqlparser::ast::Ident::new(name),
                };
            }
        }
    }
    let _ = visit_expressions_mut(&mut pipeline.query, |expr| {
        if names(expr).is_some() {
            *expr = Expr::Function(sqlparser::ast::Function {
                name: sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new(
                    "PROCTIME",
                )]),
                uses_odbc_syntax: false,
                parameters: sqlparser::ast::FunctionArguments::None,
                args: sqlparser::ast::FunctionArguments::List(
                    sqlparser::ast::FunctionArgumentList {
                        duplicate_treatment: None,
                        args: Vec::new(),
                        clauses: Vec::new(),
                    },
                ),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The window TVF's DESCRIPTOR column must be a timestamp of the source, or
/// a `PROCTIME()` column (the table's, or the view's it reads), which makes
/// it a window over processing time.
fn check_window_time(tvf: &mut WindowTvf, source: &TableDef) -> Result<()> {
    if tvf.processing_time {
        if source.schema.field_with_name(&tvf.time_column).is_ok() {
            return Err(PipelineError::Invalid {
                location: tvf.time_location.clone(),
                message: format!(
                    "{} is both a column of {} and the view's PROCTIME() column",
                    tvf.time_column, source.name
                ),
                hint: Some("give the PROCTIME() column a name of its own".to_string()),
            });
        }
        return Ok(());
    }
    if source.processing_time.as_deref() == Some(tvf.time_column.as_str()) {
        tvf.processing_time = true;
        return Ok(());
    }
    match source.schema.field_with_name(&tvf.time_column) {
        Ok(field) if matches!(field.data_type(), DataType::Timestamp(_, _)) => Ok(()),
        Ok(field) => Err(PipelineError::Invalid {
            location: tvf.time_location.clone(),
            message: format!(
                "{} is {}, but a window needs a TIMESTAMP column",
                tvf.time_column,
                flink_type_name(field.data_type())
            ),
            hint: Some("use the table's event-time (WATERMARK FOR) column".to_string()),
        }),
        Err(_) => Err(PipelineError::Invalid {
            location: tvf.time_location.clone(),
            message: format!("{} has no column {}", source.name, tvf.time_column),
            hint: Some(match &source.watermark {
                Some(w) => format!("its event-time column is {}", w.column),
                None => "name a TIMESTAMP column of the table".to_string(),
            }),
        }),
    }
}

/// Whether a table is a changelog (inserts, updates and deletes) rather than append-only.
pub fn is_changelog(table: &TableDef) -> bool {
    crate::registry::stream_of(table).is_ok_and(|reads| reads.changelog)
}

/// Results that change after they were written (GROUP BY without a window,
/// windows with allowed lateness, anything read from a changelog) are
/// upserted: the target needs a primary key.
fn check_upsert_target(
    pipeline: &Pipeline,
    aggregates: bool,
    sources: &[TableDef],
    target: &TableDef,
) -> Result<()> {
    let changelog = sources.iter().any(is_changelog);
    let serving = crate::registry::connector(target).upserts_only();
    let updates = changelog
        || serving
        || (aggregates && (pipeline.window.is_none() || pipeline.settings.allowed_lateness_ms > 0));
    // A target that takes retractions without a key (a blackhole) gets a
    // retracting changelog instead (the plan checks that it is one).
    let takes_retractions = crate::registry::connector(target).takes_retractions_unkeyed(target);
    if !updates || !target.primary_key.is_empty() || takes_retractions {
        return Ok(());
    }
    let why = if serving {
        "a MySQL/TiDB serving table is written by upserts"
    } else if changelog {
        "the source is a changelog, whose updates and deletes change rows already written"
    } else if pipeline.window.is_none() {
        "a GROUP BY without a window updates its rows as data arrives"
    } else {
        "with allowed lateness, a window's row is updated when a late row arrives"
    };
    Err(PipelineError::Invalid {
        location: pipeline.target.location.clone(),
        message: format!("{why}, so {} needs a PRIMARY KEY to upsert by", target.name),
        hint: Some(
            "declare PRIMARY KEY (<the grouping columns>) NOT ENFORCED on the target table"
                .to_string(),
        ),
    })
}

/// The SELECT's output schema, and whether it aggregates.
/// The query's output columns, whether it aggregates, and the table its
/// leftmost scan reads (the stream the others are joined or unioned to).
async fn plan_output(
    ctx: &SessionContext,
    pipeline: &Pipeline,
) -> Result<(Arc<Schema>, bool, Option<TableName>)> {
    let statement = datafusion::sql::parser::Statement::Statement(Box::new(Statement::Query(
        pipeline.query.clone(),
    )));
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|err| planning_error(pipeline, &err.strip_backtrace(), ctx))?;
    let mut aggregates = false;
    let mut window_bounds_grouped = true;
    let _ = plan.apply(|node| {
        if let datafusion::logical_expr::LogicalPlan::Aggregate(aggregate) = node {
            aggregates = true;
            let grouped = |name: &str| {
                aggregate.group_expr.iter().any(|expr| {
                    matches!(expr, datafusion::logical_expr::Expr::Column(c) if c.name == name)
                })
            };
            window_bounds_grouped = grouped(WINDOW_START) && grouped(WINDOW_END);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    if let Some(tvf) = &pipeline.window
        && !pipeline.aligned
        && aggregates
        && !window_bounds_grouped
    {
        return Err(PipelineError::Invalid {
            location: tvf.time_location.clone(),
            message: "a window aggregation must GROUP BY window_start, window_end".to_string(),
            hint: Some(
                "add window_start, window_end to the GROUP BY (and usually to the SELECT)"
                    .to_string(),
            ),
        });
    }
    Ok((
        Arc::new(plan.schema().as_arrow().clone()),
        aggregates,
        leftmost_table(&plan),
    ))
}

/// The table the leftmost scan of `plan` reads.
fn leftmost_table(plan: &datafusion::logical_expr::LogicalPlan) -> Option<TableName> {
    match plan {
        datafusion::logical_expr::LogicalPlan::TableScan(scan) => Some(TableName::new(
            scan.table_name.schema()?,
            scan.table_name.table(),
        )),
        other => leftmost_table(other.inputs().first()?),
    }
}

/// Points a planning error at the name it is about, when it names one.
fn planning_error(pipeline: &Pipeline, message: &str, ctx: &SessionContext) -> PipelineError {
    let query_start = pipeline.query.span().start;
    let mut location = pipeline.location(query_start.line, query_start.column);
    let mut hint = None;
    if let Some(unknown) = message
        .split("Invalid function '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    {
        return unknown_function(pipeline, unknown, ctx);
    }
    if let Some(rest) = message.split("No field named ").nth(1) {
        let column = rest
            .split_whitespace()
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.');
        let column = column
            .rsplit('.')
            .next()
            .unwrap_or(column)
            .trim_matches('"');
        if let Some((line, column)) = find_identifier(pipeline, column) {
            location = pipeline.location(line, column);
        }
        hint =
            Some("check the column's name against `strata catalog show SPACE.TABLE`".to_string());
    }
    PipelineError::Invalid {
        location,
        message: message.lines().next().unwrap_or(message).to_string(),
        hint,
    }
}

/// A call of a function no session knows: pointed at the call, with the
/// known functions whose names are nearest.
fn unknown_function(pipeline: &Pipeline, name: &str, ctx: &SessionContext) -> PipelineError {
    use datafusion::common::utils::datafusion_strsim::levenshtein;
    let state = ctx.state();
    let known: BTreeSet<&String> = state
        .scalar_functions()
        .keys()
        .chain(state.aggregate_functions().keys())
        .chain(state.window_functions().keys())
        .collect();
    let wanted = name.to_ascii_lowercase();
    let mut nearest: Vec<(usize, &String)> = known
        .into_iter()
        .map(|known| (levenshtein(&wanted, known), known))
        .filter(|(distance, known)| *distance <= (wanted.len().max(known.len()) / 2).max(1))
        .collect();
    nearest.sort();
    let nearest: Vec<String> = nearest
        .iter()
        .take(3)
        .map(|(_, name)| name.to_ascii_uppercase())
        .collect();
    let start = first_call(&pipeline.query, &[&name.to_ascii_lowercase()])
        .map_or(pipeline.query.span().start, |(_, start)| start);
    PipelineError::Invalid {
        location: pipeline.location(start.line, start.column),
        message: match nearest.as_slice() {
            [] => format!("unknown function {}", name.to_ascii_uppercase()),
            near => format!(
                "unknown function {}; the nearest known: {}",
                name.to_ascii_uppercase(),
                near.join(", ")
            ),
        },
        hint: Some("pipelines run DataFusion's functions and the Flink functions docs/pipelines.md lists (Flink's functions)".to_string()),
    }
}

/// The first call in `query` of a function named one of `names` (in lower
/// case): its name, in lower case, and where it starts.
pub(crate) fn first_call(
    query: &sqlparser::ast::Query,
    names: &[&str],
) -> Option<(String, sqlparser::tokenizer::Location)> {
    let mut found = None;
    let _ = visit_expressions(query, |expr| {
        if let Expr::Function(function) = expr {
            let name = function.name.to_string().to_ascii_lowercase();
            if names.contains(&name.as_str()) {
                found = Some((name, function.span().start));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}

fn find_identifier(pipeline: &Pipeline, column: &str) -> Option<(u64, u64)> {
    let mut found = None;
    let _ = visit_expressions(&pipeline.query, |expr| {
        let ident = match expr {
            Expr::Identifier(ident) => Some(ident),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(ident) = ident.filter(|i| i.value.eq_ignore_ascii_case(column)) {
            let start = ident.span.start;
            found = Some((start.line, start.column));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// The SELECT's columns must match the target's, by position, in number and type.
fn check_fits(pipeline: &Pipeline, output: &Schema, target: &TableDef) -> Result<()> {
    let start = pipeline.query.span().start;
    let location = pipeline.location(start.line, start.column);
    if output.fields().len() != target.schema.fields().len() {
        let names: Vec<&str> = target
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        return Err(PipelineError::Invalid {
            location,
            message: format!(
                "the SELECT produces {} columns, but {} has {}",
                output.fields().len(),
                target.name,
                target.schema.fields().len()
            ),
            hint: Some(format!("select, in order: {}", names.join(", "))),
        });
    }
    for (position, (produced, wanted)) in output
        .fields()
        .iter()
        .zip(target.schema.fields())
        .enumerate()
    {
        if !assignable(produced.data_type(), wanted.data_type()) {
            // Named as the SELECT writes it, not by the plan's internal name
            // (`sum(__window.shop__ods_orders.amount)`).
            let (name, at) =
                select_item(pipeline, position, output.fields().len()).unwrap_or_else(|| {
                    let at = find_identifier(pipeline, produced.name())
                        .map(|(line, column)| pipeline.location(line, column))
                        .unwrap_or_else(|| location.clone());
                    (produced.name().clone(), at)
                });
            return Err(PipelineError::Invalid {
                location: at,
                message: format!(
                    "column {name} is {}, but {}.{} is {}",
                    flink_type_name(produced.data_type()),
                    target.name,
                    wanted.name(),
                    flink_type_name(wanted.data_type())
                ),
                hint: Some(format!(
                    "CAST it: CAST({name} AS {})",
                    flink_type_name(wanted.data_type())
                )),
            });
        }
    }
    Ok(())
}

/// The `position`th item of the pipeline's SELECT as written, and where, when
/// its items are the output's columns one for one (no `*`).
fn select_item(
    pipeline: &Pipeline,
    position: usize,
    columns: usize,
) -> Option<(String, SourceLocation)> {
    use sqlparser::ast::{SelectItem, SetExpr};
    let SetExpr::Select(select) = pipeline.query.body.as_ref() else {
        return None;
    };
    if select.projection.len() != columns {
        return None;
    }
    let expr = match &select.projection[position] {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return None,
    };
    let start = expr.span().start;
    (start.line > 0).then(|| {
        (
            expr.to_string(),
            pipeline.location(start.line, start.column),
        )
    })
}

/// Whether a value of `from` goes into a column of `to` without an explicit
/// cast: the same kind of value, only ever widened (never narrowed, never a
/// different kind), so no value can fail to fit.
pub fn assignable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let is_text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let is_binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    let unit_rank = |unit: &arrow::datatypes::TimeUnit| match unit {
        arrow::datatypes::TimeUnit::Second => 0,
        arrow::datatypes::TimeUnit::Millisecond => 1,
        arrow::datatypes::TimeUnit::Microsecond => 2,
        arrow::datatypes::TimeUnit::Nanosecond => 3,
    };
    match (from, to) {
        (Null, _) => true,
        (a, b) if a == b => true,
        (a, b) if is_text(a) && is_text(b) => true,
        (a, b) if is_binary(a) && is_binary(b) => true,
        (a, b) if a.is_integer() && b.is_integer() => integer_widens(a, b),
        (a, Float64) if a.is_integer() => true,
        (Float32, Float64) => true,
        (a, Decimal128(precision, scale)) if a.is_integer() => {
            integer_digits(a) <= i64::from(*precision) - i64::from(*scale)
        }
        // One digit of slack: DataFusion counts a BIGINT as DECIMAL(20, 0) where Flink
        // counts DECIMAL(19, 0), so Flink's `0.908 * price` (DECIMAL(23, 3)) is
        // DECIMAL(24, 3) here. The cast to the target checks every value.
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s1 <= s2 && i64::from(*p1) - i64::from(*s1) <= i64::from(*p2) - i64::from(*s2) + 1
        }
        (Decimal128(_, _), Float64) => true,
        (Timestamp(from_unit, _), Timestamp(to_unit, _)) => {
            unit_rank(from_unit) <= unit_rank(to_unit)
        }
        (Date32 | Date64, Date32 | Date64 | Timestamp(_, _)) => true,
        (List(a), List(b)) => assignable(a.data_type(), b.data_type()),
        _ => false,
    }
}

/// Signed widths widen; unsigned values fit a wider unsigned or a strictly wider signed type.
fn integer_widens(from: &DataType, to: &DataType) -> bool {
    let bits = |t: &DataType| t.primitive_width().unwrap_or(8) * 8;
    match (from.is_signed_integer(), to.is_signed_integer()) {
        (true, true) | (false, false) => bits(from) <= bits(to),
        (false, true) => bits(from) < bits(to),
        (true, false) => false,
    }
}

fn integer_digits(data_type: &DataType) -> i64 {
    match data_type {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        _ => 20,
    }
}

/// Orders pipelines so that each runs after those that fill its sources;
/// refuses cycles, naming them.
fn dependency_order(pipelines: Vec<ValidPipeline>) -> Result<Vec<ValidPipeline>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<_> = (0..pipelines.len()).map(|i| graph.add_node(i)).collect();
    let mut writers: HashMap<&TableName, Vec<usize>> = HashMap::new();
    for (index, valid) in pipelines.iter().enumerate() {
        writers.entry(&valid.target.name).or_default().push(index);
    }
    for (index, valid) in pipelines.iter().enumerate() {
        for source in &valid.sources {
            for &writer in writers.get(&source.name).into_iter().flatten() {
                graph.add_edge(nodes[writer], nodes[index], ());
            }
        }
    }
    let order = match petgraph::algo::toposort(&graph, None) {
        Ok(order) => order,
        Err(_) => {
            let cycle = petgraph::algo::tarjan_scc(&graph)
                .into_iter()
                .find(|component| {
                    component.len() > 1 || graph.contains_edge(component[0], component[0])
                })
                .unwrap_or_default();
            let mut names: Vec<String> = cycle
                .iter()
                .map(|node| {
                    let valid = &pipelines[graph[*node]];
                    format!("{} ({})", valid.target.name, valid.pipeline.file.display())
                })
                .collect();
            names.sort();
            if let Some(first) = names.first().cloned() {
                names.push(first);
            }
            return Err(PipelineError::Cycle { cycle: names });
        }
    };
    let mut slots: Vec<Option<ValidPipeline>> = pipelines.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|node| slots[graph[node]].take().expect("each node once"))
        .collect())
}
