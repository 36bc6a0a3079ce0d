//! Test harness for the end-to-end tests: a `moto_server` (the AWS emulator from PyPI
//! `moto[server]`) on loopback, and SDK configuration that points at it.
//!
//! ```ignore
//! let moto = lambda_canary_tests::Moto::start();
//! let sdk = moto.sdk_config().await;
//! let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
//! ```
//!
//! Current CloudWatch clients speak the RPC v2 CBOR protocol, which moto does not serve: every
//! [`Moto`] has a [`gateway`] in front that translates it to moto's JSON 1.0 ([`cbor`]).
//!
//! [`proxy`] puts a loopback proxy in front of moto that enforces Lambda's `RevisionId` and SNS's
//! subject rules and injects faults; [`campaign`] drives the canary agent through it in rounds of
//! races and faults and checks what must hold.

pub mod campaign;
pub mod cbor;
pub mod gateway;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often [`Moto::start`] checks whether the server is up.
const POLL: Duration = Duration::from_millis(50);
/// How long [`Moto::start`] waits for the server before giving up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How to install moto, for error messages.
const INSTALL_HINT: &str =
    "install it with `python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.5'` \
     in the workspace root, or set MOTO_SERVER to the moto_server executable";

/// A running `moto_server` on 127.0.0.1, killed (and waited for) on drop, behind a
/// [`gateway::Gateway`] that serves CloudWatch's RPC v2 CBOR protocol. Its output goes to
/// `target/<profile>/moto-logs/`, kept only for failing tests.
#[derive(Debug)]
pub struct Moto {
    /// Base URL for clients, e.g. `http://127.0.0.1:41234`: the gateway in front of the server.
    pub endpoint: String,
    /// `host:port` of the server itself.
    server: String,
    child: Child,
    log: PathBuf,
    gateway: Option<gateway::Gateway>,
}

/// Where `moto_server` is looked for: `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` if it
/// exists, else `moto_server` on `PATH`.
fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory for moto logs: next to the test binary under `target/`, else the temp dir.
fn log_dir() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        // target/<profile>/deps/<test-binary>
        exe.parent()
            .and_then(Path::parent)
            .map(|p| p.join("moto-logs"))
    });
    let dir = from_exe.unwrap_or_else(|| std::env::temp_dir().join("lambda-canary-moto-logs"));
    if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"))
        .port()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Moto {
    /// Starts `moto_server` on 127.0.0.1 on a free port and waits (polling every 50 ms, up to 30 s)
    /// until it accepts connections. Its output goes to a log file under `target/`.
    ///
    /// # Panics
    /// If `moto_server` cannot be found or started (the message names the path tried and how to
    /// install it), or if it exits or does not answer within 30 s.
    #[must_use]
    pub fn start() -> Moto {
        let program = moto_server_path();
        // A port picked by the OS may be taken again before moto binds it; retry a few times.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = log_dir().join(format!("moto-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("cannot create moto log {}: {e}", log.display()));
            let log_err = log_file
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot clone moto log handle: {e}"));
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "moto_server not found (tried {}): {INSTALL_HINT}",
                    program.display()
                ),
                Err(e) => panic!("cannot start moto_server ({}): {e}", program.display()),
            };
            let server = format!("127.0.0.1:{port}");
            let mut moto = Moto {
                endpoint: format!("http://{server}"),
                server,
                child,
                log,
                gateway: None,
            };
            match moto.wait_ready(port) {
                Ok(()) => {
                    let gateway = gateway::Gateway::start(&moto.server).unwrap_or_else(|e| {
                        panic!("cannot start the CloudWatch gateway in front of moto: {e}")
                    });
                    moto.endpoint = gateway.endpoint().to_string();
                    moto.gateway = Some(gateway);
                    return moto;
                }
                Err(why) => last_failure = why,
            }
        }
        panic!(
            "moto_server ({}) did not start: {last_failure}",
            program.display()
        );
    }

    /// Waits until the port accepts connections. On failure the child is killed on drop.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited with {status}; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            if TcpStream::connect_timeout(&addr, POLL).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "moto_server did not answer on {} within {}s; log {}:\n{}",
                    self.endpoint,
                    STARTUP_TIMEOUT.as_secs(),
                    self.log.display(),
                    tail(&self.log)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SDK configuration for this server: region `us-east-1`, static test credentials and
    /// `endpoint_url` = [`Moto::endpoint`]. The programmatic endpoint takes precedence over any
    /// `AWS_ENDPOINT_URL*` variable or profile setting, so clients built from it never reach AWS.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_via(
            &self.endpoint,
            None,
            aws_config::retry::RetryConfig::standard(),
        )
        .await
    }

    /// Like [`Moto::sdk_config`], for clients that go through `endpoint` (e.g. a
    /// [`proxy::Proxy`] in front of this server), name themselves `app_name` in their user agent,
    /// and retry as `retry` says.
    ///
    /// # Panics
    /// If `app_name` is not a valid SDK application name.
    pub async fn sdk_config_via(
        &self,
        endpoint: &str,
        app_name: Option<&str>,
        retry: aws_config::retry::RetryConfig,
    ) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "moto-test",
            ))
            .endpoint_url(endpoint)
            .retry_config(retry);
        if let Some(name) = app_name {
            let app = aws_config::AppName::new(name.to_string())
                .unwrap_or_else(|e| panic!("invalid SDK app name {name:?}: {e}"));
            loader = loader.app_name(app);
        }
        loader.load().await
    }

    /// Path of this server's log file (under `target/`; removed on drop unless the test panics).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Calls an AWS Query-protocol API of `service` (e.g. `iam`) with form `params` (`Action`,
    /// `Version`, ...) and returns the response body. For the few services the tests package has
    /// no SDK client for. The `Authorization` header names the service: without it moto routes a
    /// `POST /` to S3. The signature is not checked.
    ///
    /// # Errors
    /// The connection failed, or moto answered with a non-2xx status (the message has the body).
    pub fn query_api(&self, service: &str, params: &[(&str, &str)]) -> Result<String, String> {
        let host = self.server.as_str();
        let body = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = format!(
            "POST / HTTP/1.1\r\n\
             Host: {host}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x\r\n\
             Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(host)
            .map_err(|e| format!("cannot connect to moto at {host}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("cannot send the {service} request: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| format!("cannot read the {service} response: {e}"))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(format!("{service} answered HTTP {status}: {body}"))
        }
    }

    /// Creates the IAM role [`LAMBDA_ROLE_ARN`] that moto requires before `CreateFunction`
    /// (idempotent: an existing role is fine) and returns its ARN.
    ///
    /// # Panics
    /// If moto does not create it.
    pub fn create_lambda_role(&self) -> &'static str {
        let created = self.query_api(
            "iam",
            &[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", LAMBDA_ROLE_NAME),
                (
                    "AssumeRolePolicyDocument",
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
                ),
            ],
        );
        match created {
            Ok(_) => LAMBDA_ROLE_ARN,
            Err(e) if e.contains("EntityAlreadyExists") => LAMBDA_ROLE_ARN,
            Err(e) => panic!("cannot create the IAM role for Lambda in moto: {e}"),
        }
    }
}

/// Name of the role [`Moto::create_lambda_role`] creates.
pub const LAMBDA_ROLE_NAME: &str = "lambda-role";
/// ARN of the role [`Moto::create_lambda_role`] creates (moto's default account).
pub const LAMBDA_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/lambda-role";

/// `application/x-www-form-urlencoded` encoding of one key or value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Real time, rounded down to the minute (epoch seconds).
#[must_use]
pub fn this_minute() -> i64 {
    let now = canary_agent::clock::now_secs();
    now - now % 60
}

/// A valid, empty zip archive whose comment is `tag`: different tags give different code (and
/// `CodeSha256`), so `UpdateFunctionCode` + `PublishVersion` makes a new version each time.
///
/// # Panics
/// If `tag` is longer than a zip comment may be (65535 bytes).
#[must_use]
pub fn empty_zip(tag: &str) -> Vec<u8> {
    let comment_len = u16::try_from(tag.len()).expect("zip comment fits in 64 KiB");
    // End of central directory record: signature, 16 bytes of zero counts/offsets, comment.
    let mut zip = b"PK\x05\x06".to_vec();
    zip.extend_from_slice(&[0; 16]);
    zip.extend_from_slice(&comment_len.to_le_bytes());
    zip.extend_from_slice(tag.as_bytes());
    zip
}

impl Drop for Moto {
    /// Kills and reaps the server. Its log is kept only if the test is failing (panicking).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// One message on-call received: the SNS envelope moto puts in a subscribed SQS queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// SNS `Subject`.
    pub subject: String,
    /// SNS `Message` (the body).
    pub message: String,
    /// SNS message attributes, name → string value.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Creates the SNS topic `name` and returns its ARN.
///
/// # Panics
/// If moto refuses the call.
pub async fn create_topic(sdk: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("create SNS topic")
        .topic_arn()
        .expect("topic ARN")
        .to_string()
}

/// What on-call receives: an SQS queue subscribed to an SNS topic (protocol `sqs`, raw delivery
/// off, so every message carries the SNS envelope with subject and attributes).
#[derive(Debug, Clone)]
pub struct Inbox {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Inbox {
    /// Creates a queue named `name` and subscribes it to `topic_arn`.
    ///
    /// # Panics
    /// If moto refuses any of the calls.
    pub async fn subscribe(sdk: &aws_config::SdkConfig, topic_arn: &str, name: &str) -> Inbox {
        Self::subscribe_filtered(sdk, topic_arn, name, None).await
    }

    /// Like [`Inbox::subscribe`], with an SNS subscription filter policy on the message
    /// attributes (e.g. `{"event": ["rolled_back"]}`, how on-call keeps only rollbacks).
    ///
    /// # Panics
    /// If moto refuses any of the calls (including a malformed filter policy).
    pub async fn subscribe_filtered(
        sdk: &aws_config::SdkConfig,
        topic_arn: &str,
        name: &str,
        filter_policy: Option<&str>,
    ) -> Inbox {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create SQS queue {name}: {e:?}"))
            .queue_url()
            .unwrap_or_else(|| panic!("SQS queue {name} has no URL"))
            .to_string();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get SQS queue ARN of {name}: {e:?}"));
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("SQS queue {name} has no ARN"))
            .clone();
        let mut subscribe = sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn);
        if let Some(policy) = filter_policy {
            subscribe = subscribe.attributes("FilterPolicy", policy);
        }
        subscribe
            .send()
            .await
            .unwrap_or_else(|e| panic!("subscribe {name} to {topic_arn}: {e:?}"));
        Inbox { sqs, queue_url }
    }

    /// Every message in the queue now, oldest first, deleted from the queue. moto delivers SNS
    /// to SQS within `Publish`, so nothing published before this call is missed.
    ///
    /// # Panics
    /// If moto refuses a call or a message is not an SNS envelope.
    pub async fn drain(&self) -> Vec<Delivered> {
        let mut out = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap_or_else(|e| panic!("receive from SQS: {e:?}"));
            let messages = received.messages();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let body = m.body().unwrap_or_default();
                let envelope: serde_json::Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("not an SNS envelope ({e}): {body}"));
                let text = |key: &str| envelope[key].as_str().unwrap_or_default().to_string();
                let attributes = envelope["MessageAttributes"]
                    .as_object()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v["Value"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Delivered {
                    subject: text("Subject"),
                    message: text("Message"),
                    attributes,
                });
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("delete SQS message: {e:?}"));
                }
            }
        }
    }
}

/// SplitMix64: small and seedable, for the fault proxy's and the campaign's random choices.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Lambda set-up shared by the agent's end-to-end tests and the campaign: functions with a
/// `live` and a `candidate` alias, and releases the way `sam deploy` makes them.
pub mod lambda_lab {
    use crate::empty_zip;
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{FunctionCode, Runtime};

    /// Creates `function` (assuming `role`) with version 1, and points `live` and `candidate`
    /// at it (nothing new to roll out).
    ///
    /// # Panics
    /// If moto refuses a call.
    pub async fn create_function(lambda: &aws_sdk_lambda::Client, role: &str, function: &str) {
        lambda
            .create_function()
            .function_name(function)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(empty_zip(&format!("{function} build 1"))))
                    .build(),
            )
            .send()
            .await
            .expect("create function");
        assert_eq!(publish(lambda, function).await, 1, "the first version is 1");
        for alias in ["live", "candidate"] {
            lambda
                .create_alias()
                .function_name(function)
                .name(alias)
                .function_version("1")
                .send()
                .await
                .unwrap_or_else(|e| panic!("create alias {alias}: {e:?}"));
        }
    }

    /// Publishes a version of `function`; returns its number.
    ///
    /// # Panics
    /// If moto refuses the call or answers a non-numeric version.
    pub async fn publish(lambda: &aws_sdk_lambda::Client, function: &str) -> u64 {
        lambda
            .publish_version()
            .function_name(function)
            .send()
            .await
            .expect("publish version")
            .version()
            .expect("version number")
            .parse()
            .expect("numeric version")
    }

    /// The policy of the agent's end-to-end tests and the campaign: small steps and evidence
    /// floor, `Average` latency (moto computes no percentiles) with no warm-up (the tests'
    /// minutes have no cold starts, and every minute is judged), AWS/Lambda metrics. `extra`
    /// adds keys (e.g. `on_no_data`).
    #[must_use]
    pub fn policy_yaml(function: &str, steps: &str, topic: &str, extra: &str) -> String {
        format!(
            "function: {function}
steps: {steps}
step_interval: 2m
min_requests: 10
errors:
  max_rate: 0.05
  max_increase: 0.05
latency:
  stat: Average
  max_ms: 1000
  max_ratio: 2
  warmup: 0s
confidence: 0.99
metrics:
  source: lambda
notify:
  topic_arn: {topic}
{extra}"
        )
    }

    /// What `sam deploy` does: new code, a new version, `candidate` pointed at it.
    ///
    /// # Panics
    /// If moto refuses a call.
    pub async fn release(lambda: &aws_sdk_lambda::Client, function: &str) -> u64 {
        lambda
            .update_function_code()
            .function_name(function)
            .zip_file(Blob::new(empty_zip(&uuid::Uuid::new_v4().to_string())))
            .send()
            .await
            .expect("update function code");
        let version = publish(lambda, function).await;
        lambda
            .update_alias()
            .function_name(function)
            .name("candidate")
            .function_version(version.to_string())
            .send()
            .await
            .expect("point candidate at the new version");
        version
    }
}
