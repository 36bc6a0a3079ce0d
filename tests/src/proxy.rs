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
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod aliases;
mod faults;
mod http;
mod sns;

use aliases::{alias_op, AliasKey, AliasRevision};
use faults::{classify, fault_response};
pub use faults::{FaultKind, FaultRates, Service};
pub(crate) use http::{accept_each, bad_gateway, exchange_within, Response};
pub use http::{read_request, Request};
pub use sns::{check_message, check_subject, SubjectRule, SNS_MESSAGE_LIMIT, SNS_SUBJECT_LIMIT};

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
    /// Fault probabilities of DynamoDB requests (the agent's ledger of pages).
    pub dynamodb: FaultRates,
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
            dynamodb: FaultRates::NONE,
            delay: (Duration::from_secs(2), Duration::from_secs(10)),
            subject_rule: SubjectRule::Ascii,
            faults_on: true,
        }
    }

    /// The same rates for Lambda, CloudWatch, SNS and DynamoDB.
    #[must_use]
    pub fn with_faults(mut self, rates: FaultRates) -> Self {
        self.lambda = rates;
        self.monitoring = rates;
        self.sns = rates;
        self.dynamodb = rates;
        self
    }

    fn rates(&self, service: Service) -> FaultRates {
        match service {
            Service::Lambda => self.lambda,
            Service::Monitoring => self.monitoring,
            Service::Sns => self.sns,
            Service::DynamoDb => self.dynamodb,
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
