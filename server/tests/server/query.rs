//! Analysts' queries over HTTP: tokens and grants, row formats, limits,
//! timeouts, cancellation, EXPLAIN, time travel and federated joins.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use strata_catalog::{Access, Catalog, Grant, Project, RegisterMode};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

use crate::support::{DDL, ShopDatabase, write_project};

/// A request with `token` (none: no Authorization header); status, content type and body.
pub(crate) async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, content_type, bytes.to_vec())
}

fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

async fn token(catalog: &Catalog, space: &str, access: Access) -> String {
    catalog
        .store()
        .create_token(
            "test",
            vec![Grant {
                space: space.to_string(),
                access,
            }],
        )
        .await
        .unwrap()
        .secret
}

const LAKE: &str = "
CREATE TABLE shop.ods_events (id BIGINT, name STRING) WITH ('connector' = 'delta');
CREATE TABLE fin.dwd_ledger (id BIGINT, amount BIGINT) WITH ('connector' = 'delta');
";

async fn lake_project() -> (tempfile::TempDir, ShopDatabase, Catalog) {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql("catalog.sql", &format!("{DDL}{LAKE}"), RegisterMode::Create)
        .await
        .unwrap();
    (dir, db, catalog)
}

async fn query(router: &axum::Router, token: &str, body: Value) -> (StatusCode, String, Vec<u8>) {
    send(router, "POST", "/api/v1/query", Some(token), Some(body)).await
}

#[tokio::test]
async fn tokens_grant_spaces_and_refusals_change_nothing() {
    let (_dir, _db, catalog) = lake_project().await;
    let admin = token(&catalog, "*", Access::Write).await;
    let shop_reader = token(&catalog, "shop", Access::Read).await;
    let router = strata_server::api::router(catalog.clone(), Default::default());

    let (status, _, body) = send(&router, "GET", "/api/v1/tables", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(as_json(&body)["hint"].as_str().unwrap().contains("Bearer"));
    let (status, _, _) = send(
        &router,
        "GET",
        "/api/v1/tables",
        Some("strata_nope_x"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&router, "GET", "/api/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = send(&router, "GET", "/api/v1/tables", Some(&shop_reader), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<String> = as_json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("shop.")), "{names:?}");
    assert!(names.contains(&"shop.ods_events".to_string()));

    // Reading another space is refused, naming the grant and the fix.
    let (status, _, body) = query(
        &router,
        &shop_reader,
        json!({"sql": "SELECT * FROM fin.dwd_ledger"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{}", as_json(&body));
    let refusal = as_json(&body);
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("may not read space 'fin'"),
        "{refusal}"
    );
    assert!(
        refusal["hint"]
            .as_str()
            .unwrap()
            .contains("--space fin --read")
    );
    let (status, _, _) = send(
        &router,
        "GET",
        "/api/v1/tables/fin/dwd_ledger",
        Some(&shop_reader),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Writes outside the grants leave no trace.
    let (status, _, _) = query(
        &router,
        &shop_reader,
        json!({"sql": "INSERT INTO shop.ods_events VALUES (1, 'refused')"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let ddl = "CREATE TABLE shop.ods_sneaky (id BIGINT) WITH ('connector' = 'delta');";
    let (status, _, _) = send(
        &router,
        "POST",
        "/api/v1/tables",
        Some(&shop_reader),
        Some(json!({"ddl": ddl})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(
        &router,
        "DELETE",
        "/api/v1/tables/shop/ods_events",
        Some(&shop_reader),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, body) = query(
        &router,
        &admin,
        json!({"sql": "SELECT (SELECT count(*) FROM shop.ods_events) AS events, (SELECT count(*) FROM information_schema.tables WHERE table_name = 'ods_sneaky') AS sneaky"}),
    )
    .await;
    assert_eq!(as_json(&body)["rows"], json!([{"events": 0, "sneaky": 0}]));

    // A revoked token is no token.
    let id = catalog.store().list_tokens().await.unwrap()[1].id.clone();
    assert!(catalog.store().revoke_token(&id).await.unwrap());
    let (status, _, _) = send(&router, "GET", "/api/v1/tables", Some(&shop_reader), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn results_come_as_json_csv_or_arrow_with_limits_explain_and_time_travel() {
    let (_dir, _db, catalog) = lake_project().await;
    let admin = token(&catalog, "*", Access::Write).await;
    let router = strata_server::api::router(catalog.clone(), Default::default());
    let insert = |values: &'static str| {
        let router = router.clone();
        let admin = admin.clone();
        async move {
            let (status, _, body) = query(
                &router,
                &admin,
                json!({"sql": format!("INSERT INTO shop.ods_events VALUES {values}")}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{}", as_json(&body));
        }
    };
    insert("(1, 'a'), (2, 'b'), (3, 'c')").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    insert("(4, 'd'), (5, 'e')").await;

    let sql = "SELECT id, name FROM shop.ods_events ORDER BY id";
    let (status, content_type, body) =
        query(&router, &admin, json!({"sql": sql, "limit": 2})).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    let page = as_json(&body);
    assert_eq!(
        page["rows"],
        json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    );
    assert_eq!(page["truncated"], true);

    let (_, content_type, body) =
        query(&router, &admin, json!({"sql": sql, "format": "csv"})).await;
    assert!(content_type.starts_with("text/csv"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "id,name\n1,a\n2,b\n3,c\n4,d\n5,e\n"
    );

    let (_, content_type, body) =
        query(&router, &admin, json!({"sql": sql, "format": "arrow"})).await;
    assert_eq!(content_type, "application/vnd.apache.arrow.stream");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 5);

    let (_, _, body) = query(&router, &admin, json!({"sql": format!("EXPLAIN {sql}")})).await;
    let plans = as_json(&body)["rows"].clone();
    assert!(plans.to_string().contains("physical_plan"), "{plans}");

    // Time travel: by version (0 is the empty table), and by time.
    let count = |sql: String| {
        let router = router.clone();
        let admin = admin.clone();
        async move {
            let (status, _, body) = query(&router, &admin, json!({"sql": sql})).await;
            let answer = as_json(&body);
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer["rows"][0]["n"].as_i64().unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM shop.ods_events VERSION AS OF 1".into()).await,
        3
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM shop.ods_events VERSION AS OF 2 e WHERE e.id > 1".into())
            .await,
        4
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) AS n FROM shop.ods_events FOR SYSTEM_TIME AS OF TIMESTAMP '{between}'"
        ))
        .await,
        3
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM shop.ods_events".into()).await,
        5
    );
    let (status, _, body) = query(
        &router,
        &admin,
        json!({"sql": "SELECT * FROM shop.dim_users VERSION AS OF 1"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        as_json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("only Delta tables keep their past versions")
    );
    let (status, _, body) = query(
        &router,
        &admin,
        json!({"sql": "SELECT * FROM shop.ods_events VERSION AS OF 99"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        as_json(&body)["hint"]
            .as_str()
            .unwrap()
            .contains("versions 0 to 2"),
        "{}",
        as_json(&body)
    );

    // Federated: the lake joined with the MySQL dimension (pushdown: catalog/tests/catalog/mysql.rs).
    let (_, _, body) = query(
        &router,
        &admin,
        json!({"sql": "SELECT e.name, u.city FROM shop.ods_events e JOIN shop.dim_users u ON e.id = u.id WHERE u.city = 'Shanghai'"}),
    )
    .await;
    assert_eq!(
        as_json(&body)["rows"],
        json!([{"name": "b", "city": "Shanghai"}])
    );
}

/// A query that would run for hours: counting a trillion generated rows.
const ENDLESS: &str = "SELECT count(*) AS n FROM range(1, 1000000000000)";

#[tokio::test]
async fn a_timeout_or_a_disconnect_cancels_the_query() {
    let (_dir, _db, catalog) = lake_project().await;
    let admin = token(&catalog, "*", Access::Write).await;
    let router = strata_server::api::router(catalog.clone(), Default::default());

    let (status, _, body) =
        query(&router, &admin, json!({"sql": ENDLESS, "timeout_ms": 300})).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{}", as_json(&body));
    assert!(
        as_json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("timeout of 300ms")
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(axum::serve(listener, router.clone()).into_future());
    let running = |router: axum::Router, admin: String| async move {
        let (_, _, body) = send(&router, "GET", "/metrics", Some(&admin), None).await;
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("strata_queries_running "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = json!({"sql": ENDLESS, "timeout_ms": 0}).to_string();
    client
        .write_all(
            format!(
                "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while running(router.clone(), admin.clone()).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the query never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(client);
    while running(router.clone(), admin.clone()).await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the query ran on after its client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscriptions_need_a_token_that_reads_the_space() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (_dir, _db, catalog) = lake_project().await;
    let shop_reader = token(&catalog, "shop", Access::Read).await;
    let router = strata_server::api::router(catalog.clone(), Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router).into_future());

    let refused =
        tokio_tungstenite::connect_async(format!("ws://{address}/api/v1/subscribe")).await;
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused.unwrap_err() else {
        panic!("a subscription without a token was upgraded");
    };
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let url = format!("ws://{address}/api/v1/subscribe?token={shop_reader}");
    let first = |table: &'static str| {
        let url = url.clone();
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            socket
                .send(Message::Text(json!({"table": table}).to_string().into()))
                .await
                .unwrap();
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("no answer");
            };
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    let refusal = first("fin.dwd_ledger").await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("may not read space 'fin'"),
        "{refusal}"
    );
    let snapshot = first("shop.ods_events").await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["rows"], json!([]));
}
