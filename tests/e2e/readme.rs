//! The README's walk-through on `examples/shop`: register one table of each
//! kind from its DDL files, discover the MariaDB database, list, and query a
//! MySQL table, a Delta table and a join of the two.

use std::path::{Path, PathBuf};

use arrow::util::pretty::pretty_format_batches;
use sqlx::{AssertSqlSafe, Connection};
use strata_catalog::{Catalog, DiscoverOptions, Layer, Project, RegisterAction, RegisterMode};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shop")
}

/// The example project in a temp dir, on a database of its own.
fn copy_example(to: &Path, database: &str) {
    let from = example_dir();
    let rename = |text: String| text.replace("strata_shop", database);
    std::fs::create_dir_all(to.join("catalog")).unwrap();
    let config = std::fs::read_to_string(from.join("strata.toml")).unwrap();
    std::fs::write(to.join("strata.toml"), rename(config)).unwrap();
    for entry in std::fs::read_dir(from.join("catalog")).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join("catalog").join(entry.file_name())).unwrap();
    }
}

async fn seed(database: &str) {
    let seed = std::fs::read_to_string(example_dir().join("mysql-seed.sql"))
        .unwrap()
        .replace("strata_shop", database);
    let server = std::env::var("STRATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let mut conn = sqlx::MySqlConnection::connect(&server)
        .await
        .unwrap_or_else(|err| {
            panic!("MariaDB is not reachable at {server}: {err}; scripts/test.sh starts it")
        });
    sqlx::raw_sql(AssertSqlSafe(seed))
        .execute(&mut conn)
        .await
        .expect("seed the example database");
}

async fn drop_database(database: &str) {
    let server = std::env::var("STRATA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let mut conn = sqlx::MySqlConnection::connect(&server).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE `{database}`")))
        .execute(&mut conn)
        .await
        .unwrap();
}

fn text(batches: &[arrow::record_batch::RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test]
async fn the_readme_walk_through_works_on_the_shop_example() {
    let database = format!("strata_readme_{}", std::process::id());
    seed(&database).await;
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), &database);
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("catalog"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let registered = catalog
        .register_files(&files, RegisterMode::Create)
        .await
        .unwrap();
    let listed = catalog.list().await.unwrap();
    let kinds: Vec<(String, &str)> = listed
        .iter()
        .map(|e| (e.def.name.to_string(), e.def.kind.connector()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("shop.app_city_gmv", "delta"),
            ("shop.dim_cities", "embedded"),
            ("shop.dim_products", "embedded"),
            ("shop.dim_users", "mysql"),
            ("shop.dwd_orders", "delta"),
            ("shop.dwd_page_views", "delta"),
            ("shop.dwd_paid_orders", "delta"),
            ("shop.dwd_price_changes", "delta"),
            ("shop.dws_city_gmv_1m", "delta"),
            ("shop.dws_page_pv_uv_1m", "delta"),
            ("shop.ods_orders", "kafka"),
            ("shop.ods_page_views", "kafka"),
            ("shop.ods_payments", "kafka"),
            ("shop.ods_price_changes", "kafka"),
        ]
        .map(|(name, kind)| (name.to_string(), kind))
    );
    assert!(
        registered
            .iter()
            .all(|r| r.action == RegisterAction::Created)
    );

    let discovery = catalog
        .discover(
            "shop_db",
            &DiscoverOptions {
                layer: Some(Layer::Dim),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // users is shop.dim_users already: a table's data belongs to one space.
    let skipped: Vec<&(String, String)> = discovery
        .skipped
        .iter()
        .filter(|(name, _)| name == "users")
        .collect();
    assert!(
        matches!(skipped.as_slice(), [(_, reason)] if reason.contains("shop.dim_users")),
        "{:?}",
        discovery.skipped
    );
    catalog
        .register(discovery.tables, RegisterMode::Update)
        .await
        .unwrap();
    let names: Vec<String> = catalog
        .list()
        .await
        .unwrap()
        .iter()
        .map(|e| e.def.name.to_string())
        .collect();
    for expected in ["dim_cities", "dim_products"] {
        assert!(
            names.contains(&format!("{database}.{expected}")),
            "{expected} not discovered: {names:?}"
        );
    }

    let users = catalog
        .query("SELECT name, city FROM shop.dim_users WHERE level >= 2 ORDER BY name")
        .await
        .unwrap();
    assert_eq!(
        text(&users.batches),
        "+------------+----------+\n| name       | city     |\n+------------+----------+\n| Han Meimei | Shanghai |\n| Li Lei     | Beijing  |\n+------------+----------+"
    );
    catalog
        .query("INSERT INTO shop.dwd_orders VALUES (1, 1, 'Beijing', 'Beijing', 'tea', 25.00, TIMESTAMP '2024-05-01 10:00:00')")
        .await
        .unwrap();
    let gmv = catalog
        .query("SELECT u.city, sum(o.amount) AS gmv FROM shop.dwd_orders o JOIN shop.dim_users u ON o.user_id = u.id GROUP BY u.city")
        .await
        .unwrap();
    assert_eq!(
        text(&gmv.batches),
        "+---------+-------+\n| city    | gmv   |\n+---------+-------+\n| Beijing | 25.00 |\n+---------+-------+"
    );
    let on_sale = catalog
        .query(&format!(
            "SELECT title FROM {database}.dim_products WHERE on_sale"
        ))
        .await
        .unwrap();
    assert!(text(&on_sale.batches).contains("Tea set"));
    drop_database(&database).await;
}
