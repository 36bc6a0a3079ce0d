//! The simulator's in-memory ports (aliases, metrics, notifier) over a shared [`World`], and
//! the agent wired to them.

use super::World;
use crate::policy::Policy;
use crate::ports::{
    Aliases, Metrics, MetricsQuery, Notification, Notifier, PortError, Series, Snapshot,
};
use crate::rollout::{AliasState, Version};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A shared handle on the world; the in-memory ports hold clones of it.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<World>>);

impl Shared {
    /// Wraps a world.
    #[must_use]
    pub fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    /// Locks the world (a poisoned lock still yields the data: the simulator has no invariants to lose).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index(&self, policy: &Policy) -> Result<usize, PortError> {
        self.lock()
            .functions
            .iter()
            .position(|f| f.policy.function == policy.function && f.policy.alias == policy.alias)
            .ok_or_else(|| PortError::NotFound(format!("no function {}", policy.function)))
    }
}

/// In-memory alias port.
#[derive(Debug, Clone)]
pub struct SimAliases(pub Shared);

impl Aliases for SimAliases {
    async fn read(&self, policy: &Policy) -> Result<Snapshot, PortError> {
        let i = self.0.index(policy)?;
        let mut w = self.0.lock();
        w.alias_reads += 1;
        let f = &w.functions[i];
        Ok(Snapshot {
            state: f.alias_state(),
            revision: f.revision.to_string(),
        })
    }

    async fn write(
        &self,
        policy: &Policy,
        next: &AliasState,
        revision: &str,
    ) -> Result<String, PortError> {
        let i = self.0.index(policy)?;
        let mut w = self.0.lock();
        w.alias_writes += 1;
        let now = w.now;
        let f = &mut w.functions[i];
        if f.revision.to_string() != revision {
            return Err(PortError::Conflict);
        }
        f.stable = next.stable;
        f.canary = next.canary;
        f.description = next.record.encode();
        f.revision += 1;
        let rev = f.revision.to_string();
        let (stable, canary) = (f.stable, f.canary);
        w.history.push((now, i, stable, canary));
        Ok(rev)
    }

    async fn version_exists(&self, policy: &Policy, version: Version) -> Result<bool, PortError> {
        let i = self.0.index(policy)?;
        Ok(self.0.lock().functions[i].builds.contains_key(&version))
    }
}

/// In-memory metrics port: answers only with datapoints visible at the world's `now`.
#[derive(Debug, Clone)]
pub struct SimMetrics(pub Shared);

impl Metrics for SimMetrics {
    async fn fetch(&self, queries: &[MetricsQuery]) -> Vec<Result<Series, PortError>> {
        let mut w = self.0.lock();
        w.metric_calls += 1;
        let World {
            now,
            seed,
            ref traffic,
            ref mut functions,
            ..
        } = *w;
        queries
            .iter()
            .map(|q| {
                let f = functions
                    .iter_mut()
                    .find(|f| f.policy.function == q.function && f.policy.alias == q.alias)
                    .ok_or_else(|| PortError::NotFound(format!("no function {}", q.function)))?;
                let latency_wander = q
                    .canary_start
                    .and_then(|start| f.latency_wander(traffic, seed, start));
                let pick = |v: Version| {
                    f.samples
                        .iter()
                        .filter(|(sv, s, vis)| {
                            *sv == v && *vis <= now && s.start >= q.from && s.start < q.to
                        })
                        .map(|(_, s, _)| *s)
                        .collect::<Vec<_>>()
                };
                let cold = f
                    .cold
                    .iter()
                    .filter(|(v, c, vis)| {
                        *v == q.canary && *vis <= now && c.start >= q.from && c.start < q.to
                    })
                    .map(|(_, c, _)| *c)
                    .collect();
                Ok(Series {
                    canary: pick(q.canary),
                    baseline: pick(q.stable),
                    slow_ms: f.slow_threshold(),
                    cold,
                    stable_cold_ms: f.stable_cold_ms(),
                    latency_wander,
                    stable_error_rate: f.stable_error_rate(),
                })
            })
            .collect()
    }
}

/// In-memory notifier: keeps what on-call would receive, and (with
/// [`SimNotifier::with_ledger`]) a ledger of what it published.
#[derive(Debug, Clone, Default)]
pub struct SimNotifier {
    /// Published messages, with their topic.
    pub sent: Arc<Mutex<Vec<(String, Notification)>>>,
    /// When set, every publish fails (SNS down).
    pub down: Arc<Mutex<bool>>,
    /// The ledger, when this notifier keeps one (share it to give agents the same table).
    pub ledger: Option<Arc<Mutex<SimLedger>>>,
}

/// An in-memory ledger of published announcements, counting its calls like DynamoDB's
/// (`PutItem` per id, `BatchGetItem` per 100 ids).
#[derive(Debug, Clone, Default)]
pub struct SimLedger {
    /// Ids recorded as published.
    pub ids: HashSet<String>,
    /// Items written.
    pub writes: u64,
    /// Batch reads.
    pub reads: u64,
    /// When set, every call fails (the table unavailable).
    pub down: bool,
}

impl SimNotifier {
    /// This notifier with a ledger of its own.
    #[must_use]
    pub fn with_ledger(mut self) -> Self {
        self.ledger = Some(Arc::default());
        self
    }

    fn ledger(&self) -> Result<MutexGuard<'_, SimLedger>, PortError> {
        let l = self
            .ledger
            .as_ref()
            .ok_or_else(|| PortError::Unsupported("no ledger".to_string()))?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.down {
            return Err(PortError::Failed(
                "the ledger is unavailable (simulated)".to_string(),
            ));
        }
        Ok(l)
    }

    /// Takes every message published so far.
    pub fn take(&self) -> Vec<(String, Notification)> {
        std::mem::take(
            &mut *self
                .sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Notifier for SimNotifier {
    async fn publish(&self, topic_arn: &str, message: &Notification) -> Result<(), PortError> {
        if *self
            .down
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(PortError::Failed(
                "SNS is unavailable (simulated)".to_string(),
            ));
        }
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((topic_arn.to_string(), message.clone()));
        Ok(())
    }

    fn remembers(&self) -> bool {
        self.ledger.is_some()
    }

    async fn remember(&self, ids: &[String], _now: i64) -> Result<(), PortError> {
        let mut l = self.ledger()?;
        l.writes += ids.len() as u64;
        l.ids.extend(ids.iter().cloned());
        Ok(())
    }

    async fn published(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        let mut l = self.ledger()?;
        l.reads += ids.len().div_ceil(crate::ports::LEDGER_BATCH_KEYS) as u64;
        Ok(ids.iter().filter(|i| l.ids.contains(*i)).cloned().collect())
    }
}

/// The agent wired to a simulated world.
pub type SimAgent = crate::tick::Agent<SimAliases, SimMetrics, SimNotifier>;

/// Builds an agent over `world`.
#[must_use]
pub fn agent(world: &Shared) -> SimAgent {
    crate::tick::Agent::new(
        SimAliases(world.clone()),
        SimMetrics(world.clone()),
        SimNotifier::default(),
    )
}

/// Runs a future to completion on the current thread.
///
/// The in-memory ports never wait, so the future is ready after a poll or a few; anything that
/// does wait would spin here, which is why this is only for the simulator. The future runs outside
/// tokio's cooperative budget: inside a runtime (the `canary` binary) the budget is only refilled
/// when the task yields to the scheduler, which this loop never does, so the agent's semaphores
/// would otherwise stay pending for ever after a few hundred ticks.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(tokio::task::coop::unconstrained(fut));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = std::future::Future::poll(fut.as_mut(), &mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
