//! The notes handlers, called with API Gateway REST proxy fixtures, against DynamoDB in moto.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use lambda_canary_tests::Moto;
use lambda_http::{Body, Request, Response};
use notes_api::{App, FaultConfig, Operation, Settings};
use serde_json::{json, Value};

const CREATE: &str = include_str!("../../fixtures/create-note.json");
const GET: &str = include_str!("../../fixtures/get-note.json");
const LIST: &str = include_str!("../../fixtures/list-notes.json");
const UPDATE: &str = include_str!("../../fixtures/update-note.json");
const DELETE: &str = include_str!("../../fixtures/delete-note.json");

/// The identity in the fixtures.
const ALICE: &str = "us-east-1:aaaaaaaa-0000-4000-8000-000000000001";
const BOB: &str = "us-east-1:bbbbbbbb-0000-4000-8000-000000000002";
const TABLE: &str = "notes-test";

struct Env {
    app: App,
    client: aws_sdk_dynamodb::Client,
    _moto: Moto,
}

fn settings(fault: &str) -> Settings {
    Settings {
        table: TABLE.into(),
        fault: FaultConfig::parse(Some(fault)).expect("valid fault"),
        function_name: "notes-test".into(),
        function_version: "1".into(),
    }
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    client
        .create_table()
        .table_name(name)
        .key_schema(key("userId", KeyType::Hash))
        .key_schema(key("noteId", KeyType::Range))
        .attribute_definitions(attr("userId"))
        .attribute_definitions(attr("noteId"))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table in moto");
}

async fn env_with_fault(fault: &str) -> Env {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table(&client, TABLE).await;
    Env {
        app: App::new(client.clone(), settings(fault)),
        client,
        _moto: moto,
    }
}

async fn env() -> Env {
    env_with_fault("").await
}

/// A fixture as JSON, with the caller set to `user` (`None` removes the identity).
fn event(fixture: &str, user: Option<&str>) -> Value {
    let mut v: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    v["requestContext"]["identity"]["cognitoIdentityId"] = user.map_or(Value::Null, Value::from);
    v
}

fn with_body(mut v: Value, body: &str) -> Value {
    v["body"] = body.into();
    v
}

fn with_id(mut v: Value, id: &str) -> Value {
    v["pathParameters"] = json!({ "id": id });
    v["path"] = format!("/notes/{id}").into();
    v
}

fn with_query(mut v: Value, query: Value) -> Value {
    let multi: serde_json::Map<String, Value> = query
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, val)| (k.clone(), json!([val])))
        .collect();
    v["queryStringParameters"] = query;
    v["multiValueQueryStringParameters"] = Value::Object(multi);
    v
}

fn request(v: &Value) -> Request {
    lambda_http::request::from_str(&v.to_string()).expect("valid API Gateway event")
}

fn body_json(resp: &Response<Body>) -> Value {
    if resp.body().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(resp.body().as_ref()).expect("response body is JSON")
    }
}

async fn call(app: &App, op: Operation, v: &Value) -> (u16, Value) {
    let resp = app.handle(op, request(v)).await.expect("handler answers");
    (resp.status().as_u16(), body_json(&resp))
}

async fn create_note(app: &App, user: &str, content: &str) -> Value {
    let body = json!({ "content": content }).to_string();
    let (status, note) = call(
        app,
        Operation::Create,
        &with_body(event(CREATE, Some(user)), &body),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    note
}

fn id_of(note: &Value) -> String {
    note["noteId"].as_str().expect("noteId").to_owned()
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .expect("error body is {\"error\": \"...\"}")
}

#[test]
fn fixtures_are_api_gateway_rest_events_with_an_identity() {
    for fixture in [CREATE, GET, LIST, UPDATE, DELETE] {
        let req = request(&serde_json::from_str(fixture).expect("json"));
        assert_eq!(
            notes_api::handlers::caller_identity(&req).as_deref(),
            Some(ALICE)
        );
    }
}

#[tokio::test]
async fn crud_round_trip_with_unmodified_fixtures() {
    let env = env().await;
    let app = &env.app;
    let (status, created) = call(app, Operation::Create, &event(CREATE, Some(ALICE))).await;
    assert_eq!(status, 201, "{created}");
    let resp = app
        .handle(Operation::Get, request(&event(GET, Some(ALICE))))
        .await
        .expect("answers");
    assert_eq!(resp.status(), 404, "fixture id does not exist yet");
    assert_eq!(resp.headers()["content-type"], "application/json");

    let id = id_of(&created);
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 4));
    assert_eq!(created["userId"], ALICE);
    assert_eq!(created["content"], "hello world");
    assert_eq!(created["attachment"], "uploads/hello.png");
    assert_eq!(created["version"], 1);
    let created_at = created["createdAt"].as_i64().expect("createdAt millis");
    assert!(created_at > 1_600_000_000_000);

    let (status, got) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    assert_eq!((status, &got), (200, &created));

    let (status, list) = call(app, Operation::List, &event(LIST, Some(ALICE))).await;
    assert_eq!(status, 200);
    assert_eq!(list["notes"], json!([created]));
    assert!(list.get("nextToken").is_none());

    let (status, updated) = call(
        app,
        Operation::Update,
        &with_id(event(UPDATE, Some(ALICE)), &id),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["content"], "hello again");
    assert!(
        updated.get("attachment").is_none(),
        "PUT without attachment removes it"
    );
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["createdAt"], created_at);

    let (status, body) = call(
        app,
        Operation::Delete,
        &with_id(event(DELETE, Some(ALICE)), &id),
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    assert_eq!(status, 404);
    let raw = env
        .client
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert_eq!(raw.count(), 0);
}

#[tokio::test]
async fn base64_encoded_bodies_are_accepted() {
    let env = env().await;
    let mut v = with_body(event(CREATE, Some(ALICE)), "eyJjb250ZW50IjoiYjY0In0="); // {"content":"b64"}
    v["isBase64Encoded"] = true.into();
    let (status, note) = call(&env.app, Operation::Create, &v).await;
    assert_eq!((status, note["content"].clone()), (201, json!("b64")));
}

#[tokio::test]
async fn requests_without_identity_get_401() {
    let env = env().await;
    let app = &env.app;
    let note = create_note(app, ALICE, "mine").await;
    let id = id_of(&note);
    for (op, v) in [
        (Operation::Create, event(CREATE, None)),
        (Operation::Get, with_id(event(GET, None), &id)),
        (Operation::List, event(LIST, None)),
        (Operation::Update, with_id(event(UPDATE, None), &id)),
        (Operation::Delete, with_id(event(DELETE, None), &id)),
    ] {
        let (status, body) = call(app, op, &v).await;
        assert_eq!(status, 401, "{op:?}: {body}");
        assert!(error_of(&body).contains("identity"));
    }
    // An empty identity is no identity.
    let (status, _) = call(app, Operation::List, &event(LIST, Some(""))).await;
    assert_eq!(status, 401);
    // The body cannot supply one.
    let forged = with_body(
        event(CREATE, None),
        &json!({"content": "x", "userId": ALICE}).to_string(),
    );
    assert_eq!(call(app, Operation::Create, &forged).await.0, 401);
    let (status, _) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    assert_eq!(status, 200, "the note is still there");
}

#[tokio::test]
async fn users_cannot_touch_each_others_notes() {
    let env = env().await;
    let app = &env.app;
    let alice_note = create_note(app, ALICE, "alice's secret").await;
    let id = id_of(&alice_note);
    let bob_note = create_note(app, BOB, "bob's note").await;

    let (status, body) = call(app, Operation::Get, &with_id(event(GET, Some(BOB)), &id)).await;
    assert_eq!((status, error_of(&body)), (404, "note not found"));

    let (status, list) = call(app, Operation::List, &event(LIST, Some(BOB))).await;
    assert_eq!(status, 200);
    assert_eq!(list["notes"], json!([bob_note]));

    let update = with_body(
        with_id(event(UPDATE, Some(BOB)), &id),
        r#"{"content":"pwned"}"#,
    );
    let (status, body) = call(app, Operation::Update, &update).await;
    assert_eq!((status, error_of(&body)), (404, "note not found"));
    let with_version = with_body(
        with_id(event(UPDATE, Some(BOB)), &id),
        r#"{"content":"pwned","expectedVersion":1}"#,
    );
    assert_eq!(call(app, Operation::Update, &with_version).await.0, 404);

    let (status, body) = call(
        app,
        Operation::Delete,
        &with_id(event(DELETE, Some(BOB)), &id),
    )
    .await;
    assert_eq!((status, error_of(&body)), (404, "note not found"));

    // Alice's note is untouched, and Bob's attempts created nothing under his id.
    let (status, got) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    assert_eq!((status, got), (200, alice_note));
    let (_, list) = call(app, Operation::List, &event(LIST, Some(BOB))).await;
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bad_input_is_400_naming_the_problem() {
    let env = env().await;
    let app = &env.app;
    let note = create_note(app, ALICE, "x").await;
    let id = id_of(&note);
    let long = "a".repeat(notes_api::MAX_CONTENT_CHARS + 1);
    let long_attachment = "a".repeat(notes_api::MAX_ATTACHMENT_CHARS + 1);
    let bodies = [
        ("{\"content\": ", "invalid request body"),
        ("[\"content\"]", "expected a JSON object"),
        (
            r#"{"content": 42}"#,
            "invalid type: integer `42`, expected a string",
        ),
        (r#"{"content": "x", "attachment": 7}"#, "invalid type"),
        (r#"{"attachment": "a.png"}"#, "missing field `content`"),
        (r#"{"content": ""}"#, "`content` must not be empty"),
        (
            r#"{"content": "x", "owner": "bob"}"#,
            "unknown field `owner`",
        ),
        (
            r#"{"content": "x", "noteId": "y"}"#,
            "unknown field `noteId`",
        ),
        ("", "request body is required"),
    ];
    let long_bodies = [
        (json!({ "content": long }).to_string(), "limit is 10000"),
        (
            json!({ "content": "x", "attachment": long_attachment }).to_string(),
            "limit is 1024",
        ),
    ];
    let all = bodies
        .iter()
        .map(|(b, n)| ((*b).to_owned(), *n))
        .chain(long_bodies)
        .collect::<Vec<_>>();
    for (body, needle) in &all {
        let (status, resp) = call(
            app,
            Operation::Create,
            &with_body(event(CREATE, Some(ALICE)), body),
        )
        .await;
        assert_eq!(status, 400, "create {body:.40}: {resp}");
        assert!(
            error_of(&resp).contains(needle),
            "create {body:.40}: {resp}"
        );
        let update = with_body(with_id(event(UPDATE, Some(ALICE)), &id), body);
        let (status, resp) = call(app, Operation::Update, &update).await;
        assert_eq!(status, 400, "update {body:.40}: {resp}");
        assert!(
            error_of(&resp).contains(needle),
            "update {body:.40}: {resp}"
        );
    }
    let (status, resp) = call(
        app,
        Operation::Update,
        &with_body(
            with_id(event(UPDATE, Some(ALICE)), &id),
            r#"{"content":"x","expectedVersion":-1}"#,
        ),
    )
    .await;
    assert_eq!(status, 400, "{resp}");

    for bad_id in ["not-a-uuid", "123", "3f2b8c1e9d4a4b7e8f001a2b3c4d5e6f"] {
        for (op, fixture) in [
            (Operation::Get, GET),
            (Operation::Update, UPDATE),
            (Operation::Delete, DELETE),
        ] {
            let (status, resp) = call(app, op, &with_id(event(fixture, Some(ALICE)), bad_id)).await;
            assert_eq!(status, 400, "{op:?} {bad_id}: {resp}");
            assert!(error_of(&resp).contains("is not a UUID"), "{resp}");
        }
    }
    for (query, needle) in [
        (json!({"limit": "0"}), "`limit`"),
        (json!({"limit": "lots"}), "`limit`"),
        (json!({"nextToken": "abc"}), "`nextToken`"),
    ] {
        let (status, resp) = call(
            app,
            Operation::List,
            &with_query(event(LIST, Some(ALICE)), query),
        )
        .await;
        assert_eq!(status, 400, "{resp}");
        assert!(error_of(&resp).contains(needle), "{resp}");
    }
    // Nothing was created or changed by the bad requests.
    let (_, list) = call(app, Operation::List, &event(LIST, Some(ALICE))).await;
    assert_eq!(list["notes"], json!([note]));
}

#[tokio::test]
async fn update_and_delete_of_missing_notes_are_404_and_create_nothing() {
    let env = env().await;
    let app = &env.app;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (status, body) = call(
        app,
        Operation::Update,
        &with_id(event(UPDATE, Some(ALICE)), &ghost),
    )
    .await;
    assert_eq!((status, error_of(&body)), (404, "note not found"));
    let with_version = with_body(
        with_id(event(UPDATE, Some(ALICE)), &ghost),
        r#"{"content":"x","expectedVersion":1}"#,
    );
    assert_eq!(call(app, Operation::Update, &with_version).await.0, 404);
    let (status, _) = call(
        app,
        Operation::Delete,
        &with_id(event(DELETE, Some(ALICE)), &ghost),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        app,
        Operation::Get,
        &with_id(event(GET, Some(ALICE)), &ghost),
    )
    .await;
    assert_eq!(status, 404);
    let raw = env
        .client
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert_eq!(
        raw.count(),
        0,
        "no item was created by an update of a missing id"
    );

    // Deleting twice: the second is a 404.
    let id = id_of(&create_note(app, ALICE, "short-lived").await);
    let del = with_id(event(DELETE, Some(ALICE)), &id);
    assert_eq!(call(app, Operation::Delete, &del).await.0, 204);
    assert_eq!(call(app, Operation::Delete, &del).await.0, 404);
    // Updating after delete does not resurrect it.
    assert_eq!(
        call(
            app,
            Operation::Update,
            &with_id(event(UPDATE, Some(ALICE)), &id)
        )
        .await
        .0,
        404
    );
    let raw = env
        .client
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert_eq!(raw.count(), 0);
}

#[tokio::test]
async fn stale_expected_version_is_409() {
    let env = env().await;
    let app = &env.app;
    let id = id_of(&create_note(app, ALICE, "v1").await);
    let put = |body: &str| with_body(with_id(event(UPDATE, Some(ALICE)), &id), body);
    let (status, note) = call(
        app,
        Operation::Update,
        &put(r#"{"content":"v2","expectedVersion":1}"#),
    )
    .await;
    assert_eq!((status, note["version"].clone()), (200, json!(2)));
    let (status, body) = call(
        app,
        Operation::Update,
        &put(r#"{"content":"lost?","expectedVersion":1}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        error_of(&body).contains("expected version 1, now 2"),
        "{body}"
    );
    let (_, got) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    assert_eq!(got["content"], "v2");
}

#[tokio::test]
async fn list_pages_through_all_notes() {
    let env = env().await;
    let app = &env.app;
    let mut want = HashSet::new();
    for i in 0..7 {
        want.insert(id_of(&create_note(app, ALICE, &format!("note {i}")).await));
    }
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = json!({ "limit": "3" });
        if let Some(t) = &token {
            query["nextToken"] = t.clone().into();
        }
        let (status, page) = call(
            app,
            Operation::List,
            &with_query(event(LIST, Some(ALICE)), query),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for n in page["notes"].as_array().expect("notes") {
            assert!(n["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("note ")));
            assert!(seen.insert(id_of(n)), "no duplicates across pages");
        }
        match page.get("nextToken") {
            Some(t) => token = Some(t.as_str().expect("token").to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination terminates");
    }
    assert_eq!(seen, want);
    assert!(pages >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_creates_are_all_stored() {
    let env = env().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = env.app.clone();
        tasks.spawn(async move {
            let body = json!({ "content": format!("concurrent {i}") }).to_string();
            call(
                &app,
                Operation::Create,
                &with_body(event(CREATE, Some(ALICE)), &body),
            )
            .await
        });
    }
    let mut created = HashSet::new();
    while let Some(res) = tasks.join_next().await {
        let (status, note) = res.expect("task");
        assert_eq!(status, 201, "{note}");
        assert!(created.insert(id_of(&note)));
    }
    assert_eq!(created.len(), 50);
    let mut listed = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = json!({ "limit": "100" });
        if let Some(t) = &token {
            query["nextToken"] = t.clone().into();
        }
        let (_, page) = call(
            &env.app,
            Operation::List,
            &with_query(event(LIST, Some(ALICE)), query),
        )
        .await;
        listed.extend(page["notes"].as_array().expect("notes").iter().map(id_of));
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, created);
}

async fn concurrent_updates(app: &App, id: &str, expected_version: Option<u64>) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = app.clone();
        let id = id.to_owned();
        tasks.spawn(async move {
            let content = format!("write {i}");
            let mut body = json!({ "content": content });
            if let Some(v) = expected_version {
                body["expectedVersion"] = v.into();
            }
            let v = with_body(with_id(event(UPDATE, Some(ALICE)), &id), &body.to_string());
            let (status, resp) = call(&app, Operation::Update, &v).await;
            (content, status, resp)
        });
    }
    let mut winners = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let (content, status, resp) = res.expect("task");
        match status {
            200 => {
                assert_eq!(resp["content"], content.as_str());
                winners.push(content);
            }
            409 => assert!(
                error_of(&resp).contains("changed by another request"),
                "{resp}"
            ),
            other => panic!("update answered {other}: {resp}"),
        }
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_updates_lose_nothing_silently() {
    let env = env().await;
    let app = &env.app;
    let id = id_of(&create_note(app, ALICE, "original").await);

    let winners = concurrent_updates(app, &id, None).await;
    assert!(!winners.is_empty(), "at least one update succeeds");
    let (_, note) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    let content = note["content"].as_str().expect("content").to_owned();
    assert!(
        winners.contains(&content),
        "final content {content:?} is one of the successful writes"
    );
    // Real DynamoDB evaluates a condition and applies the write atomically, so there every success
    // bumps the version exactly once (version == 1 + successes). moto_server checks the condition
    // and writes without a lock across its request threads, so two writers can occasionally both
    // pass on the same version; assert only what holds on both.
    let version = note["version"].as_u64().expect("version");
    assert!(
        (2..=1 + winners.len() as u64).contains(&version),
        "version {version} after {} successful updates",
        winners.len()
    );

    // With the version the callers read: every caller conditions on the same version, the final
    // note is one of the winners' writes, exactly one version later.
    let winners = concurrent_updates(app, &id, Some(version)).await;
    assert!(!winners.is_empty());
    let (_, note) = call(app, Operation::Get, &with_id(event(GET, Some(ALICE)), &id)).await;
    let content = note["content"].as_str().expect("content").to_owned();
    assert!(
        winners.contains(&content),
        "final content {content:?} is one of the successful writes"
    );
    assert_eq!(note["version"], version + 1);
}

#[tokio::test]
async fn storage_failures_are_generic_500s() {
    let env = env().await;
    // A table that does not exist: DynamoDB answers ResourceNotFoundException.
    let app = App::new(
        env.client.clone(),
        Settings {
            table: "no-such-table".into(),
            ..settings("")
        },
    );
    let (status, body) = call(&app, Operation::Create, &event(CREATE, Some(ALICE))).await;
    assert_eq!(
        (status, body),
        (500, json!({"error": "internal server error"}))
    );

    // DynamoDB unreachable: nothing listens on the endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "test",
        ))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .load()
        .await;
    let app = App::new(aws_sdk_dynamodb::Client::new(&sdk), settings(""));
    let (status, body) = call(&app, Operation::List, &event(LIST, Some(ALICE))).await;
    assert_eq!(
        (status, body),
        (500, json!({"error": "internal server error"}))
    );
}

#[tokio::test]
async fn fault_injection_crash_error_rate_and_latency() {
    let env = env().await;
    let crash = App::new(env.client.clone(), settings("crash"));
    let err = crash
        .handle(Operation::Create, request(&event(CREATE, Some(ALICE))))
        .await
        .expect_err("crash fails the invocation");
    assert!(err.to_string().contains("NOTES_FAULT=crash"));

    let failing = App::new(env.client.clone(), settings("error-rate:1"));
    let (status, body) = call(&failing, Operation::Create, &event(CREATE, Some(ALICE))).await;
    assert_eq!(
        (status, body),
        (500, json!({"error": "internal server error"}))
    );
    let raw = env
        .client
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert_eq!(raw.count(), 0, "faulted requests do no work");

    let slow = App::new(env.client.clone(), settings("latency:200ms"));
    let started = Instant::now();
    let (status, _) = call(&slow, Operation::Create, &event(CREATE, Some(ALICE))).await;
    assert_eq!(status, 201);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let none = App::new(env.client.clone(), settings("error-rate:0"));
    for _ in 0..5 {
        assert_eq!(
            call(&none, Operation::List, &event(LIST, Some(ALICE)))
                .await
                .0,
            200
        );
    }
}
