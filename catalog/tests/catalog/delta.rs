//! Delta tables on the local filesystem: creation on registration, queries,
//! discovery from the log, and roll-back of half-done registrations.

use arrow::util::pretty::pretty_format_batches;
use strata_catalog::connectors::delta;
use strata_catalog::{Catalog, DiscoverOptions, RegisterMode, TableKind};

use crate::support::project;

const DWD_ORDERS: &str = "CREATE TABLE shop.dwd_orders (
  order_id BIGINT, city STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3),
  PRIMARY KEY (order_id) NOT ENFORCED
) WITH ('connector' = 'delta');";

#[tokio::test]
async fn registering_a_delta_table_creates_it_and_queries_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(project(dir.path(), "[lake]\nroot = \"lake\"\n"))
        .await
        .unwrap();
    let registered = catalog
        .register_sql("dwd.sql", DWD_ORDERS, RegisterMode::Create)
        .await
        .unwrap();
    let location = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("lake/shop/dwd_orders");
    assert!(location.join("_delta_log").is_dir());
    assert!(
        registered[0]
            .storage
            .as_deref()
            .unwrap()
            .contains("created an empty Delta table")
    );

    catalog
        .query(
            "INSERT INTO shop.dwd_orders VALUES
               (1, 'Beijing', 10.50, TIMESTAMP '2024-05-01 10:00:00.250'),
               (2, 'Shanghai', 3.00, TIMESTAMP '2024-05-01 10:00:01')",
        )
        .await
        .unwrap();
    let result = catalog
        .query("SELECT city, sum(amount) AS gmv FROM shop.dwd_orders GROUP BY city ORDER BY city")
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&result.batches).unwrap().to_string(),
        "+----------+-------+\n| city     | gmv   |\n+----------+-------+\n| Beijing  | 10.50 |\n| Shanghai | 3.00  |\n+----------+-------+"
    );

    // Registering the same table again elsewhere finds the table and its rows.
    let other_dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[connections.lake]\nkind = \"delta\"\nroot = \"{}\"\n",
        dir.path().join("lake").display()
    );
    let other = Catalog::open(project(other_dir.path(), &config))
        .await
        .unwrap();
    let discovery = other
        .discover(
            "lake",
            &DiscoverOptions {
                space: Some("history".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(discovery.tables.len(), 1);
    let found = &discovery.tables[0];
    assert_eq!(found.name.to_string(), "history.dwd_orders");
    assert!(
        matches!(&found.kind, TableKind::Delta { table_path: Some(p), .. } if p == "shop/dwd_orders")
    );
    assert_eq!(found.schema.fields().len(), 4);
    other
        .register(discovery.tables, RegisterMode::Create)
        .await
        .unwrap();
    let count = other
        .query("SELECT count(*) AS n FROM history.dwd_orders")
        .await
        .unwrap();
    assert!(
        pretty_format_batches(&count.batches)
            .unwrap()
            .to_string()
            .contains("| 2 |")
    );
}

#[tokio::test]
async fn optimize_compacts_small_files_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(project(dir.path(), "")).await.unwrap();
    catalog
        .register_sql("dwd.sql", DWD_ORDERS, RegisterMode::Create)
        .await
        .unwrap();
    for id in 0..4 {
        catalog
            .query(&format!("INSERT INTO shop.dwd_orders VALUES ({id}, 'c', 1.00, TIMESTAMP '2024-05-01 10:00:00')"))
            .await
            .unwrap();
    }
    let name = "shop.dwd_orders".parse().unwrap();
    let compaction = catalog.optimize(&name).await.unwrap();
    assert_eq!((compaction.files_removed, compaction.files_added), (4, 1));
    let count = catalog
        .query("SELECT count(*) AS n FROM shop.dwd_orders")
        .await
        .unwrap();
    assert!(
        pretty_format_batches(&count.batches)
            .unwrap()
            .to_string()
            .contains("| 4 |")
    );
    let log = dir.path().join("lake/shop/dwd_orders/_delta_log");
    let checkpoints = std::fs::read_dir(log)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".checkpoint."));
    assert_eq!(checkpoints.count(), 1, "the log was not checkpointed");
}

#[tokio::test]
async fn an_existing_delta_table_must_have_the_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let location = lake.join("shop/dwd_orders").display().to_string();
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "order_id",
        arrow::datatypes::DataType::Int64,
        false,
    )]);
    delta::create(&location, "dwd_orders", &schema, &[])
        .await
        .unwrap();
    let catalog = Catalog::open(project(dir.path(), "")).await.unwrap();
    let err = catalog
        .register_sql("dwd.sql", DWD_ORDERS, RegisterMode::Create)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no column city") && err.contains("its columns are order_id"),
        "{err}"
    );
    assert!(catalog.list().await.unwrap().is_empty());
    assert!(
        delta::exists(&location).await.unwrap(),
        "the user's table must stay"
    );
}

#[tokio::test]
async fn a_failed_registration_removes_the_delta_tables_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(project(dir.path(), "")).await.unwrap();
    let batch = format!(
        "{DWD_ORDERS}
         CREATE TABLE shop.dim_users (id BIGINT) WITH ('connector' = 'mysql',
           'url' = 'mysql://root@127.0.0.1:1/shop', 'table-name' = 'users');"
    );
    let err = catalog
        .register_sql("all.sql", &batch, RegisterMode::Create)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(catalog.list().await.unwrap().is_empty());
    assert!(
        !dir.path().join("lake/shop/dwd_orders").exists(),
        "an empty table was left behind"
    );
}

#[tokio::test]
async fn partitioned_by_makes_delta_partition_folders_that_discovery_and_registration_keep() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(project(dir.path(), "[lake]\nroot = \"lake\"\n"))
        .await
        .unwrap();
    catalog
        .register_sql(
            "dwd.sql",
            "CREATE TABLE shop.dwd_visits (user_id BIGINT, url STRING, dt STRING) PARTITIONED BY (dt) WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    catalog
        .query(
            "INSERT INTO shop.dwd_visits VALUES (1, '/a', '2024-05-01'), (2, '/b', '2024-05-02')",
        )
        .await
        .unwrap();
    let lake = dir.path().canonicalize().unwrap().join("lake");
    let location = lake.join("shop/dwd_visits");
    for day in ["2024-05-01", "2024-05-02"] {
        assert!(
            location.join(format!("dt={day}")).is_dir(),
            "no folder for {day}"
        );
    }
    assert_eq!(
        delta::read_layout(location.to_str().unwrap())
            .await
            .unwrap()
            .1,
        ["dt"]
    );

    // Declared otherwise, the table is refused with its partitioning.
    let err = catalog
        .register_sql(
            "dwd.sql",
            "CREATE TABLE shop.dwd_visits (user_id BIGINT, url STRING, dt STRING) WITH ('connector' = 'delta');",
            RegisterMode::Update,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is PARTITIONED BY (dt), but dwd_visits is declared not partitioned"),
        "{err}"
    );

    // Discovery reads the partitioning from the log.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Catalog::open(project(
        other_dir.path(),
        &format!(
            "[connections.lake]\nkind = \"delta\"\nroot = \"{}\"\n",
            lake.display()
        ),
    ))
    .await
    .unwrap();
    let discovery = other
        .discover("lake", &DiscoverOptions::default())
        .await
        .unwrap();
    let found = &discovery.tables[0];
    assert!(
        matches!(&found.kind, TableKind::Delta { partitioned_by, .. } if partitioned_by == &["dt"]),
        "{:?}",
        found.kind
    );
    other
        .register(discovery.tables, RegisterMode::Create)
        .await
        .unwrap();
    let rows = other
        .query("SELECT dt, user_id FROM lake.dwd_visits WHERE dt = '2024-05-02'")
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&rows.batches).unwrap().to_string(),
        "+------------+---------+\n| dt         | user_id |\n+------------+---------+\n| 2024-05-02 | 2       |\n+------------+---------+"
    );
}
