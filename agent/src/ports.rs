//! The agent's three small ports: aliases, metrics, notifications.
//!
//! [`crate::aws`] implements them on the AWS SDK, [`crate::sim`] in memory. The tick only ever talks
//! to these traits.

use crate::judge::{ColdStarts, Sample};
use crate::policy::{LatencyRule, LatencyStat, MetricsSource, Policy};
use crate::rollout::{AliasState, Version};
use std::collections::HashSet;
use std::future::Future;

/// An alias state as read, with the revision a write must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The state.
    pub state: AliasState,
    /// The alias's `RevisionId` when read.
    pub revision: String,
}

/// A failure talking to a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The function or alias does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Someone else wrote the alias since it was read (RevisionId mismatch).
    #[error("the alias changed since it was read (someone else wrote it first)")]
    Conflict,
    /// The alias is in a state the agent does not manage (e.g. `$LATEST`, several routed versions).
    #[error("{0}")]
    Unsupported(String),
    /// Anything else: throttling after retries, network, credentials, a malformed answer.
    #[error("{0}")]
    Failed(String),
}

/// Reads and writes the production alias and reads the candidate alias.
pub trait Aliases {
    /// Reads `policy.alias` (stable version, routing, record, revision) and `policy.candidate_alias`.
    fn read(&self, policy: &Policy) -> impl Future<Output = Result<Snapshot, PortError>> + Send;

    /// Writes routing and record in one conditional update; returns the new revision.
    /// A revision mismatch is [`PortError::Conflict`] and changes nothing.
    fn write(
        &self,
        policy: &Policy,
        next: &AliasState,
        revision: &str,
    ) -> impl Future<Output = Result<String, PortError>> + Send;

    /// Whether `version` of the policy's function exists.
    fn version_exists(
        &self,
        policy: &Policy,
        version: Version,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// One version-pair query: everything the judge needs for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsQuery {
    /// Lambda function name.
    pub function: String,
    /// Production alias name.
    pub alias: String,
    /// Baseline version.
    pub stable: Version,
    /// Canary version.
    pub canary: Version,
    /// Where the numbers come from.
    pub source: MetricsSource,
    /// Latency statistic.
    pub stat: LatencyStat,
    /// The tail test's threshold (`latency.slow_ms`): also read the share of requests over it.
    pub slow_ms: Option<f64>,
    /// The policy's latency rule (the cold-start limit is derived from it).
    pub limits: LatencyRule,
    /// The canary's start, for what the adapter reads from before it: with no `slow_ms`, the
    /// stable version's p99 over the hour before (the tail test's threshold: both versions'
    /// share of requests slower than what the stable version's slowest 1% took); with EMF
    /// metrics or Lambda Insights, the stable version's median cold start over the day before
    /// (the cold-start test's reference).
    pub canary_start: Option<i64>,
    /// Window start (epoch seconds, inclusive).
    pub from: i64,
    /// Window end (epoch seconds, exclusive).
    pub to: i64,
}

impl MetricsQuery {
    /// The query for a policy's running canary.
    #[must_use]
    pub fn for_policy(
        policy: &Policy,
        stable: Version,
        canary: Version,
        from: i64,
        to: i64,
    ) -> Self {
        let period = policy.metrics.period_secs();
        Self {
            function: policy.function.clone(),
            alias: policy.alias.clone(),
            stable,
            canary,
            source: policy.metrics.clone(),
            stat: policy.latency.stat,
            slow_ms: policy.latency.slow_ms,
            limits: policy.latency,
            canary_start: Some(from),
            from: from.div_euclid(period) * period,
            to: to.div_euclid(period) * period + period,
        }
    }

    /// The query during a bake: the promoted version (as the canary) and the previous version
    /// (as the stable one) from [`REFERENCE_SECS`] before the canary began until `to`, so the
    /// answer holds the previous version's reference hour and the promoted version's periods.
    #[must_use]
    pub fn for_bake(
        policy: &Policy,
        previous: Version,
        version: Version,
        canary_start: i64,
        to: i64,
    ) -> Self {
        let mut q = Self::for_policy(
            policy,
            previous,
            version,
            canary_start.saturating_sub(REFERENCE_SECS),
            to,
        );
        q.canary_start = Some(canary_start);
        q
    }
}

/// How far before the canary the bake's reference reaches: the previous version's own numbers
/// over this hour are what the promoted version is compared with.
pub const REFERENCE_SECS: i64 = 3600;

/// Per-period samples of both versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Canary periods, oldest first.
    pub canary: Vec<Sample>,
    /// Baseline periods, oldest first.
    pub baseline: Vec<Sample>,
    /// The threshold the samples' slow counts are over (milliseconds), if they have any.
    pub slow_ms: Option<f64>,
    /// The canary's cold starts per period, oldest first (EMF metrics or Lambda Insights only).
    pub cold: Vec<ColdStarts>,
    /// The stable version's median cold start before the canary (milliseconds), if known.
    pub stable_cold_ms: Option<f64>,
    /// How much the stable version's latency level wandered in the hours before the canary
    /// ([`crate::judge::wander`]), if known.
    pub latency_wander: Option<f64>,
    /// The stable version's 5xx rate over the hour before the canary, if known.
    pub stable_error_rate: Option<f64>,
}

/// Reads per-version metrics, all policies of a tick in as few calls as possible.
pub trait Metrics {
    /// Answers every query (in order); a failed batch fails only its own queries.
    fn fetch(
        &self,
        queries: &[MetricsQuery],
    ) -> impl Future<Output = Vec<Result<Series, PortError>>> + Send;
}

/// A message for on-call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// SNS subject (≤ 100 characters): what happened to what.
    pub subject: String,
    /// Plain-text body a person reads on a phone.
    pub body: String,
    /// Message attributes for subscription filter policies (`event`, `function`, versions).
    pub attributes: Vec<(String, String)>,
    /// The same message as an AWS Chatbot custom notification (JSON), for chat subscribers.
    pub chat: String,
}

/// How long a ledger keeps what it was told (seconds): an owed announcement older than this is
/// not asked about and not re-sent by a process with a ledger (one whose sender failed is
/// re-sent within minutes; one this old was sent, and the ledger has forgotten it).
pub const LEDGER_RETENTION_SECS: i64 = 30 * 86_400;

/// The most ids one read of a ledger asks about (DynamoDB's `BatchGetItem` limit; the
/// simulated ledger counts its reads by it).
pub const LEDGER_BATCH_KEYS: usize = 100;

/// Publishes notifications, and may keep a ledger of the announcements it published.
///
/// Without a ledger, an announcement owed in an alias record is cleared from it by a second
/// write once SNS took it. With one, it is recorded there instead and left in the record until
/// a write the agent makes anyway drops it: a tick asks the ledger before re-sending one whose
/// sender's lease ran out.
pub trait Notifier {
    /// Publishes `message` to `topic_arn`.
    fn publish(
        &self,
        topic_arn: &str,
        message: &Notification,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Whether this notifier keeps a ledger of what it published.
    fn remembers(&self) -> bool {
        false
    }

    /// Records that the announcements `ids` (see [`crate::record::Owed::id`]) were published
    /// at `now` (epoch seconds).
    fn remember(
        &self,
        ids: &[String],
        now: i64,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        let _ = (ids, now);
        async { Err(PortError::Unsupported("no ledger".to_string())) }
    }

    /// Which of `ids` the ledger holds as published.
    fn published(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<HashSet<String>, PortError>> + Send {
        let _ = ids;
        async { Ok(HashSet::new()) }
    }
}
