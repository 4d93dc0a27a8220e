//! The catalog store, run against SQLite, MariaDB and PostgreSQL alike.

use std::collections::BTreeMap;

use strata_catalog::ddl::table_defs;
use strata_catalog::{CatalogError, CatalogStore, TableDef, TableName, UpdateOutcome};

use crate::support::StoreBackend;

fn defs(ddl: &str) -> Vec<TableDef> {
    table_defs("test.sql", ddl, &BTreeMap::new()).expect("valid DDL")
}

const ORDERS: &str = "CREATE TABLE shop.ods_orders (
  order_id BIGINT,
  amount DECIMAL(10, 2),
  order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND,
  PRIMARY KEY (order_id) NOT ENFORCED
) COMMENT 'raw orders' WITH (
  'connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
  'properties.bootstrap.servers' = 'broker:9092', 'owner' = 'trade', 'tags' = 'a, b'
);";

const USERS: &str =
    "CREATE TABLE shop.dim_users (id BIGINT, city STRING COMMENT 'where they live', PRIMARY KEY (id) NOT ENFORCED)
  WITH ('connector' = 'mysql', 'url' = 'mysql://db:3306/shop', 'table-name' = 'users');";

#[tokio::test]
async fn tables_round_trip_on_every_backend() {
    for backend in StoreBackend::all().await {
        let store = CatalogStore::connect(&backend.url())
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", backend.label()));
        let orders = defs(ORDERS).remove(0);
        store.insert(std::slice::from_ref(&orders)).await.unwrap();
        let entry = store.get(&orders.name).await.unwrap();
        assert_eq!(entry.def, orders, "{}", backend.label());
        assert_eq!(entry.schema_version, 1);
        assert_eq!(entry.def.watermark.as_ref().unwrap().delay_ms, 5_000);
        assert_eq!(entry.def.tags, ["a", "b"]);
        assert_eq!(store.list().await.unwrap().len(), 1);
        // Reconnecting applies no migration twice.
        let again = CatalogStore::connect(&backend.url()).await.unwrap();
        assert_eq!(again.list().await.unwrap().len(), 1, "{}", backend.label());
    }
}

#[tokio::test]
async fn duplicates_are_refused_and_batches_are_all_or_nothing() {
    for backend in StoreBackend::all().await {
        let store = CatalogStore::connect(&backend.url()).await.unwrap();
        let orders = defs(ORDERS).remove(0);
        store.insert(std::slice::from_ref(&orders)).await.unwrap();

        let mut changed = orders.clone();
        changed.owner = Some("someone else".into());
        let users = defs(USERS).remove(0);
        let err = store.insert(&[users.clone(), changed]).await.unwrap_err();
        assert!(
            matches!(err, CatalogError::AlreadyExists { .. }),
            "{}: {err}",
            backend.label()
        );
        assert_eq!(
            store.get(&orders.name).await.unwrap().def,
            orders,
            "existing table intact"
        );
        assert!(
            !store.contains(&users.name).await.unwrap(),
            "{}: half a batch was registered",
            backend.label()
        );
    }
}

#[tokio::test]
async fn schema_changes_become_versions_and_old_ones_stay_readable() {
    for backend in StoreBackend::all().await {
        let store = CatalogStore::connect(&backend.url()).await.unwrap();
        let v1 = defs(USERS).remove(0);
        store.insert(std::slice::from_ref(&v1)).await.unwrap();
        assert_eq!(
            store.update(&v1).await.unwrap(),
            UpdateOutcome::Unchanged,
            "{}",
            backend.label()
        );
        let stored = store.get(&v1.name).await.unwrap().def;
        let comment = stored
            .schema
            .field_with_name("city")
            .unwrap()
            .metadata()
            .get("comment")
            .cloned();
        assert_eq!(
            comment.as_deref(),
            Some("where they live"),
            "column comments are kept"
        );

        let mut owner_only = v1.clone();
        owner_only.owner = Some("user-team".into());
        assert_eq!(
            store.update(&owner_only).await.unwrap(),
            UpdateOutcome::MetadataOnly
        );

        let v2 = defs(&USERS.replace("PRIMARY KEY", "level INT, PRIMARY KEY")).remove(0);
        assert_eq!(
            store.update(&v2).await.unwrap(),
            UpdateOutcome::NewSchemaVersion(2)
        );
        let entry = store.get(&v1.name).await.unwrap();
        assert_eq!(entry.schema_version, 2);
        assert_eq!(entry.def.schema.fields().len(), 3);

        let versions = store.schema_versions(&v1.name).await.unwrap();
        assert_eq!(versions.len(), 2, "{}", backend.label());
        assert_eq!(versions[0].schema, v1.schema);
        assert_eq!(versions[1].schema, v2.schema);
        assert!(versions[0].created_at_ms <= versions[1].created_at_ms);
        let missing = store.schema_version(&v1.name, 7).await.unwrap_err();
        assert!(
            missing.to_string().contains("versions are 1 to 2"),
            "{missing}"
        );
    }
}

#[tokio::test]
async fn dropped_tables_are_gone() {
    for backend in StoreBackend::all().await {
        let store = CatalogStore::connect(&backend.url()).await.unwrap();
        let users = defs(USERS).remove(0);
        store.insert(std::slice::from_ref(&users)).await.unwrap();
        store.drop_table(&users.name).await.unwrap();
        assert!(matches!(
            store.get(&users.name).await,
            Err(CatalogError::NotFound { .. })
        ));
        assert!(matches!(
            store.drop_table(&TableName::new("shop", "nothing")).await,
            Err(CatalogError::NotFound { .. })
        ));
        // The name is free again.
        store.insert(&[users]).await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_store_names_its_address() {
    let err = CatalogStore::connect("mysql://root:secret@127.0.0.1:1/catalog")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");
}
