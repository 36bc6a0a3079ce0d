//! The request pipeline shared by the five functions: identity, fault injection, the operation,
//! the error mapping, the log line and the EMF record.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use uuid::Uuid;

use crate::error::{ApiError, ConfigError};
use crate::fault::{self, FaultConfig, FaultOutcome, XorShift64};
use crate::metrics::{emf_line, RequestMetrics};
use crate::model::{self, Note};
use crate::response;
use crate::store::{NotesStore, UpdateResult};
use crate::telemetry::{log_request, RequestLog};

/// Body of `GET /notes`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    notes: Vec<Note>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Which of the five functions is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /notes` (binary `notes-create`): 201 with the new note.
    Create,
    /// `GET /notes/{id}` (binary `notes-get`): 200 with the note.
    Get,
    /// `GET /notes` (binary `notes-list`): 200 with `{"notes": [...], "nextToken"?: "..."}`.
    List,
    /// `PUT /notes/{id}` (binary `notes-update`): 200 with the updated note.
    Update,
    /// `DELETE /notes/{id}` (binary `notes-delete`): 204.
    Delete,
}

/// Configuration read once at startup from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// DynamoDB table (`NOTES_TABLE`).
    pub table: String,
    /// Fault injection (`NOTES_FAULT`).
    pub fault: FaultConfig,
    /// `AWS_LAMBDA_FUNCTION_NAME`, default `local`.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_VERSION`, default `$LATEST`.
    pub function_version: String,
}

impl Settings {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] if `NOTES_TABLE` is missing or `NOTES_FAULT` is invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `lookup` (an environment stand-in, for tests).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let nonempty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        Ok(Self {
            table: nonempty("NOTES_TABLE").ok_or(ConfigError::MissingTable)?,
            fault: FaultConfig::parse(lookup(fault::ENV_VAR).as_deref())?,
            function_name: nonempty("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into()),
            function_version: nonempty("AWS_LAMBDA_FUNCTION_VERSION")
                .unwrap_or_else(|| "$LATEST".into()),
        })
    }
}

/// Prints why the function cannot start and returns the failure exit code (for `main`).
#[must_use]
pub fn startup_failed(binary: &str, err: &ConfigError) -> ExitCode {
    tracing::error!(error = %err, "startup failed");
    eprintln!("{binary}: cannot start: {err}");
    ExitCode::FAILURE
}

/// Maps the runtime's result to an exit code, printing the error if there was one (for `main`).
#[must_use]
pub fn finish(result: Result<(), lambda_http::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "lambda runtime stopped");
            eprintln!("lambda runtime stopped: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The invocation failed on purpose (`NOTES_FAULT=crash`).
#[derive(Debug, thiserror::Error)]
#[error("injected crash (NOTES_FAULT=crash): this version is broken on purpose")]
pub struct InjectedCrash;

/// A running function: the store plus its settings. Build once per process, share across requests.
#[derive(Debug, Clone)]
pub struct App {
    store: NotesStore,
    settings: Settings,
}

/// The caller's Cognito identity id from an API Gateway REST request context, if present and
/// non-empty. Nothing in the body, path or headers can set it.
#[must_use]
pub fn caller_identity(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV1(ctx) => ctx
            .identity
            .cognito_identity_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn request_id(req: &Request) -> String {
    if let Some(ctx) = req.lambda_context_ref() {
        if !ctx.request_id.is_empty() {
            return ctx.request_id.clone();
        }
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone().unwrap_or_default(),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn path_id(req: &Request) -> Result<String, ApiError> {
    let params = req.path_parameters_ref();
    match params.and_then(|p| p.first("id")) {
        Some(raw) => model::parse_note_id(raw),
        None => Err(ApiError::BadRequest("missing path parameter `id`".into())),
    }
}

impl App {
    /// An app on `client` with `settings`.
    pub fn new(client: aws_sdk_dynamodb::Client, settings: Settings) -> Self {
        Self {
            store: NotesStore::new(client, settings.table.clone()),
            settings,
        }
    }

    /// The settings this app runs with.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handles one API Gateway request for `op`: applies `NOTES_FAULT`, checks the caller's
    /// identity, runs the operation, logs one JSON line and prints one EMF record.
    ///
    /// # Errors
    /// Only with `NOTES_FAULT=crash` ([`InjectedCrash`]); every other failure is an HTTP answer
    /// (4xx, or 500 with a generic message).
    pub async fn handle(
        &self,
        op: Operation,
        req: Request,
    ) -> Result<Response<Body>, lambda_http::Error> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let user = caller_identity(&req);
        let fault = self.settings.fault;
        let outcome = if fault.is_off() {
            FaultOutcome::Proceed
        } else {
            if let Some(delay) = fault.delay() {
                tokio::time::sleep(delay).await;
            }
            fault.outcome(XorShift64::from_request(&request_id).next_f64())
        };

        let result = match (outcome, &user) {
            (FaultOutcome::Crash, _) => {
                self.record(
                    &req,
                    None,
                    started,
                    user.is_some(),
                    &request_id,
                    Some(&InjectedCrash.to_string()),
                );
                return Err(InjectedCrash.into());
            }
            (FaultOutcome::Fail, _) => Err(ApiError::InjectedFault),
            (FaultOutcome::Proceed, None) => Err(ApiError::Unauthorized),
            (FaultOutcome::Proceed, Some(user)) => self.run(op, user, &req).await,
        };
        let (resp, detail) = match result {
            Ok(resp) => (resp, None),
            Err(err) => {
                let detail = (err.status() >= 500).then(|| err.to_string());
                (response::error(err.status(), &err.public_message()), detail)
            }
        };
        let status = resp.status().as_u16();
        self.record(
            &req,
            Some(status),
            started,
            user.is_some(),
            &request_id,
            detail.as_deref(),
        );
        Ok(resp)
    }

    fn record(
        &self,
        req: &Request,
        status: Option<u16>,
        started: Instant,
        user_present: bool,
        request_id: &str,
        error: Option<&str>,
    ) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        log_request(&RequestLog {
            method: req.method().as_str(),
            path: req.uri().path(),
            status,
            latency_ms,
            user_present,
            function: &self.settings.function_name,
            version: &self.settings.function_version,
            request_id,
            error,
        });
        // Consumed by every invocation, so only an environment's first is ever cold.
        let cold = crate::metrics::first_request();
        // A cold start's time is the environment's initialisation plus this request.
        let reported_ms = if cold {
            crate::metrics::cold_start_ms(latency_ms)
        } else {
            latency_ms
        };
        // A crashed invocation publishes no EMF record, like a build that never ran: it shows up
        // as an AWS/Lambda `Errors` datapoint instead.
        if let Some(status) = status {
            let line = emf_line(&RequestMetrics {
                function_name: &self.settings.function_name,
                version: &self.settings.function_version,
                status,
                latency_ms: reported_ms,
                timestamp_ms: u64::try_from(now_ms()).unwrap_or(0),
                cold,
            });
            println!("{line}");
        }
    }

    async fn run(
        &self,
        op: Operation,
        user: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        match op {
            Operation::Create => self.create(user, req).await,
            Operation::Get => self.get(user, req).await,
            Operation::List => self.list(user, req).await,
            Operation::Update => self.update(user, req).await,
            Operation::Delete => self.delete(user, req).await,
        }
    }

    async fn create(&self, user: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let draft = model::parse_create(req.body().as_ref())?;
        let now = now_ms();
        let note = Note {
            user_id: user.to_owned(),
            note_id: Uuid::new_v4().hyphenated().to_string(),
            content: draft.content,
            attachment: draft.attachment,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.store.create(&note).await?;
        let mut resp = response::json(201, &note);
        if let Ok(loc) = format!("/notes/{}", note.note_id).parse() {
            resp.headers_mut()
                .insert(lambda_http::http::header::LOCATION, loc);
        }
        Ok(resp)
    }

    async fn get(&self, user: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let id = path_id(req)?;
        match self.store.get(user, &id).await? {
            Some(note) => Ok(response::json(200, &note)),
            None => Err(ApiError::NotFound),
        }
    }

    async fn list(&self, user: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let query = req.query_string_parameters_ref();
        let (limit, after) = model::parse_page(
            query.and_then(|q| q.first("limit")),
            query.and_then(|q| q.first("nextToken")),
        )?;
        let page = self.store.list(user, limit, after.as_deref()).await?;
        Ok(response::json(
            200,
            &ListBody {
                notes: page.notes,
                next_token: page.next,
            },
        ))
    }

    async fn update(&self, user: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let id = path_id(req)?;
        let change = model::parse_update(req.body().as_ref())?;
        let expected = match change.expected_version {
            Some(v) => v,
            // No version from the caller: condition on the version we read now, so a write that
            // lands between our read and our write is detected, never overwritten.
            None => match self.store.get(user, &id).await? {
                Some(current) => current.version,
                None => return Err(ApiError::NotFound),
            },
        };
        match self
            .store
            .update(user, &id, &change.draft, expected, now_ms())
            .await?
        {
            UpdateResult::Updated(note) => Ok(response::json(200, &note)),
            UpdateResult::Missing => Err(ApiError::NotFound),
            UpdateResult::Conflict { expected, current } => Err(ApiError::Conflict(format!(
                "note was changed by another request (expected version {expected}, now \
                 {current}); fetch it again and retry"
            ))),
        }
    }

    async fn delete(&self, user: &str, req: &Request) -> Result<Response<Body>, ApiError> {
        let id = path_id(req)?;
        if self.store.delete(user, &id).await? {
            Ok(response::no_content())
        } else {
            Err(ApiError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn settings_defaults_and_required_table() {
        let s = Settings::from_lookup(env(&[("NOTES_TABLE", "notes")])).expect("valid");
        assert_eq!(s.table, "notes");
        assert_eq!(s.function_name, "local");
        assert_eq!(s.function_version, "$LATEST");
        assert!(s.fault.is_off());
        let e = Settings::from_lookup(env(&[])).expect_err("no table");
        assert!(e.to_string().contains("NOTES_TABLE"));
    }

    #[test]
    fn settings_read_lambda_env_and_reject_bad_fault() {
        let s = Settings::from_lookup(env(&[
            ("NOTES_TABLE", "t"),
            ("AWS_LAMBDA_FUNCTION_NAME", "notes-get"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "12"),
            ("NOTES_FAULT", "crash"),
        ]))
        .expect("valid");
        assert_eq!(
            (s.function_name.as_str(), s.function_version.as_str()),
            ("notes-get", "12")
        );
        assert!(s.fault.crash);
        let e = Settings::from_lookup(env(&[("NOTES_TABLE", "t"), ("NOTES_FAULT", "latency:5")]))
            .expect_err("bad fault");
        assert!(e
            .to_string()
            .contains("invalid NOTES_FAULT value \"latency:5\""));
    }

    fn request(identity: serde_json::Value) -> Request {
        let event = serde_json::json!({
            "resource": "/notes", "path": "/notes", "httpMethod": "GET",
            "headers": {}, "multiValueHeaders": {}, "queryStringParameters": null,
            "multiValueQueryStringParameters": null, "pathParameters": null,
            "stageVariables": null, "body": null, "isBase64Encoded": false,
            "requestContext": {
                "accountId": "123456789012", "resourceId": "r", "stage": "prod",
                "requestId": "req-1", "httpMethod": "GET", "resourcePath": "/notes",
                "path": "/prod/notes", "identity": identity, "apiId": "a"
            }
        });
        lambda_http::request::from_str(&event.to_string()).expect("valid event")
    }

    /// An app whose DynamoDB endpoint is a closed loopback port: any store call fails (500), so
    /// a 400 proves the request was refused before reaching storage.
    fn offline_app() -> App {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let settings = Settings::from_lookup(env(&[("NOTES_TABLE", "notes")])).expect("valid");
        App::new(aws_sdk_dynamodb::Client::from_conf(conf), settings)
    }

    fn update_request(body: &str) -> Request {
        let id = "3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f";
        let event = serde_json::json!({
            "resource": "/notes/{id}", "path": format!("/notes/{id}"), "httpMethod": "PUT",
            "headers": {}, "multiValueHeaders": {}, "queryStringParameters": null,
            "multiValueQueryStringParameters": null, "pathParameters": {"id": id},
            "stageVariables": null, "body": body, "isBase64Encoded": false,
            "requestContext": {
                "accountId": "123456789012", "resourceId": "r", "stage": "prod",
                "requestId": "req-2", "httpMethod": "PUT", "resourcePath": "/notes/{id}",
                "path": format!("/prod/notes/{id}"),
                "identity": {"cognitoIdentityId": "us-east-1:abc"}, "apiId": "a"
            }
        });
        lambda_http::request::from_str(&event.to_string()).expect("valid event")
    }

    #[tokio::test]
    async fn update_with_the_largest_expected_version_is_a_400_naming_the_field() {
        let app = offline_app();
        for version in ["18446744073709551615", "18446744073709551616", "-1"] {
            let body = format!(r#"{{"content":"x","expectedVersion":{version}}}"#);
            let resp = app
                .handle(Operation::Update, update_request(&body))
                .await
                .expect("an HTTP answer");
            assert_eq!(resp.status().as_u16(), 400, "{version}");
            let json: serde_json::Value =
                serde_json::from_slice(resp.body().as_ref()).expect("JSON body");
            let message = json["error"].as_str().expect("error message");
            assert!(
                message.contains("`expectedVersion`"),
                "{version}: {message}"
            );
        }
    }

    #[test]
    fn identity_comes_only_from_request_context() {
        let r = request(serde_json::json!({"cognitoIdentityId": "us-east-1:abc"}));
        assert_eq!(caller_identity(&r).as_deref(), Some("us-east-1:abc"));
        assert_eq!(request_id(&r), "req-1");
        assert_eq!(caller_identity(&request(serde_json::json!({}))), None);
        assert_eq!(
            caller_identity(&request(serde_json::json!({"cognitoIdentityId": ""}))),
            None
        );
        assert_eq!(
            caller_identity(&request(serde_json::json!({"cognitoIdentityId": null}))),
            None
        );
    }
}
