//! Column lineage derived from DataFusion plans of hand-written SQL, and the
//! graph's queries (around a node, paths, impact) and storage round trip.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use strata_lineage::{ColumnOrigin, Direction, LineageGraph, PipelineLineage, UseKind};

/// A session with `s.orders (order_id, user_id, amount, status)` and `s.users (id, city)`.
fn session() -> SessionContext {
    let ctx = SessionContext::new();
    let table = |fields: Vec<Field>| {
        let schema = Arc::new(Schema::new(fields));
        Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap())
    };
    ctx.register_table(
        "orders",
        table(vec![
            Field::new("order_id", DataType::Int64, true),
            Field::new("user_id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("status", DataType::Int32, true),
        ]),
    )
    .unwrap();
    ctx.register_table(
        "users",
        table(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("city", DataType::Utf8, true),
        ]),
    )
    .unwrap();
    ctx
}

async fn derive(sql: &str, target_columns: &[&str]) -> PipelineLineage {
    let ctx = session();
    let plan = ctx.state().create_logical_plan(sql).await.unwrap();
    let resolve = |table: &datafusion::common::TableReference, column: &str| {
        Some((format!("s.{}", table.table()), column.to_string()))
    };
    let columns: Vec<String> = target_columns.iter().map(|c| c.to_string()).collect();
    PipelineLineage::derive("p", "s.target", &columns, &plan, &resolve).unwrap()
}

fn origins(lineage: &PipelineLineage, column: &str) -> Vec<(String, UseKind)> {
    let (_, origins) = lineage
        .columns
        .iter()
        .find(|(name, _)| name == column)
        .unwrap();
    origins
        .iter()
        .map(
            |ColumnOrigin {
                 table,
                 column,
                 kind,
             }| (format!("{table}.{column}"), *kind),
        )
        .collect()
}

#[tokio::test]
async fn projections_joins_and_filters_are_told_apart() {
    let lineage = derive(
        "SELECT o.order_id, u.city, o.amount * 2 AS double FROM orders o JOIN users u ON o.user_id = u.id WHERE o.status = 1",
        &["order_id", "city", "double"],
    )
    .await;
    let conditions = [
        ("s.orders.status".to_string(), UseKind::Filter),
        ("s.orders.user_id".to_string(), UseKind::JoinKey),
        ("s.users.id".to_string(), UseKind::JoinKey),
    ];
    let with = |direct: &[(&str, UseKind)]| {
        let mut all: Vec<(String, UseKind)> = direct
            .iter()
            .map(|(c, k)| (c.to_string(), *k))
            .chain(conditions.iter().cloned())
            .collect();
        all.sort();
        all
    };
    let sorted = |mut v: Vec<(String, UseKind)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(origins(&lineage, "city")),
        with(&[("s.users.city", UseKind::Direct)])
    );
    assert_eq!(
        sorted(origins(&lineage, "double")),
        with(&[("s.orders.amount", UseKind::Direct)])
    );
    assert_eq!(lineage.sources, ["s.orders", "s.users"]);
}

#[tokio::test]
async fn aggregates_and_grouping_keys() {
    let lineage = derive(
        "SELECT u.city, SUM(o.amount) AS gmv, COUNT(DISTINCT o.user_id) AS buyers FROM orders o JOIN users u ON o.user_id = u.id GROUP BY u.city",
        &["city", "gmv", "buyers"],
    )
    .await;
    let gmv = origins(&lineage, "gmv");
    assert!(gmv.contains(&("s.orders.amount".to_string(), UseKind::Aggregated)));
    assert!(gmv.contains(&("s.users.city".to_string(), UseKind::GroupBy)));
    let city = origins(&lineage, "city");
    assert!(city.contains(&("s.users.city".to_string(), UseKind::Direct)));
    assert!(!city.contains(&("s.orders.amount".to_string(), UseKind::Aggregated)));
    let buyers = origins(&lineage, "buyers");
    assert!(buyers.contains(&("s.orders.user_id".to_string(), UseKind::Aggregated)));
}

#[tokio::test]
async fn a_window_function_takes_values_from_its_arguments_only() {
    let lineage = derive(
        "SELECT order_id, LAG(amount) OVER (PARTITION BY user_id ORDER BY order_id) AS previous FROM orders",
        &["order_id", "previous"],
    )
    .await;
    let mut previous = origins(&lineage, "previous");
    previous.sort();
    assert_eq!(
        previous,
        [
            ("s.orders.amount".to_string(), UseKind::Direct),
            ("s.orders.order_id".to_string(), UseKind::GroupBy),
            ("s.orders.user_id".to_string(), UseKind::GroupBy),
        ]
    );
}

fn defs() -> Vec<strata_catalog::TableDef> {
    let def =
        |name: &str, layer: strata_catalog::Layer, columns: &[&str]| strata_catalog::TableDef {
            name: name.parse().unwrap(),
            layer,
            kind: strata_catalog::TableKind::Delta {
                table_path: None,
                connection: None,
                partitioned_by: Vec::new(),
            },
            schema: Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(*c, DataType::Int64, true))
                    .collect::<Vec<_>>(),
            )),
            primary_key: Vec::new(),
            watermark: None,
            processing_time: None,
            owner: None,
            description: None,
            tags: Vec::new(),
            lookup: Default::default(),
        };
    use strata_catalog::Layer;
    vec![
        def("s.ods_a", Layer::Ods, &["k", "v", "flag"]),
        def("s.dwd_b", Layer::Dwd, &["k", "v"]),
        def("s.dws_c", Layer::Dws, &["k", "total"]),
    ]
}

fn origin(table: &str, column: &str, kind: UseKind) -> ColumnOrigin {
    ColumnOrigin {
        table: table.to_string(),
        column: column.to_string(),
        kind,
    }
}

/// `s.dws_c` from `s.dwd_b`: `k` as is, `total` summed per `k`.
fn pipeline_c() -> PipelineLineage {
    PipelineLineage {
        name: "c".into(),
        target: "s.dws_c".into(),
        sources: vec!["s.dwd_b".into()],
        columns: vec![
            ("k".into(), vec![origin("s.dwd_b", "k", UseKind::Direct)]),
            (
                "total".into(),
                vec![
                    origin("s.dwd_b", "v", UseKind::Aggregated),
                    origin("s.dwd_b", "k", UseKind::GroupBy),
                ],
            ),
        ],
    }
}

fn graph() -> LineageGraph {
    let pipelines = [
        PipelineLineage {
            name: "b".into(),
            target: "s.dwd_b".into(),
            sources: vec!["s.ods_a".into()],
            columns: vec![
                (
                    "k".into(),
                    vec![
                        origin("s.ods_a", "k", UseKind::Direct),
                        origin("s.ods_a", "flag", UseKind::Filter),
                    ],
                ),
                (
                    "v".into(),
                    vec![
                        origin("s.ods_a", "v", UseKind::Direct),
                        origin("s.ods_a", "flag", UseKind::Filter),
                    ],
                ),
            ],
        },
        pipeline_c(),
    ];
    LineageGraph::build(&defs(), &pipelines)
}

#[test]
fn queries_follow_tables_and_columns_within_the_depth() {
    let graph = graph();
    let ids = |sub: strata_lineage::Subgraph| -> Vec<String> {
        let mut ids: Vec<String> = sub.nodes.iter().map(|n| n.id()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(graph
            .around("s.ods_a", Direction::Downstream, 1, false)
            .unwrap()),
        ["pipeline:b", "s.dwd_b", "s.ods_a"]
    );
    assert_eq!(
        ids(graph
            .around("s.dws_c", Direction::Upstream, 2, false)
            .unwrap())
        .len(),
        5,
        "three tables and two pipelines"
    );
    assert_eq!(
        ids(graph
            .around("s.dws_c.total", Direction::Upstream, 1, true)
            .unwrap()),
        [
            "s.dwd_b",
            "s.dwd_b.k",
            "s.dwd_b.v",
            "s.dws_c",
            "s.dws_c.total"
        ]
    );
    assert_eq!(
        graph.path("s.ods_a.v", "s.dws_c.total").unwrap().unwrap(),
        ["s.ods_a.v", "s.dwd_b.v", "s.dws_c.total"]
    );
    assert_eq!(graph.path("s.dws_c.k", "s.ods_a.v").unwrap(), None);
    let impact = graph.impact("s.ods_a.flag").unwrap();
    assert_eq!(
        impact.columns,
        [
            ("s.dwd_b.k".to_string(), UseKind::Filter, 1),
            ("s.dwd_b.v".to_string(), UseKind::Filter, 1),
            ("s.dws_c.k".to_string(), UseKind::Direct, 2),
            ("s.dws_c.total".to_string(), UseKind::Aggregated, 2),
        ]
    );
    assert_eq!(impact.pipelines, ["pipeline:b", "pipeline:c"]);
    let err = graph.node("s.dwd_bb").unwrap_err().to_string();
    assert!(err.contains("did you mean"), "{err}");
}

#[test]
fn a_stored_graph_reads_back_the_same() {
    let graph = graph();
    let again = LineageGraph::from_json(&graph.to_json()).unwrap();
    assert_eq!(again.to_json(), graph.to_json());
    assert_eq!(again.node_count(), graph.node_count());
}

/// The OpenLineage JSON Schemas, as the crates.io package datafusion-openlineage
/// 0.0.12 ships them (`scripts/openlineage-spec.sh` fetches them; `scripts/test.sh`
/// sets `OPENLINEAGE_SPEC_DIR`).
fn spec(file: &str) -> serde_json::Value {
    let dir = std::env::var("OPENLINEAGE_SPEC_DIR").unwrap_or_else(|_| {
        panic!("OPENLINEAGE_SPEC_DIR is not set: run the tests with scripts/test.sh, or export OPENLINEAGE_SPEC_DIR=$(scripts/openlineage-spec.sh)")
    });
    let path = std::path::Path::new(&dir).join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn validator(file: &str, registry: &jsonschema::Registry) -> jsonschema::Validator {
    jsonschema::options()
        .with_registry(registry)
        .build(&spec(file))
        .unwrap_or_else(|err| panic!("{file} does not compile: {err}"))
}

fn assert_valid(validator: &jsonschema::Validator, value: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is not valid OpenLineage:\n  - {}\n{}",
        errors.join("\n  - "),
        serde_json::to_string_pretty(value).unwrap()
    );
}

#[test]
fn run_events_validate_against_the_openlineage_spec() {
    use strata_lineage::openlineage::{EventType, Progress, RunContext};
    let core = spec("OpenLineage.json");
    let registry = jsonschema::Registry::new()
        .add(
            "https://openlineage.io/spec/2-0-2/OpenLineage.json",
            jsonschema::Resource::from_contents(core),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let event = validator("OpenLineage.json", &registry);
    let facets = [
        ("facets/SchemaDatasetFacet.json", "schema"),
        ("facets/ColumnLineageDatasetFacet.json", "columnLineage"),
    ];
    let job_facets = [
        ("facets/SQLJobFacet.json", "sql"),
        ("facets/JobTypeJobFacet.json", "jobType"),
    ];
    let context = RunContext {
        namespace: "strata".into(),
        run_id: "0190f0b2-7c1e-7a3e-9d4e-1b2c3d4e5f60".into(),
        lineage: pipeline_c(),
        sql: "INSERT INTO s.dws_c SELECT k, SUM(v) FROM s.dwd_b GROUP BY k".into(),
        tables: defs(),
    };
    let time = "2026-11-21T10:00:00.000Z";
    let events = [
        context.event(EventType::Start, time, &Progress::default()),
        context.event(
            EventType::Running,
            time,
            &Progress {
                rows: Some(42),
                error: None,
            },
        ),
        context.event(EventType::Complete, time, &Progress::default()),
        context.event(
            EventType::Fail,
            time,
            &Progress {
                rows: None,
                error: Some("the target is gone".into()),
            },
        ),
    ];
    for e in &events {
        let kind = e["eventType"].as_str().unwrap();
        assert_valid(&event, e, kind);
        for (file, key) in facets {
            let facet = &e["outputs"][0]["facets"][key];
            assert!(!facet.is_null(), "{kind} has an output {key} facet");
            assert_valid(
                &validator(file, &registry),
                &serde_json::json!({ key: facet }),
                key,
            );
        }
        assert!(!e["inputs"][0]["facets"]["schema"].is_null());
        for (file, key) in job_facets {
            let facet = &e["job"]["facets"][key];
            assert_valid(
                &validator(file, &registry),
                &serde_json::json!({ key: facet }),
                key,
            );
        }
    }
    let statistics = &events[1]["outputs"][0]["outputFacets"]["outputStatistics"];
    assert_eq!(statistics["rowCount"], 42);
    assert_valid(
        &validator("facets/OutputStatisticsOutputDatasetFacet.json", &registry),
        &serde_json::json!({ "outputStatistics": statistics }),
        "outputStatistics",
    );
    let error = &events[3]["run"]["facets"]["errorMessage"];
    assert_eq!(error["message"], "the target is gone");
    assert_valid(
        &validator("facets/ErrorMessageRunFacet.json", &registry),
        &serde_json::json!({ "errorMessage": error }),
        "errorMessage",
    );
    let lineage =
        &events[0]["outputs"][0]["facets"]["columnLineage"]["fields"]["total"]["inputFields"];
    assert_eq!(lineage[0]["field"], "v");
    assert_eq!(lineage[0]["transformations"][0]["subtype"], "AGGREGATION");
    assert_eq!(lineage[1]["transformations"][0]["type"], "INDIRECT");
}
