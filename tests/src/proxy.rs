//! A loopback HTTP/1.1 proxy in front of `moto_server` that makes it behave more like AWS under
//! stress: it enforces what moto does not check, and injects faults.
//!
//! - **Lambda `RevisionId`.** moto 5.2.5 gives an alias a random `RevisionId` when it is created,
//!   never changes it, and ignores the `RevisionId` of `UpdateAlias`. The proxy keeps its own
//!   revision per alias: a generation that moves on every write through the proxy and whenever the
//!   alias (version, routing, description) is seen changed by someone who went to moto directly.
//!   `GetAlias`, `ListAliases`, `UpdateAlias` and `CreateAlias` answers carry the proxy's
//!   revision. An
//!   `UpdateAlias` whose `RevisionId` is not the current one is answered `412
//!   PreconditionFailedException` without reaching moto; the check and the write are atomic with
//!   respect to every other alias call through the proxy (a per-alias lock is held from reading
//!   the current alias upstream to the end of the forwarded write).
//! - **SNS `Publish` subjects** are checked against SNS's rules ([`SubjectRule`]); a bad subject is
//!   answered `400 InvalidParameter`. So are messages SNS refuses ([`check_message`]): over
//!   256 KB, or a `MessageStructure` `json` whose message is not a JSON object of strings with a
//!   `default` entry. Every accepted `Publish` is kept ([`Proxy::published`]), so a test can read
//!   what a protocol moto cannot deliver to (`https`, e.g. AWS Chatbot) would have received.
//! - **Faults**, per service ([`Service`]) with a probability each ([`FaultRates`]): HTTP 500, 503,
//!   throttling, a connection reset before forwarding, a reset after forwarding (moto applied the
//!   request, the client never hears), a truncated response body, and a delay of the answer. Drawn
//!   from a seeded generator; [`Proxy::set_faults`] turns them off and on. An error is answered
//!   in the request's protocol: Lambda's REST-JSON, SNS's Query XML, CloudWatch's RPC v2 CBOR
//!   (which the [`crate::gateway`] behind the proxy translates for moto).
//! - **A log of every `UpdateAlias` that moto applied** ([`AliasWrite`]), in the order applied per
//!   alias, so a checker can replay an alias's history.
//!
//! Everything else is forwarded unchanged, apart from the hop-by-hop headers (`Connection`,
//! `Transfer-Encoding`, ...): the proxy opens one upstream connection per request and re-frames
//! bodies with `Content-Length`.
//!
//! ```ignore
//! let moto = lambda_canary_tests::Moto::start();
//! let proxy = Proxy::start(ProxyConfig::new(&moto.endpoint, 7)).await?;
//! // clients use proxy.endpoint() as their endpoint URL
//! ```

use crate::SplitMix64;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body the proxy accepts.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long one exchange with moto may take before the proxy answers 502.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// SNS's `Publish` subject limit: subjects must be shorter than this many characters.
pub const SNS_SUBJECT_LIMIT: usize = 100;
/// SNS's message size limit (bytes of the message; attributes count too, not checked here).
pub const SNS_MESSAGE_LIMIT: usize = 262_144;

/// Which AWS service a request is for (faults are configured per service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// AWS Lambda (REST-JSON, paths under `/2015-03-31/`).
    Lambda,
    /// Amazon CloudWatch (`monitoring`: RPC v2 CBOR from current SDKs, the Query protocol from
    /// older ones).
    Monitoring,
    /// Amazon SNS (Query protocol).
    Sns,
    /// Anything else (SQS, IAM, ...): forwarded, never faulted.
    Other,
}

impl Service {
    /// The name used in tables (`lambda`, `monitoring`, `sns`, `other`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Lambda => "lambda",
            Self::Monitoring => "monitoring",
            Self::Sns => "sns",
            Self::Other => "other",
        }
    }
}

/// A fault the proxy can inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// HTTP 500 (Lambda `ServiceException`, SNS `InternalError`, CloudWatch
    /// `InternalServiceFault`); not forwarded.
    Http500,
    /// HTTP 503 (`ServiceUnavailable`); not forwarded.
    Http503,
    /// Throttling: Lambda 429 `TooManyRequestsException`, SNS and CloudWatch 400 `Throttling`;
    /// not forwarded.
    Throttle,
    /// The connection is reset after the request was read; not forwarded.
    ResetBefore,
    /// The request is forwarded (moto applies it), then the connection is reset: the client never
    /// gets the answer.
    ResetAfter,
    /// The request is forwarded; the answer's headers announce the full body but only part of it
    /// is sent before the connection closes.
    Truncate,
    /// The request is forwarded at once; its answer is held back for a random time in
    /// [`ProxyConfig::delay`].
    Delay,
}

impl FaultKind {
    /// Every kind, in the order they are drawn and listed.
    pub const ALL: [FaultKind; 7] = [
        Self::Http500,
        Self::Http503,
        Self::Throttle,
        Self::ResetBefore,
        Self::ResetAfter,
        Self::Truncate,
        Self::Delay,
    ];

    /// Short name for tables (`500`, `503`, `throttle`, `reset-before`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Http500 => "500",
            Self::Http503 => "503",
            Self::Throttle => "throttle",
            Self::ResetBefore => "reset-before",
            Self::ResetAfter => "reset-after",
            Self::Truncate => "truncated",
            Self::Delay => "delay",
        }
    }

    /// Whether moto sees the request when this fault is drawn.
    #[must_use]
    pub fn forwards(self) -> bool {
        matches!(self, Self::ResetAfter | Self::Truncate | Self::Delay)
    }
}

/// The probability of each fault on one request of a service. At most one fault is drawn per
/// request, so the probabilities should add up to at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// [`FaultKind::Http500`].
    pub http_500: f64,
    /// [`FaultKind::Http503`].
    pub http_503: f64,
    /// [`FaultKind::Throttle`].
    pub throttle: f64,
    /// [`FaultKind::ResetBefore`].
    pub reset_before: f64,
    /// [`FaultKind::ResetAfter`].
    pub reset_after: f64,
    /// [`FaultKind::Truncate`].
    pub truncate: f64,
    /// [`FaultKind::Delay`].
    pub delay: f64,
}

impl FaultRates {
    /// No faults.
    pub const NONE: FaultRates = FaultRates {
        http_500: 0.0,
        http_503: 0.0,
        throttle: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        truncate: 0.0,
        delay: 0.0,
    };

    /// A mix where about one request in six goes wrong: 2% each of 500, 503, reset before and
    /// truncation, 3% each of throttling, reset after and delay.
    pub const TYPICAL: FaultRates = FaultRates {
        http_500: 0.02,
        http_503: 0.02,
        throttle: 0.03,
        reset_before: 0.02,
        reset_after: 0.03,
        truncate: 0.02,
        delay: 0.03,
    };

    /// Only `kind`, with probability `p`.
    #[must_use]
    pub fn only(kind: FaultKind, p: f64) -> FaultRates {
        let mut rates = FaultRates::NONE;
        *rates.slot(kind) = p;
        rates
    }

    /// Every probability multiplied by `factor` (the sum capped at 1 by scaling down).
    #[must_use]
    pub fn scaled(self, factor: f64) -> FaultRates {
        let mut out = self;
        let total = self.total() * factor.max(0.0);
        let k = if total > 1.0 {
            factor.max(0.0) / total
        } else {
            factor.max(0.0)
        };
        for kind in FaultKind::ALL {
            *out.slot(kind) *= k;
        }
        out
    }

    /// The probability of `kind`.
    #[must_use]
    pub fn get(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::Http500 => self.http_500,
            FaultKind::Http503 => self.http_503,
            FaultKind::Throttle => self.throttle,
            FaultKind::ResetBefore => self.reset_before,
            FaultKind::ResetAfter => self.reset_after,
            FaultKind::Truncate => self.truncate,
            FaultKind::Delay => self.delay,
        }
    }

    fn slot(&mut self, kind: FaultKind) -> &mut f64 {
        match kind {
            FaultKind::Http500 => &mut self.http_500,
            FaultKind::Http503 => &mut self.http_503,
            FaultKind::Throttle => &mut self.throttle,
            FaultKind::ResetBefore => &mut self.reset_before,
            FaultKind::ResetAfter => &mut self.reset_after,
            FaultKind::Truncate => &mut self.truncate,
            FaultKind::Delay => &mut self.delay,
        }
    }

    /// The probability that a request gets any fault.
    #[must_use]
    pub fn total(&self) -> f64 {
        FaultKind::ALL.iter().map(|&k| self.get(k).max(0.0)).sum()
    }

    /// The fault a uniform draw `u` in [0, 1) selects, if any.
    fn pick(&self, u: f64) -> Option<FaultKind> {
        let mut acc = 0.0;
        for kind in FaultKind::ALL {
            acc += self.get(kind).max(0.0);
            if u < acc {
                return Some(kind);
            }
        }
        None
    }
}

/// Which subjects SNS `Publish` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectRule {
    /// ASCII printable text (`' '..='~'`) that begins with a letter, number or punctuation mark and
    /// is shorter than 100 characters (SNS's long-standing error text for a bad subject).
    #[default]
    Ascii,
    /// UTF-8 text with no line breaks or control characters, shorter than 100 characters (the
    /// wording of the current `Publish` API reference).
    Utf8,
}

/// Checks an SNS `Publish` message and its `MessageStructure`; `Ok` holds the per-protocol
/// messages of a `json` structure (empty for a plain message), `Err` says what SNS would refuse.
///
/// # Errors
/// The message is over [`SNS_MESSAGE_LIMIT`] bytes, the structure is not `json`, or a `json`
/// message is not a JSON object whose values are strings with a `default` entry.
pub fn check_message(
    message: &str,
    structure: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    if message.len() > SNS_MESSAGE_LIMIT {
        return Err(format!(
            "the message is {} bytes; SNS takes at most {SNS_MESSAGE_LIMIT}",
            message.len()
        ));
    }
    match structure {
        None => return Ok(BTreeMap::new()),
        Some("json") => {}
        Some(other) => return Err(format!("MessageStructure {other:?} is not \"json\"")),
    }
    let value: serde_json::Value = serde_json::from_str(message)
        .map_err(|e| format!("Message Structure - JSON message body failed to parse: {e}"))?;
    let object = value
        .as_object()
        .ok_or("Message Structure - the JSON message body is not an object")?;
    let mut out = BTreeMap::new();
    for (protocol, text) in object {
        let text = text.as_str().ok_or(format!(
            "Message Structure - the {protocol:?} entry is not a string"
        ))?;
        out.insert(protocol.clone(), text.to_string());
    }
    if !out.contains_key("default") {
        return Err("Message Structure - No default entry in JSON message body".to_string());
    }
    Ok(out)
}

/// Checks an SNS `Publish` subject; `Err` says what is wrong.
///
/// # Errors
/// The subject breaks `rule` (empty, too long, a control character or line break, a non-ASCII
/// character under [`SubjectRule::Ascii`], or a first character that is not a letter, number or
/// punctuation mark).
pub fn check_subject(subject: &str, rule: SubjectRule) -> Result<(), String> {
    let chars = subject.chars().count();
    if chars == 0 {
        return Err("the subject is empty".to_string());
    }
    if chars >= SNS_SUBJECT_LIMIT {
        return Err(format!(
            "the subject is {chars} characters long; it must be shorter than {SNS_SUBJECT_LIMIT}"
        ));
    }
    if let Some(c) = subject.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the subject contains a line break or control character ({:?})",
            c
        ));
    }
    if rule == SubjectRule::Ascii {
        if let Some(c) = subject.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "the subject contains {c:?}, which is not printable ASCII"
            ));
        }
        if subject
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii_alphanumeric() && !c.is_ascii_punctuation())
        {
            return Err(
                "the subject must begin with a letter, number or punctuation mark".to_string(),
            );
        }
    }
    Ok(())
}

/// How the proxy behaves.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// moto's base URL, e.g. `http://127.0.0.1:41234`.
    pub upstream: String,
    /// Seed of the fault generator. Requests draw in the order they arrive, so a concurrent run
    /// is reproducible in its rates, not request by request.
    pub seed: u64,
    /// Fault probabilities of Lambda requests.
    pub lambda: FaultRates,
    /// Fault probabilities of CloudWatch requests.
    pub monitoring: FaultRates,
    /// Fault probabilities of SNS requests.
    pub sns: FaultRates,
    /// Shortest and longest [`FaultKind::Delay`].
    pub delay: (Duration, Duration),
    /// SNS subject rule.
    pub subject_rule: SubjectRule,
    /// Whether faults are on when the proxy starts.
    pub faults_on: bool,
}

impl ProxyConfig {
    /// A proxy in front of `upstream` with no faults configured, delays of 2–10 s when they are,
    /// and the ASCII subject rule.
    #[must_use]
    pub fn new(upstream: &str, seed: u64) -> Self {
        Self {
            upstream: upstream.to_string(),
            seed,
            lambda: FaultRates::NONE,
            monitoring: FaultRates::NONE,
            sns: FaultRates::NONE,
            delay: (Duration::from_secs(2), Duration::from_secs(10)),
            subject_rule: SubjectRule::Ascii,
            faults_on: true,
        }
    }

    /// The same rates for Lambda, CloudWatch and SNS.
    #[must_use]
    pub fn with_faults(mut self, rates: FaultRates) -> Self {
        self.lambda = rates;
        self.monitoring = rates;
        self.sns = rates;
        self
    }

    fn rates(&self, service: Service) -> FaultRates {
        match service {
            Service::Lambda => self.lambda,
            Service::Monitoring => self.monitoring,
            Service::Sns => self.sns,
            Service::Other => FaultRates::NONE,
        }
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests read from clients.
    pub requests: u64,
    /// Requests per service.
    pub by_service: BTreeMap<Service, u64>,
    /// `UpdateAlias` requests that reached the revision check (not stopped by a fault first).
    pub update_alias: u64,
    /// `UpdateAlias` requests moto applied.
    pub alias_writes: u64,
    /// `UpdateAlias` requests answered 412 (stale `RevisionId`).
    pub precondition_failed: u64,
    /// `Publish` requests answered 400 for their subject.
    pub subject_rejected: u64,
    /// `Publish` requests answered 400 for their message (size or `MessageStructure`).
    pub message_rejected: u64,
    /// Faults injected, per service and kind.
    pub faults: BTreeMap<(Service, FaultKind), u64>,
    /// Exchanges with moto that failed (answered 502).
    pub upstream_errors: u64,
    /// `UpdateAlias` requests answered 403 while writes were denied.
    pub denied: u64,
}

impl Stats {
    /// Faults of `kind`, over every service.
    #[must_use]
    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// Faults of every kind and service.
    #[must_use]
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// One `UpdateAlias` moto applied through the proxy, as moto answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasWrite {
    /// Position in the proxy's write log (0, 1, 2, ...); per alias, the order moto applied them.
    pub seq: u64,
    /// Function name (as in the request path, URL-decoded).
    pub function: String,
    /// Alias name.
    pub alias: String,
    /// The caller's application name (`app/NAME` in the SDK's user agent), if it set one.
    pub caller: Option<String>,
    /// The alias's `FunctionVersion` after the write.
    pub function_version: String,
    /// `RoutingConfig.AdditionalVersionWeights` after the write (fractions).
    pub weights: BTreeMap<String, f64>,
    /// The alias description after the write.
    pub description: String,
    /// The proxy's `RevisionId` after the write.
    pub revision: String,
    /// The fault applied to the answer of this write, if any (e.g. the client never heard).
    pub answer_fault: Option<FaultKind>,
}

/// A `Publish` the proxy accepted and forwarded to moto (whether or not the answer then reached
/// the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The subject, if any.
    pub subject: Option<String>,
    /// The message as sent.
    pub message: String,
    /// Per-protocol messages of a `MessageStructure` `json` publish (`default`, `https`, ...);
    /// empty for a plain message.
    pub by_protocol: BTreeMap<String, String>,
}

impl Published {
    /// What a subscriber of `protocol` receives: its own entry, else `default`, else the message.
    #[must_use]
    pub fn for_protocol(&self, protocol: &str) -> &str {
        self.by_protocol
            .get(protocol)
            .or_else(|| self.by_protocol.get("default"))
            .map_or(self.message.as_str(), String::as_str)
    }
}

/// A subject SNS would have refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedSubject {
    /// The subject as sent.
    pub subject: String,
    /// What is wrong with it.
    pub why: String,
}

/// A running proxy on 127.0.0.1; stopped (with its connections) on drop.
#[derive(Debug)]
pub struct Proxy {
    endpoint: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Binds a free port on 127.0.0.1 and starts serving.
    ///
    /// # Errors
    /// The port cannot be bound, or `config.upstream` is not an `http://host:port` URL.
    pub async fn start(config: ProxyConfig) -> std::io::Result<Proxy> {
        let upstream = config
            .upstream
            .strip_prefix("http://")
            .map(|s| s.trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "upstream {:?} is not an http://host:port URL",
                        config.upstream
                    ),
                )
            })?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream,
            faults_on: AtomicBool::new(config.faults_on),
            deny_alias_writes: AtomicBool::new(false),
            rng: Mutex::new(SplitMix64(config.seed)),
            nonce: SplitMix64(config.seed ^ 0x05ee_d0fa_11a5).next(),
            config,
            stats: Mutex::new(Stats::default()),
            aliases: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            rejected_subjects: Mutex::new(Vec::new()),
            published: Mutex::new(Vec::new()),
        });
        let accept = Arc::clone(&shared);
        let task = tokio::spawn(accept_each(listener, move |stream| {
            serve_connection(Arc::clone(&accept), stream)
        }));
        Ok(Proxy {
            endpoint,
            shared,
            task,
        })
    }

    /// The proxy's base URL, e.g. `http://127.0.0.1:40123`: the endpoint URL for SDK clients.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Turns fault injection on or off (e.g. off for the settle phase of a round). The
    /// `RevisionId` and subject rules always apply.
    pub fn set_faults(&self, on: bool) {
        self.shared.faults_on.store(on, Ordering::SeqCst);
    }

    /// Answers every `UpdateAlias` 403 `AccessDeniedException` (as Lambda does when the caller's
    /// role lacks `lambda:UpdateAlias`) while `on`, forwarding nothing.
    pub fn set_alias_writes_denied(&self, on: bool) {
        self.shared.deny_alias_writes.store(on, Ordering::SeqCst);
    }

    /// Whether faults are being injected.
    #[must_use]
    pub fn faults_on(&self) -> bool {
        self.shared.faults_on.load(Ordering::SeqCst)
    }

    /// A copy of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Every `UpdateAlias` moto applied through the proxy, in log order.
    #[must_use]
    pub fn alias_writes(&self) -> Vec<AliasWrite> {
        lock(&self.shared.log).clone()
    }

    /// The `UpdateAlias` writes from position `from` of the log on.
    #[must_use]
    pub fn alias_writes_since(&self, from: usize) -> Vec<AliasWrite> {
        lock(&self.shared.log)
            .get(from..)
            .map(<[AliasWrite]>::to_vec)
            .unwrap_or_default()
    }

    /// Every `Publish` accepted so far, in order.
    #[must_use]
    pub fn published(&self) -> Vec<Published> {
        lock(&self.shared.published).clone()
    }

    /// Every `Publish` subject refused so far.
    #[must_use]
    pub fn rejected_subjects(&self) -> Vec<RejectedSubject> {
        lock(&self.shared.rejected_subjects).clone()
    }
}

impl Drop for Proxy {
    /// Stops accepting and drops every open connection.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Locks a std mutex; a panic elsewhere while holding it leaves plain data, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The proxy's revision bookkeeping of one alias.
#[derive(Debug, Default)]
struct AliasRevision {
    /// Moves on every write and every change seen from outside.
    generation: u64,
    /// `FunctionVersion`, `RoutingConfig` and `Description` as last seen; `None` before the first
    /// sighting and after a delete.
    fingerprint: Option<String>,
}

type AliasKey = (String, String);

#[derive(Debug)]
struct Shared {
    config: ProxyConfig,
    upstream: String,
    faults_on: AtomicBool,
    deny_alias_writes: AtomicBool,
    rng: Mutex<SplitMix64>,
    nonce: u64,
    stats: Mutex<Stats>,
    aliases: Mutex<HashMap<AliasKey, Arc<tokio::sync::Mutex<AliasRevision>>>>,
    log: Mutex<Vec<AliasWrite>>,
    rejected_subjects: Mutex<Vec<RejectedSubject>>,
    published: Mutex<Vec<Published>>,
}

/// An HTTP/1.1 request as read from a client ([`read_request`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The protocol version, e.g. `HTTP/1.1`.
    pub version: String,
    /// The headers, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// An HTTP response to send to a client.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers that describe one connection, not the message.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

impl Request {
    /// The first header called `name` (any case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The path: the target without its query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether the request speaks the Smithy RPC v2 CBOR protocol (current CloudWatch clients).
    pub(crate) fn is_rpc_v2_cbor(&self) -> bool {
        self.header("smithy-protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("rpc-v2-cbor"))
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || self.version == "HTTP/1.0"
    }

    /// The request as sent to moto: same request line, headers and body; one connection per
    /// request (`Connection: close`) and the body framed by `Content-Length`.
    fn to_upstream_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            if !hop_by_hop(name) {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        if !self.body.is_empty() || self.header("content-length").is_some() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The application name the SDK put in its user agent (`app/NAME`).
    fn caller(&self) -> Option<String> {
        ["x-amz-user-agent", "user-agent"].iter().find_map(|h| {
            self.header(h)?
                .split_whitespace()
                .find_map(|token| token.strip_prefix("app/"))
                .map(str::to_string)
        })
    }
}

impl Response {
    pub(crate) fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        Self {
            status,
            reason: reason_phrase(status).to_string(),
            headers,
            body,
        }
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Status line and headers, with `Content-Length` announcing `declared` bytes.
    pub(crate) fn head_bytes(&self, declared: usize, close: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        for (name, value) in &self.headers {
            if !hop_by_hop(name) {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(format!("Content-Length: {declared}\r\n").as_bytes());
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn set_json_body(&mut self, value: &serde_json::Value) {
        self.body = value.to_string().into_bytes();
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn bad_data(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads more bytes into `buf`; `Ok(false)` at end of stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one message head (up to and including the blank line) from `buf` + `stream`.
/// `Ok(None)` when the stream ends cleanly before a new message starts.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..pos + 4).collect();
            return String::from_utf8(head)
                .map(Some)
                .map_err(|_| bad_data("message head is not UTF-8"));
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_data("message head too large"));
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Status or request line, then headers.
fn parse_head(head: &str) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_data(format!("malformed header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((first, headers))
}

/// How a message body is framed.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Empty,
}

fn framing(headers: &[(String, String)], is_request: bool) -> std::io::Result<Framing> {
    if header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Framing::Chunked);
    }
    match header(headers, "content-length") {
        Some(v) => {
            let n: usize = v
                .parse()
                .map_err(|_| bad_data(format!("bad Content-Length {v:?}")))?;
            if n > MAX_BODY {
                return Err(bad_data("body too large"));
            }
            Ok(Framing::Length(n))
        }
        None if is_request => Ok(Framing::Empty),
        None => Ok(Framing::UntilClose),
    }
}

async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    framing: Framing,
) -> std::io::Result<Vec<u8>> {
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            while buf.len() < n {
                if !fill(stream, buf).await? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(buf.drain(..n).collect())
        }
        Framing::UntilClose => {
            while fill(stream, buf).await? {
                if buf.len() > MAX_BODY {
                    return Err(bad_data("body too large"));
                }
            }
            Ok(std::mem::take(buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(stream, buf).await?;
                let size_text = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| bad_data(format!("bad chunk size {size_text:?}")))?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    while !read_line(stream, buf).await?.is_empty() {}
                    return Ok(body);
                }
                if body.len() + size > MAX_BODY {
                    return Err(bad_data("body too large"));
                }
                while buf.len() < size + 2 {
                    if !fill(stream, buf).await? {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
            }
        }
    }
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(pos) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..pos + 2).collect();
            return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_data("line too long"));
        }
        if !fill(stream, buf).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reads one request from `stream` (bytes already read but not used are in `buf`, and what is
/// read past this request stays there); `None` when the client closed first.
///
/// # Errors
/// A malformed or oversized request, or a failed read.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let Some(head) = read_head(stream, buf).await? else {
        return Ok(None);
    };
    let (line, headers) = parse_head(&head)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_data(format!("malformed request line {line:?}")));
    };
    let body = read_body(stream, buf, framing(&headers, true)?).await?;
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        body,
    }))
}

/// Accepts connections for ever, serving each on its own task (dropped with the caller's task).
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// [`exchange`] within [`UPSTREAM_TIMEOUT`]; `Err` says why there is no answer.
pub(crate) async fn exchange_within(upstream: &str, request: &Request) -> Result<Response, String> {
    match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange(upstream, request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("moto did not answer in time".to_string()),
    }
}

/// The `502` that `who` (the proxy, the gateway) answers when moto gave no answer.
pub(crate) fn bad_gateway(who: &str, why: &str) -> Response {
    Response::new(
        502,
        vec![("Content-Type".into(), "text/plain".into())],
        format!("{who}: {why}").into_bytes(),
    )
}

/// Sends `request` to moto on a new connection and reads the whole answer.
pub(crate) async fn exchange(upstream: &str, request: &Request) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&request.to_upstream_bytes()).await?;
    let mut buf = Vec::new();
    let head = read_head(&mut stream, &mut buf)
        .await?
        .ok_or_else(|| bad_data("moto closed the connection without answering"))?;
    let (line, headers) = parse_head(&head)?;
    let mut parts = line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_data(format!("malformed status line {line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let no_body = request.method == "HEAD" || status < 200 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else {
        read_body(&mut stream, &mut buf, framing(&headers, false)?).await?
    };
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

/// A Lambda alias operation, recognised by method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AliasOp {
    Get(AliasKey),
    List(String),
    Update(AliasKey),
    Delete(AliasKey),
    Create(String),
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` pairs.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn alias_op(request: &Request) -> Option<AliasOp> {
    let parts: Vec<&str> = request.path().split('/').collect();
    // ["", "2015-03-31", "functions", fn, "aliases", name?]
    match parts.as_slice() {
        ["", _, "functions", function, "aliases"] if request.method == "POST" => {
            Some(AliasOp::Create(percent_decode(function)))
        }
        ["", _, "functions", function, "aliases"] if request.method == "GET" => {
            Some(AliasOp::List(percent_decode(function)))
        }
        ["", _, "functions", function, "aliases", name] if !name.is_empty() => {
            let key = (percent_decode(function), percent_decode(name));
            match request.method.as_str() {
                "GET" => Some(AliasOp::Get(key)),
                "PUT" => Some(AliasOp::Update(key)),
                "DELETE" => Some(AliasOp::Delete(key)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The service named by the SigV4 credential scope (`Credential=AKID/date/region/SERVICE/...`).
fn signed_service(request: &Request) -> Option<String> {
    let auth = request.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_ascii_lowercase)
}

fn classify(request: &Request) -> Service {
    match signed_service(request).as_deref() {
        Some("lambda") => return Service::Lambda,
        Some("monitoring") => return Service::Monitoring,
        Some("sns") => return Service::Sns,
        Some(_) => return Service::Other,
        None => {}
    }
    if let Some(target) = request.header("x-amz-target") {
        return if target.starts_with("GraniteServiceVersion20100801") {
            Service::Monitoring
        } else {
            Service::Other
        };
    }
    if request
        .path()
        .starts_with("/service/GraniteServiceVersion20100801/")
    {
        return Service::Monitoring;
    }
    if request
        .path()
        .split('/')
        .nth(1)
        .is_some_and(|seg| seg.len() == 10 && seg.starts_with("20"))
    {
        return Service::Lambda;
    }
    let form = request
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let pairs = form_pairs(&request.body);
        let version = pairs
            .iter()
            .find(|(k, _)| k == "Version")
            .map(|(_, v)| v.as_str());
        return match version {
            Some("2010-03-31") => Service::Sns,
            Some("2010-08-01") => Service::Monitoring,
            _ => Service::Other,
        };
    }
    Service::Other
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lambda's REST-JSON error: `x-amzn-errortype` names the exception, the body says who erred.
fn lambda_error(status: u16, code: &str, kind: &str, message: &str) -> Response {
    Response::new(
        status,
        vec![
            ("Content-Type".into(), "application/json".into()),
            ("x-amzn-errortype".into(), code.into()),
            ("x-amzn-RequestId".into(), request_id()),
        ],
        serde_json::json!({"Type": kind, "message": message})
            .to_string()
            .into_bytes(),
    )
}

/// The Query protocol's XML error of SNS (or of CloudWatch, for a client that speaks Query).
fn query_error(service: Service, status: u16, kind: &str, code: &str, message: &str) -> Response {
    let namespace = match service {
        Service::Monitoring => "http://monitoring.amazonaws.com/doc/2010-08-01/",
        _ => "http://sns.amazonaws.com/doc/2010-03-31/",
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        request_id()
    );
    Response::new(
        status,
        vec![("Content-Type".into(), "text/xml".into())],
        body.into_bytes(),
    )
}

/// The answer of a fault that stops a request before moto sees it, in the request's protocol:
/// Lambda's REST-JSON, CloudWatch's RPC v2 CBOR (`cbor`: what current SDKs send) or the Query
/// protocol's XML.
fn fault_response(service: Service, kind: FaultKind, cbor: bool) -> Option<Response> {
    if service == Service::Lambda {
        return Some(match kind {
            FaultKind::Http500 => lambda_error(
                500,
                "ServiceException",
                "Service",
                "injected internal error",
            ),
            FaultKind::Http503 => lambda_error(
                503,
                "ServiceException",
                "Service",
                "injected: service unavailable",
            ),
            FaultKind::Throttle => {
                let mut r = lambda_error(429, "TooManyRequestsException", "User", "Rate exceeded");
                r.set_json_body(&serde_json::json!({
                    "Type": "User",
                    "message": "Rate exceeded",
                    "Reason": "CallerRateLimitExceeded"
                }));
                r
            }
            _ => return None,
        });
    }
    let (status, kind, code, message) = match kind {
        FaultKind::Http500 if service == Service::Monitoring => (
            500,
            "Receiver",
            "InternalServiceFault",
            "injected internal error",
        ),
        FaultKind::Http500 => (500, "Receiver", "InternalError", "injected internal error"),
        FaultKind::Http503 => (
            503,
            "Receiver",
            "ServiceUnavailable",
            "injected: service unavailable",
        ),
        FaultKind::Throttle => (400, "Sender", "Throttling", "Rate exceeded"),
        _ => return None,
    };
    Some(if cbor {
        let mut r = crate::gateway::cbor_error(status, code, message);
        r.headers
            .push(("x-amzn-query-error".into(), format!("{code};{kind}")));
        r
    } else {
        query_error(service, status, kind, code, message)
    })
}

/// What the alias looks like, for noticing changes made around the proxy.
fn fingerprint(alias: &serde_json::Value) -> String {
    serde_json::json!([
        alias["FunctionVersion"],
        alias["RoutingConfig"],
        alias["Description"]
    ])
    .to_string()
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    fn draw(&self, service: Service) -> Option<FaultKind> {
        if !self.faults_on.load(Ordering::SeqCst) {
            return None;
        }
        let rates = self.config.rates(service);
        if rates.total() <= 0.0 {
            return None;
        }
        let u = lock(&self.rng).unit();
        rates.pick(u)
    }

    fn delay(&self) -> Duration {
        let (lo, hi) = self.config.delay;
        let u = lock(&self.rng).unit();
        lo + hi.saturating_sub(lo).mul_f64(u)
    }

    fn alias_lock(&self, key: &AliasKey) -> Arc<tokio::sync::Mutex<AliasRevision>> {
        Arc::clone(lock(&self.aliases).entry(key.clone()).or_default())
    }

    fn revision(&self, key: &AliasKey, generation: u64) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let h = SplitMix64(self.nonce ^ hasher.finish()).next();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            (h >> 4) & 0xfff,
            h & 0xfff,
            generation & 0xffff_ffff_ffff
        )
    }

    async fn forward(&self, request: &Request) -> Response {
        exchange_within(&self.upstream, request)
            .await
            .unwrap_or_else(|why| {
                self.count(|s| s.upstream_errors += 1);
                bad_gateway("proxy", &why)
            })
    }

    /// Applies the rules and forwards; `answer_fault` is what will happen to the answer.
    async fn process(
        &self,
        service: Service,
        request: &Request,
        answer_fault: Option<FaultKind>,
    ) -> Response {
        if service == Service::Lambda {
            if let Some(op) = alias_op(request) {
                return self.alias_call(op, request, answer_fault).await;
            }
        }
        if service == Service::Sns {
            if let Some(rejected) = self.check_publish(request) {
                return rejected;
            }
        }
        self.forward(request).await
    }

    fn check_publish(&self, request: &Request) -> Option<Response> {
        let pairs = form_pairs(&request.body);
        if !pairs.iter().any(|(k, v)| k == "Action" && v == "Publish") {
            return None;
        }
        let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let subject = field("Subject");
        let message = field("Message").map_or("", String::as_str);
        let structure = field("MessageStructure").map(String::as_str);
        let by_protocol = match check_message(message, structure) {
            Ok(by_protocol) => by_protocol,
            Err(why) => {
                self.count(|s| s.message_rejected += 1);
                return Some(query_error(
                    Service::Sns,
                    400,
                    "Sender",
                    "InvalidParameter",
                    &format!("Invalid parameter: {why}"),
                ));
            }
        };
        let refused =
            subject.and_then(|s| Some((s, check_subject(s, self.config.subject_rule).err()?)));
        let Some((subject, why)) = refused else {
            lock(&self.published).push(Published {
                subject: subject.cloned(),
                message: message.to_string(),
                by_protocol,
            });
            return None;
        };
        self.count(|s| s.subject_rejected += 1);
        lock(&self.rejected_subjects).push(RejectedSubject {
            subject: subject.clone(),
            why,
        });
        Some(query_error(
            Service::Sns,
            400,
            "Sender",
            "InvalidParameter",
            "Invalid parameter: Subject",
        ))
    }

    async fn alias_call(
        &self,
        op: AliasOp,
        request: &Request,
        answer_fault: Option<FaultKind>,
    ) -> Response {
        match op {
            AliasOp::Get(key) => {
                let entry = self.alias_lock(&key);
                let mut rev = entry.lock().await;
                let mut response = self.forward(request).await;
                self.observe(&key, &mut rev, &mut response, false);
                response
            }
            AliasOp::List(function) => self.list_aliases(&function, request).await,
            AliasOp::Create(function) => {
                let mut response = self.forward(request).await;
                let name = serde_json::from_slice::<serde_json::Value>(&response.body)
                    .ok()
                    .and_then(|v| v["Name"].as_str().map(str::to_string));
                if let (true, Some(name)) = (response.is_success(), name) {
                    let key = (function, name);
                    let entry = self.alias_lock(&key);
                    let mut rev = entry.lock().await;
                    self.observe(&key, &mut rev, &mut response, true);
                }
                response
            }
            AliasOp::Delete(key) => {
                let entry = self.alias_lock(&key);
                let mut rev = entry.lock().await;
                let response = self.forward(request).await;
                if response.is_success() {
                    rev.generation += 1;
                    rev.fingerprint = None;
                }
                response
            }
            AliasOp::Update(key) if self.deny_alias_writes.load(Ordering::SeqCst) => {
                self.count(|s| s.denied += 1);
                lambda_error(
                    403,
                    "AccessDeniedException",
                    "User",
                    &format!(
                        "User: arn:aws:sts::123456789012:assumed-role/canary-agent/canary is not authorized to perform: lambda:UpdateAlias on resource: arn:aws:lambda:us-east-1:123456789012:function:{}:{}",
                        key.0, key.1
                    ),
                )
            }
            AliasOp::Update(key) => self.update_alias(key, request, answer_fault).await,
        }
    }

    /// Notes what an alias answer shows (a new generation if it changed since last seen, or
    /// always for a write) and puts the proxy's revision in it.
    fn observe(
        &self,
        key: &AliasKey,
        rev: &mut AliasRevision,
        response: &mut Response,
        written: bool,
    ) -> Option<serde_json::Value> {
        if !response.is_success() {
            return None;
        }
        let mut alias: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
        self.stamp(key, rev, &mut alias, written);
        response.set_json_body(&alias);
        Some(alias)
    }

    /// [`Self::observe`] on one alias object.
    fn stamp(
        &self,
        key: &AliasKey,
        rev: &mut AliasRevision,
        alias: &mut serde_json::Value,
        written: bool,
    ) {
        let seen = fingerprint(alias);
        if written || rev.fingerprint.as_deref() != Some(seen.as_str()) {
            rev.generation += 1;
            rev.fingerprint = Some(seen);
        }
        alias["RevisionId"] = serde_json::Value::String(self.revision(key, rev.generation));
    }

    /// `ListAliases`: every alias of the function the proxy knows is locked (in key order, so
    /// two lists never deadlock; a writer holds one lock only) while moto answers, then each
    /// listed alias gets the proxy's revision, as a `GetAlias` of it would.
    async fn list_aliases(&self, function: &str, request: &Request) -> Response {
        let mut known: Vec<AliasKey> = lock(&self.aliases)
            .keys()
            .filter(|k| k.0 == function)
            .cloned()
            .collect();
        known.sort();
        let entries: Vec<_> = known.iter().map(|k| self.alias_lock(k)).collect();
        let mut guards = Vec::with_capacity(entries.len());
        for e in &entries {
            guards.push(e.lock().await);
        }
        let mut response = self.forward(request).await;
        if !response.is_success() {
            return response;
        }
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
            return response;
        };
        if let Some(list) = body["Aliases"].as_array_mut() {
            for alias in list {
                let Some(name) = alias["Name"].as_str().map(str::to_string) else {
                    continue;
                };
                let key = (function.to_string(), name);
                match known.binary_search(&key) {
                    Ok(i) => self.stamp(&key, &mut guards[i], alias, false),
                    Err(_) => {
                        // First sighting (created around the proxy): its own lock is free.
                        let entry = self.alias_lock(&key);
                        let mut rev = entry.lock().await;
                        self.stamp(&key, &mut rev, alias, false);
                    }
                }
            }
        }
        response.set_json_body(&body);
        response
    }

    async fn update_alias(
        &self,
        key: AliasKey,
        request: &Request,
        answer_fault: Option<FaultKind>,
    ) -> Response {
        self.count(|s| s.update_alias += 1);
        let expected = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["RevisionId"].as_str().map(str::to_string))
            .filter(|r| !r.is_empty());
        let entry = self.alias_lock(&key);
        let mut rev = entry.lock().await;
        if let Some(expected) = expected {
            // The current alias, read upstream under the lock.
            let read = Request {
                method: "GET".into(),
                target: request.path().to_string(),
                version: "HTTP/1.1".into(),
                headers: request
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !n.eq_ignore_ascii_case("content-type")
                            && !n.eq_ignore_ascii_case("content-length")
                    })
                    .cloned()
                    .collect(),
                body: Vec::new(),
            };
            let mut current = self.forward(&read).await;
            if current.is_success() {
                self.observe(&key, &mut rev, &mut current, false);
                let now = self.revision(&key, rev.generation);
                if now != expected {
                    self.count(|s| s.precondition_failed += 1);
                    return lambda_error(
                        412,
                        "PreconditionFailedException",
                        "User",
                        "The Revision Id provided does not match the latest Revision Id. Call \
                         the GetFunction/GetAlias API to retrieve the latest Revision Id",
                    );
                }
            }
            // A missing alias or function: moto answers the write with its own error.
        }
        let mut response = self.forward(request).await;
        if let Some(alias) = self.observe(&key, &mut rev, &mut response, true) {
            let weights = alias["RoutingConfig"]["AdditionalVersionWeights"]
                .as_object()
                .map(|w| {
                    w.iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                        .collect()
                })
                .unwrap_or_default();
            let text = |name: &str| alias[name].as_str().unwrap_or_default().to_string();
            let mut log = lock(&self.log);
            let seq = log.len() as u64;
            log.push(AliasWrite {
                seq,
                function: key.0.clone(),
                alias: key.1.clone(),
                caller: request.caller(),
                function_version: text("FunctionVersion"),
                weights,
                description: text("Description"),
                revision: self.revision(&key, rev.generation),
                answer_fault,
            });
            drop(log);
            self.count(|s| s.alias_writes += 1);
        }
        response
    }
}

/// Serves one client connection: requests one after the other (HTTP/1.1 keep-alive).
async fn serve_connection(shared: Arc<Shared>, mut client: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut client, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let close = request.wants_close();
        let service = classify(&request);
        let fault = shared.draw(service);
        shared.count(|s| {
            s.requests += 1;
            *s.by_service.entry(service).or_default() += 1;
            if let Some(kind) = fault {
                *s.faults.entry((service, kind)).or_default() += 1;
            }
        });
        let answer_fault = fault.filter(|k| k.forwards());
        let response = match fault {
            Some(FaultKind::ResetBefore) => return reset(client),
            Some(kind) if !kind.forwards() => {
                match fault_response(service, kind, request.is_rpc_v2_cbor()) {
                    Some(r) => r,
                    None => return reset(client),
                }
            }
            _ => shared.process(service, &request, answer_fault).await,
        };
        match answer_fault {
            Some(FaultKind::ResetAfter) => return reset(client),
            Some(FaultKind::Truncate) => {
                // Announce the whole body (or more than a tiny one has) and send half of it.
                let len = response.body.len();
                let declared = if len >= 2 { len } else { len + 16 };
                let mut bytes = response.head_bytes(declared, true);
                bytes.extend_from_slice(&response.body[..len / 2]);
                let _ = client.write_all(&bytes).await;
                let _ = client.shutdown().await;
                return;
            }
            Some(FaultKind::Delay) => tokio::time::sleep(shared.delay()).await,
            _ => {}
        }
        let mut bytes = response.head_bytes(response.body.len(), close);
        bytes.extend_from_slice(&response.body);
        if client.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

/// Drops the connection with a TCP reset (linger 0) instead of an orderly close.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}
