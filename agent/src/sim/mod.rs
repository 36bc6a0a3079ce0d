//! The simulator: in-memory ports, a traffic model and a virtual clock.
//!
//! It drives the same [`crate::tick::Agent`] (judge and state machine) the real agent runs, and
//! models CloudWatch honestly: a period's datapoint becomes visible only `delay` seconds after the
//! period ends, and every judge sees only what is visible at its tick.

pub mod bench;
pub mod demo;
pub mod latency;
mod ports;
pub mod rng;
pub mod scenario;
pub mod traffic;

pub use ports::{
    agent, block_on, Shared, SimAgent, SimAliases, SimLedger, SimMetrics, SimNotifier,
};

use crate::judge::{ColdStarts, Sample};
use crate::policy::Policy;
use crate::rollout::{AliasState, Record, Routing, Version};
use latency::Mixture;
use std::collections::BTreeMap;
use traffic::{Build, MinuteConditions, Rng, Span, Traffic, VersionState};

/// One simulated function with its production alias.
#[derive(Debug, Clone)]
pub struct SimFunction {
    /// Its policy.
    pub policy: Policy,
    /// How each published version behaves.
    pub builds: BTreeMap<Version, Build>,
    /// The production alias's version.
    pub stable: Version,
    /// The production alias's routing.
    pub canary: Option<Routing>,
    /// The candidate alias's version.
    pub candidate: Option<Version>,
    /// The production alias's description (the agent's record).
    pub description: String,
    /// The alias revision, bumped on every write.
    pub revision: u64,
    /// Finished periods: version, sample, when it becomes visible.
    pub samples: Vec<(Version, Sample, i64)>,
    /// Cold starts of finished periods (EMF policies only): version, counts, when visible.
    pub cold: Vec<(Version, ColdStarts, i64)>,
    /// 5xx answered to users, per version.
    pub failed: BTreeMap<Version, u64>,
    /// Requests served, per version.
    pub served: BTreeMap<Version, u64>,
    /// What the traffic model remembers per version (share, warm-up, drift, owed 5xx).
    pub versions: BTreeMap<Version, VersionState>,
    partial: BTreeMap<Version, Partial>,
    period_start: i64,
    /// The reference version whose wander was measured, and the measure.
    wander: Option<(Version, Option<f64>)>,
    /// Whether the hours before a canary hold the reference version's per-minute latency
    /// (its wander); `false` for a function too new or too quiet for them, whose latency test
    /// then assumes [`crate::judge::ASSUMED_WANDER`].
    pub latency_history: bool,
}

/// One version's unfinished period.
#[derive(Debug, Clone, Default)]
struct Partial {
    requests: u64,
    errors: u64,
    /// Handler times of warm requests.
    latency: Mixture,
    /// Handler times of cold starts (the first request of a new execution environment).
    cold: Mixture,
}

impl SimFunction {
    /// A function live on version 1 (`build`, warm, serving all traffic), no candidate yet.
    #[must_use]
    pub fn new(policy: Policy, build: Build, now: i64) -> Self {
        let period = policy.metrics.period_secs();
        Self {
            policy,
            builds: BTreeMap::from([(1, build)]),
            stable: 1,
            canary: None,
            candidate: Some(1),
            description: String::new(),
            revision: 1,
            samples: Vec::new(),
            cold: Vec::new(),
            failed: BTreeMap::new(),
            served: BTreeMap::new(),
            versions: BTreeMap::from([(1, VersionState::serving(1.0))]),
            partial: BTreeMap::new(),
            period_start: now.div_euclid(period) * period,
            wander: None,
            latency_history: true,
        }
    }

    /// Publishes `build` as the next version and points the candidate alias at it (a `sam deploy`).
    pub fn deploy(&mut self, build: Build) -> Version {
        let v = self.builds.keys().max().copied().unwrap_or(0) + 1;
        self.builds.insert(v, build);
        self.candidate = Some(v);
        v
    }

    /// The state the agent's alias port reads.
    #[must_use]
    pub fn alias_state(&self) -> AliasState {
        AliasState {
            stable: self.stable,
            canary: self.canary,
            candidate: self.candidate,
            record: Record::decode(&self.description),
        }
    }

    fn period(&self) -> i64 {
        self.policy.metrics.period_secs()
    }

    /// Each version's share of the traffic under the alias's routing now.
    fn shares(&self) -> Vec<(Version, f64)> {
        let canary_share = self.canary.map_or(0.0, |c| c.weight / 100.0);
        let mut shares = vec![(self.stable, 1.0 - canary_share)];
        if let Some(c) = self.canary {
            shares.push((c.version, canary_share));
        }
        shares
    }

    /// Notes the routing in force from `now` (a grown share starts a warm-up).
    fn route(&mut self, now: i64) {
        let shares = self.shares();
        for (v, state) in &mut self.versions {
            if !shares.iter().any(|(sv, _)| sv == v) {
                state.share = 0.0;
            }
        }
        for (v, share) in shares {
            if let Some(build) = self.builds.get(&v) {
                self.versions.entry(v).or_default().route(share, now, build);
            }
        }
    }

    /// The next time after `now` at which this function's model changes by itself.
    fn next_change(&self, origin: i64, now: i64) -> i64 {
        let period_end = self.period_start + self.period();
        self.versions
            .iter()
            .filter_map(|(v, s)| s.next_change(self.builds.get(v)?, origin, now))
            .fold(period_end, i64::min)
    }

    /// Serves `span` with the routing noted last.
    fn serve(&mut self, rng: &mut Rng, span: &Span<'_>) {
        for (v, state) in &mut self.versions {
            let Some(build) = self.builds.get(v) else {
                continue;
            };
            if state.share <= 0.0 {
                continue;
            }
            let p = self.partial.entry(*v).or_default();
            let served = traffic::serve(rng, span, build, state, &mut p.latency, &mut p.cold);
            p.requests += served.requests;
            p.errors += served.errors;
            *self.failed.entry(*v).or_default() += served.errors;
            *self.served.entry(*v).or_default() += served.requests;
        }
    }

    /// The version that was stable before the running canary or bake: the stable version, or
    /// during a bake the version before it (the agent reads its history from before the canary).
    fn reference_version(&self) -> Version {
        crate::rollout::baking(&self.alias_state()).map_or(self.stable, |b| b.previous)
    }

    /// The tail test's threshold: the policy's `slow_ms`, or the reference build's p99 (what the
    /// agent reads from the hour before the canary: in the simulator, the build's own p99).
    #[must_use]
    pub fn slow_threshold(&self) -> Option<f64> {
        self.policy.latency.slow_ms.or_else(|| {
            self.builds
                .get(&self.reference_version())
                .map(|b| b.warm_quantile(0.99))
        })
    }

    /// The reference version's median cold start, as the agent reads it from before the canary
    /// (only where the metrics flag cold starts: the handlers' EMF records, Lambda Insights).
    #[must_use]
    pub fn stable_cold_ms(&self) -> Option<f64> {
        if !self.policy.metrics.judges_cold_starts() {
            return None;
        }
        self.builds
            .get(&self.reference_version())
            .and_then(Build::cold_median)
    }

    /// The reference version's 5xx rate over the hour before the canary, as the agent reads
    /// it: in the simulator, the build's own rate (no scenario's outage starts before its
    /// deploy).
    #[must_use]
    pub fn stable_error_rate(&self) -> Option<f64> {
        self.builds
            .get(&self.reference_version())
            .map(|b| b.error_rate)
    }

    /// How much the reference version's latency level wandered over the hours before
    /// `canary_start`, measured as the agent does ([`crate::judge::wander`]) on the per-minute
    /// series that version served then ([`traffic::history`]); drawn once per reference
    /// version from `seed` and the function's name, apart from the world's random stream.
    fn latency_wander(&mut self, traffic: &Traffic, seed: u64, canary_start: i64) -> Option<f64> {
        if !self.latency_history {
            return None;
        }
        let reference = self.reference_version();
        if let Some((v, w)) = self.wander {
            if v == reference {
                return w;
            }
        }
        let w = self.builds.get(&reference).and_then(|build| {
            // Each function its own hours: the seed, the version and the function's name.
            let name = self
                .policy
                .function
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            let mut rng = Rng::new(seed ^ reference.rotate_left(32) ^ name);
            let minutes = u32::try_from(crate::judge::WANDER_SECS / 60).unwrap_or(0);
            let points = traffic::history(
                &mut rng,
                traffic,
                build,
                self.policy.latency.stat,
                canary_start,
                minutes,
            );
            crate::judge::wander(&points, 60)
        });
        self.wander = Some((reference, w));
        w
    }

    /// Closes the period ending at `end`: its datapoints become visible at `visible`.
    fn close_period(&mut self, rng: &mut Rng, end: i64, visible: i64) {
        let stat = self.policy.latency.stat;
        let slow_ms = self.slow_threshold();
        let cold_limit = self
            .stable_cold_ms()
            .map(|m| crate::judge::cold_limit(&self.policy.latency, m));
        let emf = matches!(
            self.policy.metrics,
            crate::policy::MetricsSource::Emf { .. }
        );
        for (v, mut p) in std::mem::take(&mut self.partial) {
            if p.requests > 0 {
                // Lambda's Duration is every invocation's; the handlers' EMF `Latency` is
                // published for warm invocations only (they flag their cold starts). Lambda
                // Insights' `init_duration` has one value per cold start: the simulator gives it
                // a cold invocation's whole time (init and handler), a wider spread than init
                // alone has, so the test's job is if anything harder here than in production.
                if !emf {
                    p.latency.merge(&p.cold);
                }
                if let (Some(limit), true) = (cold_limit, p.cold.count() > 0) {
                    self.cold.push((
                        v,
                        ColdStarts {
                            start: self.period_start,
                            count: p.cold.count() as f64,
                            slow: p.cold.slower_than(rng, limit) as f64,
                        },
                        visible,
                    ));
                }
                self.samples.push((
                    v,
                    Sample {
                        start: self.period_start,
                        requests: p.requests as f64,
                        errors: p.errors as f64,
                        latency_ms: p.latency.statistic(rng, stat),
                        slow: slow_ms.map(|ms| p.latency.slower_than(rng, ms) as f64),
                    },
                    visible,
                ));
            }
        }
        self.period_start = end;
    }
}

/// The simulated world: functions, traffic, a virtual clock.
#[derive(Debug, Clone)]
pub struct World {
    /// Virtual time, epoch seconds.
    pub now: i64,
    /// Traffic model shared by all functions.
    pub traffic: Traffic,
    /// Seconds after a period ends before its datapoint is visible.
    pub delay: i64,
    /// Extra random visibility delay, uniform in `[0, delay_jitter]` seconds.
    pub delay_jitter: i64,
    /// Random source.
    pub rng: Rng,
    /// The functions.
    pub functions: Vec<SimFunction>,
    /// Every alias write: (time, function index, stable, canary).
    pub history: Vec<(i64, usize, Version, Option<Routing>)>,
    /// Metrics calls made (the agent batches one per tick).
    pub metric_calls: u64,
    /// Alias reads (one `ListAliases` each on Lambda).
    pub alias_reads: u64,
    /// Alias writes (`UpdateAlias`), conflicts included.
    pub alias_writes: u64,
    /// The current minute (its start) and its shared conditions.
    minute: Option<(i64, MinuteConditions)>,
    /// The seed the world was made with (histories before canaries are drawn from it).
    seed: u64,
}

impl World {
    /// A world at `now` with the given traffic and visibility delay.
    #[must_use]
    pub fn new(now: i64, traffic: Traffic, delay: i64, seed: u64) -> Self {
        Self {
            now,
            traffic,
            delay,
            delay_jitter: 0,
            rng: Rng::new(seed),
            functions: Vec::new(),
            history: Vec::new(),
            metric_calls: 0,
            alias_reads: 0,
            alias_writes: 0,
            minute: None,
            seed,
        }
    }

    /// Adds one function per policy, each serving a healthy v1 since `since`.
    pub fn serve_healthy(&mut self, policies: &[Policy], since: i64) {
        for p in policies {
            self.functions
                .push(SimFunction::new(p.clone(), Build::healthy(), since));
        }
    }

    /// Moves the clock to `to`, serving traffic with each alias's routing as it is now.
    ///
    /// Time moves in spans that end at the next period end, minute, scheduled event, warm-up end
    /// or drift re-draw, so conditions are constant within a span.
    pub fn advance(&mut self, to: i64) {
        let Self {
            now,
            traffic,
            rng,
            functions,
            minute,
            delay,
            delay_jitter,
            ..
        } = self;
        while *now < to {
            let minute_start = now.div_euclid(60) * 60;
            let conditions = match *minute {
                Some((m, c)) if m == minute_start => c,
                _ => {
                    let c = traffic.minute_conditions(rng);
                    *minute = Some((minute_start, c));
                    c
                }
            };
            for f in functions.iter_mut() {
                f.route(*now);
            }
            let next = functions
                .iter()
                .map(|f| f.next_change(traffic.origin, *now))
                .chain(traffic.next_event(*now))
                .fold((minute_start + 60).min(to), i64::min);
            let span = Span {
                traffic,
                conditions,
                from: *now,
                to: next,
            };
            for f in functions.iter_mut() {
                f.serve(rng, &span);
                let end = f.period_start + f.period();
                if end <= next {
                    let jitter = if *delay_jitter > 0 {
                        (rng.uniform() * (*delay_jitter + 1) as f64) as i64
                    } else {
                        0
                    };
                    f.close_period(rng, end, end + *delay + jitter);
                }
            }
            *now = next;
        }
    }
}

/// Seconds after a period ends before CloudWatch shows it: about a minute for standard Lambda
/// metrics, about 10 s for high-resolution ones. The simulated agent ticks at the same pace.
#[must_use]
pub fn visibility_delay(policy: &Policy) -> i64 {
    if policy.metrics.period().as_secs() < 60 {
        10
    } else {
        60
    }
}

#[cfg(test)]
mod tests;
