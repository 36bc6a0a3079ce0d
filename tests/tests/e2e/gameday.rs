//! The game day's traffic: `notes-load` signs in through Cognito (moto's user pool and identity
//! pool), signs every request with the identity's temporary credentials, and a loopback stand-in
//! for API Gateway checks each SigV4 signature (what the API's `AWS_IAM` auth does) before it
//! hands the request, with the caller's identity, to the real notes handlers (DynamoDB in moto)
//! with a fault injected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use lambda_canary_tests::proxy::{read_request, Request};
use lambda_canary_tests::Moto;
use notes_api::{App, FaultConfig, Operation, Settings};
use notes_load::cognito::{call, sign_in, Login};
use notes_load::load::{run, Mix, Plan};
use notes_load::{sign_request, LoadError};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const REGION: &str = "us-east-1";
const USER: &str = "gameday@example.com";
const PASSWORD: &str = "Game-day-password-1";
const TABLE: &str = "notes-gameday";
const EVENT: &str = include_str!("../../fixtures/create-note.json");

/// moto's Cognito, set up as the notes stack sets up its pools, with one game-day user.
async fn pools(client: &notes_load::Client, moto: &str) -> Login {
    let idp = |target: &str, body: Value| {
        let target = format!("AWSCognitoIdentityProviderService.{target}");
        async move { call(client, moto, &target, &body).await.expect(&target) }
    };
    let pool = idp("CreateUserPool", json!({"PoolName": "notes-users"})).await;
    let pool_id = pool["UserPool"]["Id"]
        .as_str()
        .expect("pool id")
        .to_string();
    let app = idp(
        "CreateUserPoolClient",
        json!({"UserPoolId": pool_id, "ClientName": "notes-load",
               "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
    )
    .await;
    let client_id = app["UserPoolClient"]["ClientId"]
        .as_str()
        .expect("client id");
    idp(
        "AdminCreateUser",
        json!({"UserPoolId": pool_id, "Username": USER, "MessageAction": "SUPPRESS"}),
    )
    .await;
    idp(
        "AdminSetUserPassword",
        json!({"UserPoolId": pool_id, "Username": USER, "Password": PASSWORD, "Permanent": true}),
    )
    .await;
    let provider = format!("cognito-idp.{REGION}.amazonaws.com/{pool_id}");
    let identity = call(
        client,
        moto,
        "AWSCognitoIdentityService.CreateIdentityPool",
        &json!({"IdentityPoolName": "notes", "AllowUnauthenticatedIdentities": false,
                "CognitoIdentityProviders": [{"ProviderName": provider, "ClientId": client_id}]}),
    )
    .await
    .expect("create identity pool");
    Login {
        region: REGION.into(),
        user_pool_id: pool_id,
        client_id: client_id.into(),
        identity_pool_id: identity["IdentityPoolId"].as_str().expect("id").into(),
        username: USER.into(),
        password: PASSWORD.into(),
        user_pool_endpoint: moto.into(),
        identity_endpoint: moto.into(),
    }
}

/// `20261124T032220Z` as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// API Gateway's `AWS_IAM` check: the request, signed again with the identity's credentials at
/// its own `x-amz-date` over the headers it says it signed, must give the same `authorization`.
fn signature_holds(req: &Request, credentials: &Credentials) -> bool {
    let (Some(auth), Some(time)) = (
        req.header("authorization"),
        req.header("x-amz-date").and_then(amz_date),
    ) else {
        return false;
    };
    let Some(signed) = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
    else {
        return false;
    };
    let host = req.header("host").unwrap_or_default();
    let mut again = http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("http://{host}{}", req.target));
    for name in signed.split(';') {
        if !matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            again = again.header(name, req.header(name).unwrap_or_default());
        }
    }
    let Ok(mut again) = again.body(req.body.clone()) else {
        return false;
    };
    sign_request(&mut again, credentials, REGION, time).is_ok()
        && again
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(auth)
}

/// The stand-in for API Gateway in front of the notes handlers.
struct Gateway {
    app: App,
    credentials: Credentials,
    identity: String,
    verified: AtomicU64,
    refused: AtomicU64,
}

impl Gateway {
    /// The handler's answer (status, body) for a request that passed the signature check.
    async fn dispatch(&self, req: &Request) -> (u16, Vec<u8>) {
        let path = req.path();
        let id = path
            .strip_prefix("/prod/notes/")
            .filter(|id| !id.is_empty());
        let op = match (req.method.as_str(), path, id) {
            ("POST", "/prod/notes", None) => Operation::Create,
            ("GET", "/prod/notes", None) => Operation::List,
            ("GET", _, Some(_)) => Operation::Get,
            ("PUT", _, Some(_)) => Operation::Update,
            ("DELETE", _, Some(_)) => Operation::Delete,
            _ => return (404, b"{\"message\":\"no such route\"}".to_vec()),
        };
        let mut event: Value = serde_json::from_str(EVENT).expect("fixture");
        event["httpMethod"] = req.method.as_str().into();
        event["path"] = path.trim_start_matches("/prod").into();
        event["resource"] = if id.is_some() {
            "/notes/{id}"
        } else {
            "/notes"
        }
        .into();
        event["pathParameters"] = id.map_or(Value::Null, |id| json!({ "id": id }));
        event["body"] = String::from_utf8_lossy(&req.body).into_owned().into();
        event["requestContext"]["identity"]["cognitoIdentityId"] = self.identity.as_str().into();
        let request = lambda_http::request::from_str(&event.to_string()).expect("event");
        match self.app.handle(op, request).await {
            Ok(response) => (response.status().as_u16(), response.body().to_vec()),
            Err(e) => (502, format!("{{\"message\":\"{e}\"}}").into_bytes()),
        }
    }

    async fn serve(self: Arc<Self>, mut stream: TcpStream) {
        let Ok(Some(req)) = read_request(&mut stream, &mut Vec::new()).await else {
            return;
        };
        let (status, body) = if signature_holds(&req, &self.credentials) {
            self.verified.fetch_add(1, Ordering::Relaxed);
            self.dispatch(&req).await
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            (403, b"{\"message\":\"The request signature we calculated does not match the signature you provided.\"}".to_vec())
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
    }
}

async fn create_table(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let mut create = client
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [("userId", KeyType::Hash), ("noteId", KeyType::Range)] {
        create = create
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .expect("key"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            );
    }
    create.send().await.expect("create table");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_game_day_load_signs_in_signs_every_request_and_sees_the_fault() {
    let moto = Moto::start();
    let http = notes_load::client().expect("client");
    let login = pools(&http, &moto.endpoint).await;

    // A wrong password is refused by Cognito, named.
    let wrong = Login {
        password: "not-it".into(),
        ..login.clone()
    };
    let err = sign_in(&http, &wrong).await.expect_err("wrong password");
    assert!(
        matches!(&err, LoadError::Call { what, why }
            if what.contains("InitiateAuth") && why.contains("NotAuthorizedException")),
        "{err}"
    );

    // The identity the credentials belong to, as API Gateway would know it.
    let session = sign_in(&http, &login).await.expect("sign in");
    let dynamodb = create_table(&moto.sdk_config().await).await;
    let settings = Settings {
        table: TABLE.into(),
        fault: FaultConfig::parse(Some("error-rate:0.3")).expect("fault"),
        function_name: "notes-gameday".into(),
        function_version: "2".into(),
    };
    let gateway = Arc::new(Gateway {
        app: App::new(dynamodb.clone(), settings),
        credentials: session.credentials.clone(),
        identity: session.identity_id.clone(),
        verified: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!("http://{}/prod", listener.local_addr().expect("addr"));
    let serving = Arc::clone(&gateway);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(Arc::clone(&serving).serve(stream));
        }
    });

    // A request signed with another secret is refused (the check can fail).
    let forged = Credentials::new("TESTACCESSKEY12345", "another-secret", None, None, "test");
    let mut req = http::Request::get(format!("{api}/notes"))
        .body(Vec::new())
        .expect("request");
    sign_request(&mut req, &forged, REGION, SystemTime::now()).expect("sign");
    let answer = notes_load::send(&http, req, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(answer.status, 403);

    let plan = Plan {
        rate: 25.0,
        duration: Duration::from_secs(3),
        mix: Mix::default(),
        every: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
        in_flight: 16,
        seed: 3,
    };
    let mut windows = Vec::new();
    let total = run(&http, &api, &login, &plan, |t, _| windows.push(t.clone()))
        .await
        .expect("the run");
    server.abort();

    assert!(windows.len() >= 3, "a line every second: {}", windows.len());
    assert!(total.answered >= 50, "{total:?}");
    assert_eq!((total.failed, total.skipped), (0, 0), "{total:?}");
    assert_eq!(total.client_errors, 0, "signed, own notes only: {total:?}");
    assert_eq!(gateway.verified.load(Ordering::Relaxed), total.answered);
    assert_eq!(
        gateway.refused.load(Ordering::Relaxed),
        1,
        "only the forged one"
    );
    let share = total.errors_5xx() as f64 / total.answered as f64;
    assert!(
        (0.1..0.55).contains(&share),
        "5xx share {share} at error-rate 0.3"
    );
    assert_eq!(total.ok + total.errors_5xx(), total.answered);
    let stored = dynamodb
        .query()
        .table_name(TABLE)
        .key_condition_expression("userId = :u")
        .expression_attribute_values(
            ":u",
            aws_sdk_dynamodb::types::AttributeValue::S(session.identity_id.clone()),
        )
        .send()
        .await
        .expect("query");
    assert!(
        stored.count() > 0,
        "the user's notes are stored under its identity"
    );
}
