//! The HTTP API: the same operations as the CLI, JSON in and out, and errors
//! with the right status codes.

use axum::http::StatusCode;
use serde_json::{Value, json};
use strata_catalog::{Catalog, Project};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{DDL, ShopDatabase, produce, write_project};

pub(crate) async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = crate::query::send(router, method, uri, None, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_registers_shows_queries_and_drops() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let router = crate::support::api_router(catalog).await;

    let (status, body) = call(&router, "GET", "/api/v1/tables", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let (status, body) = call(&router, "POST", "/api/v1/tables", Some(json!({"ddl": DDL}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);

    let (status, body) = call(&router, "POST", "/api/v1/tables", Some(json!({"ddl": DDL}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already registered"),
        "{body}"
    );
    assert!(
        body["hint"].as_str().unwrap().contains("--update"),
        "{body}"
    );

    let bad = "CREATE TABLE shop.dwd_x (id BIGINT) WITH ('connector' = 'nope');";
    let (status, body) = call(&router, "POST", "/api/v1/tables", Some(json!({"ddl": bad}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("request body:1:57: unknown connector"),
        "{body}"
    );

    let (status, body) = call(&router, "GET", "/api/v1/tables/shop/dim_users", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["layer"], "dim");
    assert_eq!(body["columns"].as_array().unwrap().len(), 3);

    let (status, body) = call(
        &router,
        "GET",
        "/api/v1/tables/shop/dwd_orders/schemas",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["version"], 1);

    let sql = json!({"sql": "SELECT id, name FROM shop.dim_users ORDER BY id"});
    let (status, body) = call(&router, "POST", "/api/v1/query", Some(sql)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"id": 1, "name": "Li Lei"}, {"id": 2, "name": "Han Meimei"}])
    );
    assert_eq!(body["columns"][0], json!({"name": "id", "type": "BIGINT"}));

    let (status, body) = call(
        &router,
        "POST",
        "/api/v1/query",
        Some(json!({"sql": "SELEC 1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let dry_run = json!({"layer": "dim", "space": "found", "dry_run": true});
    let (status, body) = call(&router, "POST", "/api/v1/discover/shop_db", Some(dry_run)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // users is registered as shop.dim_users: its data belongs to space shop.
    assert_eq!(body["tables"], json!([]), "{body}");
    assert_eq!(body["skipped"][0]["name"], "users", "{body}");
    assert!(
        body["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("shop.dim_users"),
        "{body}"
    );
    assert_eq!(body["registered"], Value::Null);

    let (status, _) = call(&router, "DELETE", "/api/v1/tables/shop/dim_users", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&router, "GET", "/api/v1/tables/shop/dim_users", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in the catalog")
    );

    // Dropped from shop, the table may be discovered into another space.
    let dry_run = json!({"layer": "dim", "space": "found", "dry_run": true});
    let (status, body) = call(&router, "POST", "/api/v1/discover/shop_db", Some(dry_run)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tables"][0]["name"], "found.users");

    let (status, body) = call(&router, "POST", "/api/v1/discover/nowhere", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["hint"].as_str().unwrap().contains("shop_db"), "{body}");
}

#[tokio::test]
async fn inferred_schemas_are_registered_only_when_confirmed() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("ods_clicks", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "ods_clicks", &[r#"{"page": "/home"}"#]).await;
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &db,
        &format!("[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"),
    );
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let router = crate::support::api_router(catalog).await;

    let (status, body) = call(&router, "POST", "/api/v1/discover/events", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["confirmation_needed"], true);
    assert_eq!(body["registered"], Value::Null);
    assert_eq!(body["tables"][0]["columns"][0]["name"], "page");
    let (_, tables) = call(&router, "GET", "/api/v1/tables", None).await;
    assert_eq!(tables, json!([]));

    let (status, body) = call(
        &router,
        "POST",
        "/api/v1/discover/events",
        Some(json!({"confirm": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["registered"][0]["table"], "events.ods_clicks");
    assert_eq!(
        body["tables"][0]["location"],
        "topic ods_clicks (1 partitions) via events"
    );
}

#[tokio::test]
async fn strata_serve_answers_http() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args(["serve", "--port", &port.to_string(), "--pg-port", "0"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            stream
                .write_all(
                    b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            stream.read_to_string(&mut answer).await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill().await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
}

#[tokio::test]
async fn the_home_page_keeps_the_token_it_was_given() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strata.toml"), "[lake]\nroot = \"lake\"\n").unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let router = strata_server::api::router(catalog, Default::default());
    for (asked, location) in [
        ("/?token=strata_abc", "/ui/lineage?token=strata_abc"),
        ("/", "/ui/lineage"),
    ] {
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get(asked)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()["location"], location);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_table_is_followed_and_a_refused_subscription_gets_a_close_frame() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql("shop.sql", DDL, strata_catalog::RegisterMode::Create)
        .await
        .unwrap();
    let token = strata_server::serve::admin_token(&catalog).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = strata_server::api::router(catalog.clone(), Default::default());
    tokio::spawn(axum::serve(listener, router).into_future());
    let subscribe = |subscription: Value| {
        let token = token.clone();
        async move {
            let url = format!("ws://{address}/api/v1/subscribe?token={token}");
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            socket
                .send(Message::Text(subscription.to_string().into()))
                .await
                .unwrap();
            socket
        }
    };
    let next_json = |message: Message| -> Value {
        let Message::Text(text) = message else {
            panic!("not a text message: {message:?}")
        };
        serde_json::from_str(&text).unwrap()
    };

    // A MySQL/TiDB table: a snapshot, and another once its rows change.
    let mut socket =
        subscribe(json!({"table": "shop.dim_users", "filter": "city = 'Beijing'"})).await;
    let first = next_json(socket.next().await.unwrap().unwrap());
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(first["key"], json!(["id"]), "{first}");
    assert_eq!(first["rows"].as_array().unwrap().len(), 1, "{first}");
    catalog
        .query("INSERT INTO shop.dim_users VALUES (3, 'Wang Fang', 'Beijing')")
        .await
        .unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("a new snapshot within the poll")
        .unwrap()
        .unwrap();
    let second = next_json(second);
    assert_eq!(second["type"], "snapshot", "{second}");
    assert_eq!(second["rows"].as_array().unwrap().len(), 2, "{second}");

    // A refused subscription says why, then closes the socket properly.
    let mut refused = subscribe(json!({"table": "shop.no_such_table"})).await;
    let error = next_json(refused.next().await.unwrap().unwrap());
    assert_eq!(error["type"], "error", "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("not in the catalog"),
        "{error}"
    );
    match refused.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains("not in the catalog"), "{frame:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}
