//! TiDB/MySQL tables against the local MariaDB: registration checks,
//! discovery from information_schema, and queries with pushdown.

use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use strata_catalog::{Catalog, CatalogError, DiscoverOptions, Layer, RegisterMode, TableName};

use crate::support::{MysqlDatabase, project};

const SCHEMA: &str = "
CREATE TABLE users (
  id BIGINT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  city VARCHAR(32),
  level INT,
  balance DECIMAL(12, 2),
  active TINYINT(1) NOT NULL DEFAULT 1,
  born DATE,
  signed_up DATETIME(3),
  photo BLOB
);
INSERT INTO users VALUES
  (1, 'Li Lei', 'Beijing', 3, 1024.50, 1, '1990-03-04', '2024-01-05 10:00:00.125', x'CAFE'),
  (2, 'Han Meimei', 'Shanghai', 2, 7.00, 0, NULL, '2024-02-11 09:30:00.000', NULL),
  (3, 'Wang Fang', 'beijing', 1, NULL, 1, '2001-12-31', NULL, NULL);
CREATE TABLE dim_regions (city VARCHAR(32), region VARCHAR(32), PRIMARY KEY (city));
CREATE TABLE dim_shapes (id INT PRIMARY KEY, outline GEOMETRY);
";

async fn setup() -> (MysqlDatabase, tempfile::TempDir, Catalog) {
    let db = MysqlDatabase::create("mysql").await;
    db.execute(SCHEMA).await;
    let dir = tempfile::tempdir().unwrap();
    let project = project(
        dir.path(),
        &format!(
            "[connections.shop_db]\nkind = \"mysql\"\nurl = \"{}\"\n",
            db.url
        ),
    );
    let catalog = Catalog::open(project).await.unwrap();
    (db, dir, catalog)
}

const DIM_USERS: &str = "CREATE TABLE shop.dim_users (
  id BIGINT, name STRING, city STRING, level INT, balance DECIMAL(12, 2), active BOOLEAN,
  born DATE, signed_up TIMESTAMP(3), photo BYTES,
  PRIMARY KEY (id) NOT ENFORCED
) WITH ('connector' = 'mysql', 'connection' = 'shop_db', 'table-name' = 'users');";

#[tokio::test]
async fn registered_mysql_tables_answer_queries_with_exact_values() {
    let (_db, _dir, catalog) = setup().await;
    catalog
        .register_sql("dim.sql", DIM_USERS, RegisterMode::Create)
        .await
        .unwrap();
    let result = catalog
        .query("SELECT id, name, balance, active, born, signed_up, photo FROM shop.dim_users ORDER BY id")
        .await
        .unwrap();
    let text = pretty_format_batches(&result.batches).unwrap().to_string();
    let expected = "\
+----+------------+---------+--------+------------+-------------------------+-------+
| id | name       | balance | active | born       | signed_up               | photo |
+----+------------+---------+--------+------------+-------------------------+-------+
| 1  | Li Lei     | 1024.50 | true   | 1990-03-04 | 2024-01-05T10:00:00.125 | cafe  |
| 2  | Han Meimei | 7.00    | false  |            | 2024-02-11T09:30:00     |       |
| 3  | Wang Fang  |         | true   | 2001-12-31 |                         |       |
+----+------------+---------+--------+------------+-------------------------+-------+";
    assert_eq!(text, expected);
}

#[tokio::test]
async fn filters_reach_mysql_and_results_keep_arrow_semantics() {
    let (_db, _dir, catalog) = setup().await;
    catalog
        .register_sql("dim.sql", DIM_USERS, RegisterMode::Create)
        .await
        .unwrap();
    // MariaDB's collation matches 'beijing' too; DataFusion re-checks, so the answer is exact.
    let result = catalog
        .query("SELECT id FROM shop.dim_users WHERE city = 'Beijing' AND level > 0")
        .await
        .unwrap();
    let ids = pretty_format_batches(&result.batches).unwrap().to_string();
    assert!(ids.contains("| 1  |") && !ids.contains("| 3  |"), "{ids}");

    // Negations are not pushed: the collation would drop 'Beijing' along with 'beijing'.
    let result = catalog
        .query("SELECT id FROM shop.dim_users WHERE city <> 'beijing' ORDER BY id")
        .await
        .unwrap();
    let ids = pretty_format_batches(&result.batches).unwrap().to_string();
    assert!(
        ids.contains("| 1  |") && ids.contains("| 2  |") && !ids.contains("| 3  |"),
        "{ids}"
    );
    // A literal that could end MySQL's string is never sent; the table survives.
    let sneaky = r"SELECT id FROM shop.dim_users WHERE city = '\''; DROP TABLE users; -- '";
    catalog.query(sneaky).await.unwrap();
    let still = catalog
        .query("SELECT count(*) AS n FROM shop.dim_users")
        .await
        .unwrap();
    assert!(
        pretty_format_batches(&still.batches)
            .unwrap()
            .to_string()
            .contains("| 3 |")
    );

    let ctx = catalog.session().await.unwrap();
    let plan = ctx
        .sql("EXPLAIN SELECT name FROM shop.dim_users WHERE level >= 2")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let plan = pretty_format_batches(&plan).unwrap().to_string();
    assert!(
        plan.contains("partial_filters=[level@") || plan.contains("filters=["),
        "{plan}"
    );
}

#[tokio::test]
async fn mysql_registration_checks_the_table_and_leaves_nothing_behind() {
    let (_db, _dir, catalog) = setup().await;
    let missing_table = DIM_USERS.replace("'users'", "'no_such_table'");
    let err = catalog
        .register_sql("dim.sql", &missing_table, RegisterMode::Create)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no table") && err.contains("no_such_table"),
        "{err}"
    );

    let missing_column = DIM_USERS.replace("level INT", "lvl INT");
    let err = catalog
        .register_sql("dim.sql", &missing_column, RegisterMode::Create)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column lvl") && err.contains("its columns are id, name"),
        "{err}"
    );
    assert!(catalog.list().await.unwrap().is_empty());

    // An update batch is all or nothing too: a failing table keeps the others as they were.
    catalog
        .register_sql("dim.sql", DIM_USERS, RegisterMode::Create)
        .await
        .unwrap();
    let commented = DIM_USERS.replace("photo BYTES", "photo BYTES COMMENT 'avatar'");
    let other = missing_table.replace("shop.dim_users", "shop.dim_missing");
    let batch = format!("{commented}\n{other}");
    let err = catalog
        .register_sql("dim.sql", &batch, RegisterMode::Update)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    let users = catalog
        .get(&TableName::new("shop", "dim_users"))
        .await
        .unwrap();
    assert!(
        users
            .def
            .schema
            .field_with_name("photo")
            .unwrap()
            .metadata()
            .is_empty(),
        "update half-applied"
    );

    // IF NOT EXISTS leaves an existing table alone, without an error.
    let again = catalog
        .register_sql(
            "dim.sql",
            &DIM_USERS.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"),
            RegisterMode::Create,
        )
        .await
        .unwrap();
    assert_eq!(again[0].action, strata_catalog::RegisterAction::Unchanged);
    let err = catalog
        .register_sql("dim.sql", DIM_USERS, RegisterMode::Create)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("dim.sql:1:14: table shop.dim_users is already registered"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_server_names_host_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(
        dir.path(),
        "[connections.down]\nkind = \"mysql\"\nurl = \"mysql://root:pw@127.0.0.1:1/shop\"\n",
    );
    let catalog = Catalog::open(project).await.unwrap();
    let err = catalog
        .discover("down", &DiscoverOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains("pw"), "password leaked: {text}");
}

#[tokio::test]
async fn discovery_reads_columns_types_and_keys() {
    let (db, _dir, catalog) = setup().await;
    let discovery = catalog
        .discover("shop_db", &DiscoverOptions::default())
        .await
        .unwrap();
    let names: Vec<String> = discovery
        .tables
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, [format!("{}.dim_regions", db.name)]);
    let skipped: Vec<&str> = discovery
        .skipped
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(skipped, ["dim_shapes", "users"]);
    assert!(
        discovery.skipped[0]
            .1
            .contains("column outline has type geometry"),
        "{:?}",
        discovery.skipped
    );
    assert!(
        discovery.skipped[1].1.contains("--layer"),
        "{:?}",
        discovery.skipped
    );

    let options = DiscoverOptions {
        space: Some("shop".into()),
        layer: Some(Layer::Dim),
        ..Default::default()
    };
    let discovery = catalog.discover("shop_db", &options).await.unwrap();
    let users = discovery
        .tables
        .iter()
        .find(|t| t.name.name == "users")
        .unwrap();
    assert_eq!(users.primary_key, ["id"]);
    let type_of = |column: &str| {
        users
            .schema
            .field_with_name(column)
            .unwrap()
            .data_type()
            .clone()
    };
    assert_eq!(type_of("balance"), DataType::Decimal128(12, 2));
    assert_eq!(type_of("active"), DataType::Boolean);
    assert_eq!(
        type_of("signed_up"),
        DataType::Timestamp(TimeUnit::Millisecond, None)
    );
    assert_eq!(type_of("photo"), DataType::Binary);
    assert!(!users.schema.field_with_name("name").unwrap().is_nullable());

    let registered = catalog
        .register(discovery.tables, RegisterMode::Update)
        .await
        .unwrap();
    assert_eq!(registered.len(), 2);
    let result = catalog
        .query("SELECT count(*) AS n FROM shop.users")
        .await
        .unwrap();
    assert!(
        pretty_format_batches(&result.batches)
            .unwrap()
            .to_string()
            .contains("| 3 |")
    );

    // A second discovery after a column is added records schema version 2.
    db.execute("ALTER TABLE users ADD COLUMN vip BOOLEAN").await;
    let again = catalog.discover("shop_db", &options).await.unwrap();
    catalog
        .register(again.tables, RegisterMode::Update)
        .await
        .unwrap();
    let users = catalog.get(&TableName::new("shop", "users")).await.unwrap();
    assert_eq!(users.schema_version, 2);
    assert_eq!(
        catalog.schema_versions(&users.def.name).await.unwrap()[0]
            .schema
            .fields()
            .len(),
        9
    );
}

#[tokio::test]
async fn rows_inserted_into_a_mysql_table_land_in_one_transaction() {
    let (db, _dir, catalog) = setup().await;
    catalog
        .register_sql("dim.sql", DIM_USERS, RegisterMode::Create)
        .await
        .unwrap();
    let insert = |sql: String| {
        let catalog = catalog.clone();
        async move {
            // A failed statement must come back at once, not hold a lock until a timeout.
            tokio::time::timeout(std::time::Duration::from_secs(60), catalog.query(&sql))
                .await
                .expect("the INSERT returned")
        }
    };
    let inserted = insert(
        "INSERT INTO shop.dim_users VALUES
           (10, 'Zhao Lei', 'Shenzhen', 4, 99.95, true, DATE '1999-09-09', TIMESTAMP '2024-06-01 08:00:00.250', X'00FF10'),
           (11, 'Qian Li', NULL, NULL, NULL, false, NULL, NULL, NULL)"
            .to_string(),
    )
    .await
    .unwrap();
    let count = inserted.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .unwrap()
        .value(0);
    assert_eq!(count, 2);
    let result = catalog
        .query("SELECT id, name, city, balance, active, born, signed_up, photo FROM shop.dim_users WHERE id >= 10 ORDER BY id")
        .await
        .unwrap();
    let text = pretty_format_batches(&result.batches).unwrap().to_string();
    let expected = "\
+----+----------+----------+---------+--------+------------+-------------------------+--------+
| id | name     | city     | balance | active | born       | signed_up               | photo  |
+----+----------+----------+---------+--------+------------+-------------------------+--------+
| 10 | Zhao Lei | Shenzhen | 99.95   | true   | 1999-09-09 | 2024-06-01T08:00:00.250 | 00ff10 |
| 11 | Qian Li  |          |         | false  |            |                         |        |
+----+----------+----------+---------+--------+------------+-------------------------+--------+";
    assert_eq!(text, expected);

    // A duplicate key in the second row fails the statement and keeps none of its rows.
    let err = insert(
        "INSERT INTO shop.dim_users (id, name, active) VALUES (12, 'Sun Mei', true), (1, 'again', true)"
            .to_string(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Duplicate entry"), "{err}");
    // A value the column cannot hold is refused, not cut (the server is strict).
    let err = insert(format!(
        "INSERT INTO shop.dim_users (id, name, active) VALUES (13, '{}', true)",
        "x".repeat(80)
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("too long"), "{err}");
    let ids = catalog
        .query("SELECT count(*) FROM shop.dim_users WHERE id IN (12, 13)")
        .await
        .unwrap();
    let left = ids.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(left, 0);
    drop(db);
}
