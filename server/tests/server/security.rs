//! An attacker's checklist, tried against the API and the PostgreSQL port with
//! a token that may write one space (`alpha`) of a project that also holds
//! another (`beta`). Each test is one trick that once worked; each must now be
//! refused with a message that says why, and change nothing.

use std::os::unix::fs::PermissionsExt;

use axum::http::StatusCode;
use serde_json::{Value, json};
use strata_catalog::{Access, Catalog, Project, RegisterMode};

use crate::pg::{psql_verbose, serve};
use crate::query::send;
use crate::support::{ShopDatabase, admin_token, strata_ok, write_project};

/// A project with space `beta` (a Delta table and a Kafka table) and a token
/// that may write space `alpha` only.
struct Target {
    _dir: tempfile::TempDir,
    _db: ShopDatabase,
    catalog: Catalog,
    router: axum::Router,
    alpha: String,
}

impl Target {
    async fn new(extra_config: &str) -> Self {
        let db = ShopDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), &db, extra_config);
        let catalog = Catalog::open(Project::load(dir.path()).unwrap())
            .await
            .unwrap();
        catalog
            .register_sql(
                "beta.sql",
                "CREATE TABLE beta.dwd_secret (id BIGINT, amount BIGINT) WITH ('connector' = 'delta');
                 CREATE TABLE beta.ods_events (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'beta_events',
                   'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json');",
                RegisterMode::Create,
            )
            .await
            .unwrap();
        let alpha = catalog
            .store()
            .create_token(
                "alpha-writer",
                vec![strata_catalog::Grant {
                    space: "alpha".to_string(),
                    access: Access::Write,
                }],
            )
            .await
            .unwrap()
            .secret;
        let router =
            strata_server::api::router(catalog.clone(), strata_server::run::Registry::default());
        Self {
            _dir: dir,
            _db: db,
            catalog,
            router,
            alpha,
        }
    }

    fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Registers DDL as the alpha writer: the status and the error body.
    async fn register(&self, ddl: &str) -> (StatusCode, Value) {
        let (status, _, body) = send(
            &self.router,
            "POST",
            "/api/v1/tables",
            Some(&self.alpha),
            Some(json!({ "ddl": ddl })),
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Asserts that `ddl` is refused with `message` in its error, and that no
    /// alpha table was registered by it.
    async fn refused(&self, ddl: &str, message: &str) {
        let (status, body) = self.register(ddl).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{ddl}: {body}");
        let text = format!(
            "{} {}",
            body["error"].as_str().unwrap_or_default(),
            body["hint"].as_str().unwrap_or_default()
        );
        assert!(text.contains(message), "{ddl}: {text}");
        let alpha_tables: Vec<String> = self
            .catalog
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.def.name.to_string())
            .filter(|name| name.starts_with("alpha."))
            .collect();
        assert!(alpha_tables.is_empty(), "{ddl} registered {alpha_tables:?}");
    }
}

#[tokio::test]
async fn embedded_tables_cannot_reach_the_catalog_stores_own_tables() {
    let target = Target::new("").await;
    for table in [
        "strata_tokens",
        "STRATA_TABLES",
        "strata_table_schemas",
        "beta__x",
    ] {
        target
            .refused(
                &format!(
                    "CREATE TABLE alpha.dim_t (id BIGINT, secret_hash STRING) WITH ('connector' = 'embedded', 'table-name' = '{table}');"
                ),
                "outside the space's own store tables",
            )
            .await;
    }
    // The space's own store table is fine.
    let (status, body) = target
        .register("CREATE TABLE alpha.dim_t (id BIGINT) WITH ('connector' = 'embedded', 'table-name' = 'alpha__mine');")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn delta_paths_cannot_leave_their_space() {
    let target = Target::new("").await;
    let beta = target.dir().join("lake/beta/dwd_secret");
    for path in [
        beta.display().to_string(),
        format!("file://{}", beta.display()),
        "lake/alpha/../beta/dwd_secret".to_string(),
        "../../etc".to_string(),
        "/tmp/elsewhere".to_string(),
        ".strata".to_string(),
        "lake/alpha".to_string(),
    ] {
        target
            .refused(
                &format!(
                    "CREATE TABLE alpha.ods_x (id BIGINT, amount BIGINT) WITH ('connector' = 'delta', 'table-path' = '{path}');"
                ),
                "Delta location",
            )
            .await;
    }
    assert!(
        !target
            .dir()
            .join("lake/beta/dwd_secret/_delta_log/00000000000000000001.json")
            .exists(),
        "nothing was written into beta's table"
    );
    let (status, body) = target
        .register("CREATE TABLE alpha.ods_x (id BIGINT) WITH ('connector' = 'delta', 'table-path' = 'lake/alpha/elsewhere/x');")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn allowed_roots_are_shared_but_one_location_has_one_space() {
    let shared = tempfile::tempdir().unwrap();
    let target = Target::new(&format!(
        "[lake]\nroot = \"lake\"\nallowed-roots = [\"{}\"]\n",
        shared.path().display()
    ))
    .await;
    target
        .catalog
        .register_sql(
            "beta.sql",
            &format!(
                "CREATE TABLE beta.ods_shared (id BIGINT) WITH ('connector' = 'delta', 'table-path' = '{}/beta');",
                shared.path().display()
            ),
            RegisterMode::Create,
        )
        .await
        .unwrap();
    for path in ["beta", "beta/inner", "."] {
        target
            .refused(
                &format!(
                    "CREATE TABLE alpha.ods_y (id BIGINT) WITH ('connector' = 'delta', 'table-path' = '{}/{path}');",
                    shared.path().display()
                ),
                "is also where beta.ods_shared (space beta) keeps its data",
            )
            .await;
    }
    // Another space's topic is another space's data too.
    target
        .refused(
            "CREATE TABLE alpha.ods_events (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'beta_events', 'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json');",
            "topic beta_events",
        )
        .await;
    let (status, body) = target
        .register(&format!(
            "CREATE TABLE alpha.ods_y (id BIGINT) WITH ('connector' = 'delta', 'table-path' = '{}/alpha');",
            shared.path().display()
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn mysql_tables_stay_in_the_connections_database() {
    let target = Target::new("").await;
    target
        .refused(
            "CREATE TABLE alpha.dim_payroll (id BIGINT) WITH ('connector' = 'mysql', 'connection' = 'shop_db', 'table-name' = 'mysql.user');",
            "is not one connection \"shop_db\" may reach",
        )
        .await;
    // The connection's password never goes to a server the DDL names.
    target
        .refused(
            "CREATE TABLE alpha.dim_users (id BIGINT) WITH ('connector' = 'mysql', 'connection' = 'shop_db', 'url' = 'mysql://127.0.0.1:9/shop', 'table-name' = 'users');",
            "cannot also give 'url'",
        )
        .await;
    let (status, body) = target
        .register("CREATE TABLE alpha.dim_users (id BIGINT, name STRING, city STRING) WITH ('connector' = 'mysql', 'connection' = 'shop_db', 'table-name' = 'users');")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn kafka_properties_that_load_code_or_touch_files_are_refused() {
    let target = Target::new("").await;
    for property in [
        "plugin.library.paths",
        "ssl.engine.location",
        "ssl.ca.location",
        "sasl.kerberos.kinit.cmd",
        "sasl.oauthbearer.token.endpoint.url",
        "debug",
        "isolation.level",
    ] {
        target
            .refused(
                &format!(
                    "CREATE TABLE alpha.ods_k (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'k', 'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json', 'properties.{property}' = '/tmp/evil.so');"
                ),
                &format!("Kafka property '{property}' cannot be set in DDL"),
            )
            .await;
    }
    let (status, body) = target
        .register("CREATE TABLE alpha.ods_k (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'k', 'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json', 'properties.fetch.min.bytes' = '1');")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn reserved_spaces_and_overlong_names_are_refused() {
    let target = Target::new("").await;
    for space in ["information_schema", "pg_catalog", "_strata", "DataFusion"] {
        let (status, body) = target
            .register(&format!(
                "CREATE TABLE {space}.ods_x (id BIGINT) WITH ('connector' = 'delta', 'layer' = 'ods');"
            ))
            .await;
        // The token may not write those spaces, and nobody may create them.
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN,
            "{space}: {status} {body}"
        );
        let admin = target
            .catalog
            .register_sql(
                "admin.sql",
                &format!("CREATE TABLE {space}.ods_x (id BIGINT) WITH ('connector' = 'delta');"),
                RegisterMode::Create,
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(admin.contains("is reserved"), "{admin}");
    }
    let long = format!("ods_{}", "x".repeat(300));
    target
        .refused(
            &format!("CREATE TABLE alpha.{long} (id BIGINT) WITH ('connector' = 'delta');"),
            "at most 64 characters",
        )
        .await;
}

#[tokio::test]
async fn the_catalog_store_is_readable_by_its_owner_only() {
    let target = Target::new("").await;
    let state = target.dir().join(".strata");
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("catalog.db")), 0o600);
    // A store left world-readable by an earlier version is closed on open.
    std::fs::set_permissions(
        state.join("catalog.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    Catalog::open(Project::load(target.dir()).unwrap())
        .await
        .unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("catalog.db")), 0o600);
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let target = Target::new("").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = axum::http::Request::builder()
            .uri("/api/v1/tables")
            .header("authorization", format!("{scheme} {}", target.alpha))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(target.router.clone(), request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn the_postgresql_port_guards_settings_grants_and_memory() {
    let db = ShopDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &db, "");
    let ddl = dir.path().join("catalog.sql");
    std::fs::write(
        &ddl,
        "CREATE TABLE shop.ods_events (id BIGINT) WITH ('connector' = 'delta');
         CREATE TABLE fin.dwd_ledger (id BIGINT) WITH ('connector' = 'delta');",
    )
    .unwrap();
    strata_ok(dir.path(), &["catalog", "register", ddl.to_str().unwrap()]);
    let served = serve(dir.path());
    let admin = admin_token(dir.path());
    let reader = strata_ok(
        dir.path(),
        &[
            "token", "create", "--name", "fin", "--space", "fin", "--read",
        ],
    );
    let reader = reader.trim();

    // DataFusion's settings stay as the server set them, however they are quoted.
    for statement in [
        "SET \"datafusion\".\"catalog\".default_schema = 'shop'",
        "SET DataFusion . catalog . default_schema = 'shop'",
    ] {
        let (ok, _, err) = psql_verbose(&served.pg, reader, statement);
        assert!(
            !ok && err.contains("is not supported"),
            "{statement}: {err}"
        );
    }
    // Another space's rows are refused as PostgreSQL refuses a privilege.
    let (ok, _, err) = psql_verbose(&served.pg, reader, "SELECT * FROM shop.ods_events");
    assert!(!ok && err.contains("42501"), "{err}");

    // Sessions do not outlive their connections.
    let pid = served.pid();
    let url = format!("postgres://admin:{admin}@{}/strata", served.pg);
    let connect_and_query = || async {
        for _ in 0..40 {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query("SELECT count(*) FROM shop.ods_events")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            sqlx::Connection::close(conn).await.unwrap();
        }
    };
    connect_and_query().await;
    let before = rss_kib(pid);
    for _ in 0..5 {
        connect_and_query().await;
    }
    let grown_mib = (rss_kib(pid).saturating_sub(before)) / 1024;
    // 200 connections leaked about 1 GB (5 MB each) before the fix.
    assert!(
        grown_mib < 150,
        "200 connections grew the server by {grown_mib} MiB"
    );
}

/// A process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn quality_results_show_a_token_its_own_spaces_only_and_cannot_be_written() {
    let target = Target::new("").await;
    let result = |table: &str, failed: i64| strata_quality::CheckResult {
        at_ms: strata_pipelines::runner::now_ms(),
        table: table.to_string(),
        rule: "amount_sane".to_string(),
        check: "range".to_string(),
        pipeline: None,
        scope: "commit".to_string(),
        window_start_ms: None,
        window_end_ms: None,
        commit_version: None,
        passed: 10,
        failed,
        observed: None,
        bound: None,
        action: strata_quality::results::Taken::Warned,
        severity: "error".to_string(),
        detail: Some("secret detail".to_string()),
    };
    let location = strata_quality::results::location(&target.catalog.project().lake_root());
    strata_quality::results::append(
        &location,
        vec![result("alpha.dwd_mine", 0), result("beta.dwd_secret", 3)],
    )
    .await
    .unwrap();
    let query = |token: String, sql: &'static str| {
        let router = target.router.clone();
        async move {
            let (status, _, body) = send(
                &router,
                "POST",
                "/api/v1/query",
                Some(&token),
                Some(json!({ "sql": sql })),
            )
            .await;
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let admin = target
        .catalog
        .store()
        .create_token(
            "admin",
            vec![strata_catalog::Grant {
                space: "*".to_string(),
                access: Access::Write,
            }],
        )
        .await
        .unwrap()
        .secret;

    // The alpha writer sees alpha's results, not beta's.
    let (status, body) = query(
        target.alpha.clone(),
        "SELECT \"table\", failed FROM _strata.quality_results ORDER BY 1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"table": "alpha.dwd_mine", "failed": 0}]),
        "{body}"
    );
    let (_, body) = query(
        admin.clone(),
        "SELECT count(*) AS n FROM _strata.quality_results",
    )
    .await;
    assert_eq!(body["rows"], json!([{"n": 2}]), "{body}");

    // Nobody writes them, not even a token that writes every space.
    for token in [target.alpha.clone(), admin] {
        let (status, body) = query(
            token,
            "INSERT INTO _strata.quality_results SELECT * FROM _strata.quality_results",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("read-only"),
            "{body}"
        );
    }
    let rows = strata_quality::results::read(&location, "").await.unwrap();
    assert_eq!(rows.len(), 2);
}
