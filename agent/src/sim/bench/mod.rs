//! The judge benchmark: our agent and three peers, re-implemented from their documented rules, on
//! the same simulated traffic, over many seeded canaries per scenario.
//!
//! Scenarios come built in ([`builtin::scenarios`]) or from a scenario file
//! ([`crate::sim::scenario`]); [`report`] renders the rows as text or JSON.

pub mod builtin;
pub mod peers;
pub mod report;

use super::traffic::{Build, Traffic};
use super::{agent, Shared, SimFunction, World};
use crate::policy::{LatencyStat, MetricsSource, Policy};
use crate::record::Version;
pub use peers::{Footing, Peer};

/// Where every run starts, the deploy (ticks land 20 s after the minute).
const START: i64 = 1_795_428_020;

/// A benchmark scenario: the stable build, the new build and the traffic they meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name, unique within its set.
    pub name: String,
    /// Whether the new build is bad (rolling it back is right).
    pub bad: bool,
    /// Length of one run after the deploy, in minutes.
    pub minutes: i64,
    /// The traffic; its schedule counts from the deploy (the bench sets `origin`).
    pub traffic: Traffic,
    /// The version live points at.
    pub stable: Build,
    /// The new version.
    pub candidate: Build,
    /// Whether the stable version has the six hours of per-minute latency before the canary
    /// that the latency test measures its wander on; `false` (`canary bench
    /// --without-latency-history`): a function too new or too quiet for them.
    pub latency_history: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    RolledBack,
    Promoted,
    Running,
}

/// A judge under test: ours (the real agent) or a peer.
trait Contender {
    fn tick(&mut self, world: &Shared, now: i64) -> End;
}

/// One contender's configuration.
#[derive(Debug, Clone)]
pub enum Judge {
    /// The real agent with this policy, ticking every `tick` seconds.
    Ours {
        /// Row label (the judge id with scenario files).
        label: String,
        /// The policy.
        policy: Box<Policy>,
        /// Seconds between ticks.
        tick: i64,
        /// Seconds after a period ends before it is visible.
        delay: i64,
    },
    /// A peer, re-implemented from its documentation and source ([`peers`]).
    Peer(Peer, Footing),
}

/// Suffix of equal-footing judge ids and labels.
pub const EQUAL_FOOTING: &str = "@equal-footing";

impl Judge {
    /// Row label of the built-in table.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Ours { label, .. } => label.clone(),
            Self::Peer(peer, footing) => peer.label(*footing),
        }
    }

    /// Judge id of scenario-file output (SCENARIOS.md): the label of ours, the peer's short name
    /// (with [`EQUAL_FOOTING`] appended on equal footing).
    #[must_use]
    pub fn id(&self) -> String {
        match self {
            Self::Ours { label, .. } => label.clone(),
            Self::Peer(peer, Footing::Documented) => peer.id().to_string(),
            Self::Peer(peer, Footing::Equal) => format!("{}{EQUAL_FOOTING}", peer.id()),
        }
    }

    /// Our agent with `policy`, ticking as often as its metrics become visible.
    #[must_use]
    pub fn ours(label: String, policy: Policy) -> Self {
        let delay = super::visibility_delay(&policy);
        Self::Ours {
            label,
            policy: Box::new(policy),
            tick: delay,
            delay,
        }
    }

    fn tick_secs(&self) -> i64 {
        match self {
            Self::Ours { tick, .. } => *tick,
            Self::Peer(..) => 60,
        }
    }

    fn delay(&self) -> i64 {
        match self {
            Self::Ours { delay, .. } => *delay,
            Self::Peer(..) => 60,
        }
    }

    fn first_weight(&self) -> f64 {
        match self {
            Self::Ours { policy, .. } => policy.steps.first().copied().unwrap_or(100.0),
            Self::Peer(peer, footing) => peer.first_weight(*footing),
        }
    }

    fn period(&self) -> i64 {
        match self {
            Self::Ours { policy, .. } => policy.metrics.period_secs(),
            Self::Peer(..) => 60,
        }
    }

    fn contender(&self, world: &Shared, policy: &Policy, seed: u64) -> Box<dyn Contender> {
        match self {
            Self::Ours { .. } => Box::new(peers::Ours {
                agent: agent(world),
                policies: vec![policy.clone()],
            }),
            Self::Peer(peer, footing) => peer.contender(*footing, seed),
        }
    }
}

/// The default policy the agent ships with, on 60-second Lambda metrics.
#[must_use]
pub fn default_policy() -> Policy {
    Policy::with_defaults("bench")
}

/// The judges of a scenario-file run (SCENARIOS.md): ours under the documented defaults
/// (`lambda-canary:defaults`), ours under each policy (`lambda-canary:<file name>`), then
/// `codedeploy`, `flagger` and `kayenta`.
#[must_use]
pub fn scenario_judges(policies: &[Policy]) -> Vec<Judge> {
    let mut out = vec![Judge::ours(
        "lambda-canary:defaults".to_string(),
        default_policy(),
    )];
    for p in policies {
        let name = p.source.file_name().map_or_else(
            || p.source.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        out.push(Judge::ours(format!("lambda-canary:{name}"), p.clone()));
    }
    out.extend(Peer::ALL.map(|p| Judge::Peer(p, Footing::Documented)));
    out
}

/// `policy` on equal footing with the peers: 60 s AWS/Lambda metrics (so 60 s ticks) and a 10%
/// first step (steps at or below 10% give way to it; later steps stay).
#[must_use]
pub fn equal_footing(policy: &Policy) -> Policy {
    let mut p = with_first_step(policy, 10.0);
    p.metrics = MetricsSource::LAMBDA;
    p
}

/// `policy` with its steps starting at `first` (steps at or below it give way to it).
fn with_first_step(policy: &Policy, first: f64) -> Policy {
    let mut p = policy.clone();
    p.steps = std::iter::once(first)
        .chain(policy.steps.iter().copied().filter(|&s| s > first))
        .collect();
    p
}

/// The judges of the equal-footing table: every judge of [`scenario_judges`] on 60 s AWS/Lambda
/// metrics with a 10% first step, ids suffixed [`EQUAL_FOOTING`].
#[must_use]
pub fn equal_footing_judges(policies: &[Policy]) -> Vec<Judge> {
    scenario_judges(policies)
        .into_iter()
        .map(|j| match j {
            Judge::Ours { label, policy, .. } => {
                Judge::ours(format!("{label}{EQUAL_FOOTING}"), equal_footing(&policy))
            }
            Judge::Peer(peer, _) => Judge::Peer(peer, Footing::Equal),
        })
        .collect()
}

/// Suffix of the judge ids that add our policy's own first step to equal footing.
pub const OWN_FIRST_STEP: &str = "@equal-footing+own-first-step";

/// For each of ours whose policy lowers the floor (a first step under 10%, or metrics other than
/// 60 s AWS/Lambda): the policy on 60 s AWS/Lambda metrics with its own steps (id suffixed
/// [`OWN_FIRST_STEP`]). With the equal-footing row and the row as configured, it shows what the
/// first step and the metrics source each add.
#[must_use]
pub fn feature_judges(policies: &[Policy]) -> Vec<Judge> {
    scenario_judges(policies)
        .into_iter()
        .filter_map(|j| match j {
            Judge::Ours { label, policy, .. } if lowers_floor(&policy) => {
                let mut own = (*policy).clone();
                own.metrics = MetricsSource::LAMBDA;
                Some(Judge::ours(format!("{label}{OWN_FIRST_STEP}"), own))
            }
            _ => None,
        })
        .collect()
}

/// The ids of ours among `judges` whose policy lowers the floor ([`lowers_floor`]).
#[must_use]
pub fn floor_lowering_ids(judges: &[Judge]) -> Vec<String> {
    judges
        .iter()
        .filter_map(|j| match j {
            Judge::Ours { label, policy, .. } if lowers_floor(policy) => Some(label.clone()),
            _ => None,
        })
        .collect()
}

/// Whether `policy` differs from [`equal_footing`] (its first step or its metrics source).
#[must_use]
pub fn lowers_floor(policy: &Policy) -> bool {
    let equal = equal_footing(policy);
    equal.steps != policy.steps || equal.metrics != policy.metrics
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
struct Run {
    end: End,
    /// A rollback in the bake was lifted by its recheck (ours only).
    lifted: bool,
    /// Unfinished, with on-call told at some tick why a step waits (ours only).
    told: bool,
    minutes: f64,
    failed: u64,
    served: u64,
    floor: f64,
}

/// The policy a run judges with: ours as given, the peers' on per-minute p99 latency (Flagger's
/// request-duration, Kayenta's metric); no topic.
fn run_policy(judge: &Judge) -> Policy {
    let mut policy = match judge {
        Judge::Ours { policy, .. } => (**policy).clone(),
        Judge::Peer(..) => Policy {
            latency: crate::policy::LatencyRule {
                stat: LatencyStat::P99,
                ..default_policy().latency
            },
            ..default_policy()
        },
    };
    policy.function = "bench".to_string();
    policy.notify = None;
    policy
}

/// A world at the deploy: an hour of the stable version behind it (the bake's reference), the
/// candidate just deployed.
fn deployed(judge: &Judge, scenario: &Scenario, policy: &Policy, seed: u64) -> Shared {
    let mut traffic = scenario.traffic.clone();
    traffic.origin = START;
    let first = START - crate::ports::REFERENCE_SECS - 300;
    let mut world = World::new(first, traffic, judge.delay(), seed);
    let mut function = SimFunction::new(policy.clone(), scenario.stable, first);
    function.latency_history = scenario.latency_history;
    world.functions.push(function);
    world.advance(START);
    world.functions[0].deploy(scenario.candidate);
    Shared::new(world)
}

/// How a run's ticks ended: the outcome, the last tick, when the canary began, and whether
/// on-call was told at some tick why a step waits.
struct Drive {
    end: End,
    now: i64,
    began: Option<i64>,
    told: bool,
}

/// Ticks the judge until it decides or the horizon.
fn drive(judge: &Judge, shared: &Shared, policy: &Policy, seed: u64, horizon: i64) -> Drive {
    let mut contender = judge.contender(shared, policy, seed);
    let step = judge.tick_secs();
    let mut d = Drive {
        end: End::Running,
        now: START,
        began: None,
        told: false,
    };
    while d.now < horizon {
        d.end = contender.tick(shared, d.now);
        let w = shared.lock();
        if d.began.is_none() && w.functions[0].canary.is_some() {
            d.began = Some(d.now);
        }
        d.told |= w.functions[0].alias_state().record.quiet_alerted;
        drop(w);
        if d.end != End::Running {
            break;
        }
        d.now += step;
        shared.lock().advance(d.now);
    }
    d
}

/// When the alias last moved to `to` alone (a later write may only change the record: the move
/// is the first write of a run of the same routing), or `now`.
fn moved_to(
    history: &[(i64, usize, Version, Option<crate::rollout::Routing>)],
    to: Version,
    now: i64,
) -> i64 {
    let mut last = None;
    let mut before = None;
    for &(at, _, stable, canary) in history {
        let here = (stable, canary.map(|c| c.version));
        if here == (to, None) && before != Some(here) {
            last = Some(at);
        }
        before = Some(here);
    }
    last.unwrap_or(now)
}

fn one(judge: &Judge, scenario: &Scenario, seed: u64) -> Run {
    let policy = run_policy(judge);
    let shared = deployed(judge, scenario, &policy, seed);
    let horizon = START + scenario.minutes * 60;
    let Drive {
        mut end,
        now,
        began,
        told,
    } = drive(judge, &shared, &policy, seed, horizon);
    let w = shared.lock();
    let f = &w.functions[0];
    // A run that reached 100% and was still baking at the end is promoted.
    if end == End::Running && f.stable == 2 && f.canary.is_none() {
        end = End::Promoted;
    }
    let began = began.unwrap_or(START);
    // Minutes to the decision: to the last move to 100% for a promoted build (its bake is not
    // part of it), to the last rollback for a rolled-back one (the recheck that follows a
    // rollback in the bake is not part of it either).
    let decided = match end {
        End::Promoted => moved_to(&w.history, 2, now),
        End::RolledBack => moved_to(&w.history, 1, now),
        End::Running => now,
    };
    // The floor: canary traffic times the wait until its first datapoint can be seen.
    let period = judge.period().max(1);
    let first_visible = (began.div_euclid(period) + 1) * period + judge.delay();
    let rps = scenario.traffic.rps;
    let floor = rps * judge.first_weight() / 100.0 * (first_visible - began) as f64;
    // A promoted build serves all traffic for the rest of the run.
    let after_promotion = if end == End::Promoted {
        w.traffic
            .expected_failures(&scenario.candidate, now, horizon)
    } else {
        0.0
    };
    let error_rate = scenario.candidate.error_rate;
    Run {
        end,
        lifted: f.alias_state().record.lifted == Some(2),
        told: end == End::Running && told,
        minutes: (decided - began) as f64 / 60.0,
        failed: f.failed.get(&2).copied().unwrap_or(0) + after_promotion.round() as u64,
        served: f.served.get(&2).copied().unwrap_or(0),
        floor: floor * error_rate.max(if scenario.bad { 0.0 } else { 1.0 }),
    }
}

fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[i]
}

/// One row of the results: one scenario under one judge.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Judge label (built-in table) or id (scenario files).
    pub judge: String,
    /// Whether the scenario's build is bad.
    pub bad: bool,
    /// Runs.
    pub runs: usize,
    /// Share of runs rolled back.
    pub rolled_back: f64,
    /// Share of runs promoted.
    pub promoted: f64,
    /// Share of runs with neither outcome at the end.
    pub unfinished: f64,
    /// Median and p95 of 5xx the new build answered to users in the run, over all runs.
    pub failed_all: (f64, f64),
    /// Median and p95 minutes to the decision, over runs that decided (`None` if none did).
    pub decided_minutes: Option<(f64, f64)>,
    /// Built-in table: median and p95 of 5xx served by the canary (all runs of bad builds;
    /// promoted runs of healthy ones).
    pub failed: (f64, f64),
    /// Built-in table: median requests the new build served before the decision (same runs).
    pub exposed: f64,
    /// Built-in table: median and p95 minutes to rollback (bad builds) or to 100% (healthy).
    pub minutes: (f64, f64),
    /// Median floor (failed requests unavoidable before the first datapoint is visible).
    pub floor: f64,
    /// Share of runs in which a rollback in the bake was lifted by its recheck and the build
    /// canaried again (ours only; not in the JSON, whose keys SCENARIOS.md fixes).
    pub lifted: f64,
    /// Share of the unfinished runs in which on-call was told at some point why a step waits
    /// (ours only; not in the JSON either).
    pub told: f64,
}

/// Runs `runs` seeded canaries of `scenario` under `judge`.
#[must_use]
pub fn measure(judge: &Judge, scenario: &Scenario, runs: usize, seed: u64, label: String) -> Row {
    let results: Vec<Run> = (0..runs)
        .map(|i| {
            one(
                judge,
                scenario,
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            )
        })
        .collect();
    let share =
        |end: End| results.iter().filter(|r| r.end == end).count() as f64 / runs.max(1) as f64;
    let pick = |keep: &dyn Fn(&Run) -> bool, value: &dyn Fn(&Run) -> f64| -> Vec<f64> {
        results.iter().filter(|r| keep(r)).map(value).collect()
    };
    let relevant = |r: &Run| scenario.bad || r.end == End::Promoted;
    let timed = |r: &Run| {
        if scenario.bad {
            r.end == End::RolledBack
        } else {
            r.end == End::Promoted
        }
    };
    let failed = |r: &Run| r.failed as f64;
    let all_failed = pick(&|_| true, &failed);
    let decided = pick(&|r| r.end != End::Running, &|r| r.minutes);
    Row {
        scenario: scenario.name.clone(),
        judge: label,
        bad: scenario.bad,
        runs,
        rolled_back: share(End::RolledBack),
        promoted: share(End::Promoted),
        unfinished: share(End::Running),
        failed_all: (
            quantile(all_failed.clone(), 0.5),
            quantile(all_failed, 0.95),
        ),
        decided_minutes: (!decided.is_empty())
            .then(|| (quantile(decided.clone(), 0.5), quantile(decided, 0.95))),
        failed: (
            quantile(pick(&relevant, &failed), 0.5),
            quantile(pick(&relevant, &failed), 0.95),
        ),
        exposed: quantile(pick(&relevant, &|r| r.served as f64), 0.5),
        minutes: (
            quantile(pick(&timed, &|r| r.minutes), 0.5),
            quantile(pick(&timed, &|r| r.minutes), 0.95),
        ),
        floor: quantile(pick(&|_| true, &|r| r.floor), 0.5),
        lifted: results.iter().filter(|r| r.lifted).count() as f64 / runs.max(1) as f64,
        told: results.iter().filter(|r| r.told).count() as f64
            / results
                .iter()
                .filter(|r| r.end == End::Running)
                .count()
                .max(1) as f64,
    }
}

/// Every scenario under every judge, scenario by scenario, judges in order.
#[must_use]
pub fn run_all(
    scenarios: &[Scenario],
    judges: &[Judge],
    runs: usize,
    seed: u64,
    label: impl Fn(&Judge) -> String,
) -> Vec<Row> {
    scenarios
        .iter()
        .flat_map(|s| {
            judges
                .iter()
                .map(|j| measure(j, s, runs, seed, label(j)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests;
