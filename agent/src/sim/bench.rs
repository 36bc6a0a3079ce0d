//! The judge benchmark: our agent and three peers, re-implemented from their documented rules, on
//! the same simulated traffic, over many seeded canaries per scenario.

use super::traffic::{Build, Traffic};
use super::{agent, block_on, Shared, SimAgent, SimFunction, World};
use crate::judge::Sample;
use crate::policy::{MetricsSource, Policy};
use crate::rollout::{Routing, Version};
use std::fmt::Write as _;
use std::time::Duration;

/// Where every run starts (ticks land 20 s after the minute).
const START: i64 = 1_795_428_020;
/// Every run covers the first hour after the deploy; a bad build promoted before the hour is up
/// keeps failing at full traffic for the rest of it (counted at its expected rate).
const HORIZON_MIN: i64 = 60;

/// A benchmark scenario: the new build and the traffic it meets.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name.
    pub name: &'static str,
    /// The canary build.
    pub build: Build,
    /// Traffic.
    pub traffic: Traffic,
    /// Whether the build is bad (rolling it back is right).
    pub bad: bool,
}

/// The scenarios of the issue, in order.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    let h = Build::healthy();
    let t = Traffic::steady(10.0);
    let noisy = Traffic {
        error_noise: 0.8,
        burst_chance: 0.05,
        burst_error_rate: 0.02,
        rate_noise: 0.3,
        ..t
    };
    let with = |name, build, traffic, bad| Scenario {
        name,
        build,
        traffic,
        bad,
    };
    vec![
        with(
            "fails every request",
            Build {
                error_rate: 1.0,
                ..h
            },
            t,
            true,
        ),
        with(
            "5% 5xx",
            Build {
                error_rate: 0.05,
                ..h
            },
            t,
            true,
        ),
        with(
            "1% 5xx",
            Build {
                error_rate: 0.01,
                ..h
            },
            t,
            true,
        ),
        with(
            "2x latency",
            Build {
                latency_median_ms: 2.0 * h.latency_median_ms,
                ..h
            },
            t,
            true,
        ),
        with(
            "+30% latency",
            Build {
                latency_median_ms: 1.3 * h.latency_median_ms,
                ..h
            },
            t,
            true,
        ),
        with("healthy", h, t, false),
        with("healthy, noisy baseline", h, noisy, false),
        with("healthy, 0.5 req/s", h, Traffic::steady(0.5), false),
        with(
            "fails every request, 0.5 req/s",
            Build {
                error_rate: 1.0,
                ..h
            },
            Traffic::steady(0.5),
            true,
        ),
    ]
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
        /// Row label.
        label: String,
        /// The policy.
        policy: Box<Policy>,
        /// Seconds between ticks.
        tick: i64,
        /// Seconds after a period ends before it is visible.
        delay: i64,
    },
    /// AWS CodeDeploy `Canary10Percent5Minutes` with an Errors alarm on the alias.
    CodeDeploy,
    /// Flagger: success rate ≥ 99% per 1-minute check, threshold 5, stepWeight 10, maxWeight 50.
    Flagger,
    /// Kayenta NetflixACAJudge: Mann-Whitney at 98% on per-minute series, pass 75 / marginal 50.
    Kayenta,
}

impl Judge {
    /// Row label.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Ours { label, .. } => label.clone(),
            Self::CodeDeploy => "CodeDeploy Canary10Percent5Minutes".to_string(),
            Self::Flagger => "Flagger (1m checks, threshold 5, step 10, max 50)".to_string(),
            Self::Kayenta => "Kayenta (Mann-Whitney 98%, 5m intervals x3)".to_string(),
        }
    }

    fn tick_secs(&self) -> i64 {
        match self {
            Self::Ours { tick, .. } => *tick,
            _ => 60,
        }
    }

    fn delay(&self) -> i64 {
        match self {
            Self::Ours { delay, .. } => *delay,
            _ => 60,
        }
    }

    fn first_weight(&self) -> f64 {
        match self {
            Self::Ours { policy, .. } => policy.steps[0],
            _ => 10.0,
        }
    }

    fn period(&self) -> i64 {
        match self {
            Self::Ours { policy, .. } => policy.metrics.period_secs(),
            _ => 60,
        }
    }

    fn contender(&self, world: &Shared, policy: &Policy) -> Box<dyn Contender> {
        match self {
            Self::Ours { .. } => Box::new(Ours {
                agent: agent(world),
                policies: vec![policy.clone()],
            }),
            Self::CodeDeploy => Box::new(CodeDeploy { started: None }),
            Self::Flagger => Box::new(Flagger {
                failed: 0,
                last_checked: i64::MIN,
            }),
            Self::Kayenta => Box::new(Kayenta { started: None }),
        }
    }
}

/// The default policy the agent ships with, on 60-second Lambda metrics.
#[must_use]
pub fn default_policy() -> Policy {
    Policy::with_defaults("bench")
}

/// The contenders of the benchmark table.
#[must_use]
pub fn judges(shipped: &[Policy]) -> Vec<Judge> {
    let base = default_policy();
    let mut probe = base.clone();
    probe.steps = vec![2.0, 10.0, 25.0, 50.0, 100.0];
    probe.min_requests = 20;
    probe.step_interval = Duration::from_secs(60);
    let mut emf = probe.clone();
    emf.metrics = MetricsSource::Emf {
        namespace: "NotesApi".to_string(),
        period: Duration::from_secs(10),
    };
    let mut out = vec![
        Judge::Ours {
            label: "lambda-canary (defaults: 10/25/50/100, 2m, 60 s Lambda metrics)".to_string(),
            policy: Box::new(base),
            tick: 60,
            delay: 60,
        },
        Judge::CodeDeploy,
        Judge::Flagger,
        Judge::Kayenta,
        Judge::Ours {
            label: "lambda-canary + 2% probe step, 1m interval".to_string(),
            policy: Box::new(probe),
            tick: 60,
            delay: 60,
        },
        Judge::Ours {
            label: "lambda-canary + probe + 10 s EMF metrics, 10 s ticks".to_string(),
            policy: Box::new(emf),
            tick: 10,
            delay: 10,
        },
    ];
    for p in shipped {
        out.push(Judge::Ours {
            label: format!("lambda-canary, {}", p.source.display()),
            policy: Box::new(p.clone()),
            tick: super::visibility_delay(p),
            delay: super::visibility_delay(p),
        });
    }
    out
}

struct Ours {
    agent: SimAgent,
    policies: Vec<Policy>,
}

impl Contender for Ours {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        block_on(self.agent.tick(&self.policies, now));
        let w = world.lock();
        let f = &w.functions[0];
        match (f.stable, f.canary) {
            (2, None) => End::Promoted,
            (1, None) if f.alias_state().record.rejected == Some(2) => End::RolledBack,
            _ => End::Running,
        }
    }
}

fn set(world: &Shared, stable: Version, canary: Option<Routing>) {
    let mut w = world.lock();
    let now = w.now;
    let f = &mut w.functions[0];
    f.stable = stable;
    f.canary = canary;
    w.history.push((now, 0, stable, canary));
}

/// Peers start the new build at 10%.
fn begin(world: &Shared) {
    set(
        world,
        1,
        Some(Routing {
            version: 2,
            weight: 10.0,
        }),
    );
}

fn visible(world: &Shared, version: Version, now: i64) -> Vec<Sample> {
    let w = world.lock();
    w.functions[0]
        .samples
        .iter()
        .filter(|(v, _, vis)| *v == version && *vis <= now)
        .map(|(_, s, _)| *s)
        .collect()
}

/// CodeDeploy: 10% for 5 minutes, then 100%; an alarm on the alias's Errors (both versions together)
/// at ≥ 1% of the alias's expected per-minute requests, 1 of 1 one-minute periods, rolls back.
struct CodeDeploy {
    started: Option<i64>,
}

impl Contender for CodeDeploy {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(start) = self.started else {
            begin(world);
            self.started = Some(now);
            return End::Running;
        };
        let threshold = (world.lock().traffic.rps * 60.0 * 0.01).max(1.0);
        let mut per_minute = std::collections::BTreeMap::<i64, f64>::new();
        for v in [1, 2] {
            for s in visible(world, v, now) {
                if s.start >= start - 60 {
                    *per_minute.entry(s.start).or_default() += s.errors;
                }
            }
        }
        // The alarm evaluates the newest complete minute it can see.
        if per_minute
            .values()
            .next_back()
            .is_some_and(|&e| e >= threshold)
        {
            set(world, 1, None);
            return End::RolledBack;
        }
        if now - start >= 300 {
            set(world, 2, None);
            return End::Promoted;
        }
        End::Running
    }
}

/// Flagger: every minute, the canary's request success rate over its newest visible minute must be
/// ≥ 99% (no data within 3 minutes is a failed check); a pass adds 10% up to 50%, then promotes;
/// 5 failed checks roll back.
struct Flagger {
    failed: u32,
    last_checked: i64,
}

impl Contender for Flagger {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let weight = world.lock().functions[0].canary.map(|c| c.weight);
        let Some(weight) = weight else {
            begin(world);
            return End::Running;
        };
        let newest = visible(world, 2, now)
            .into_iter()
            .rfind(|s| s.start >= now - 240);
        let pass = match newest {
            Some(s) if s.start > self.last_checked || s.requests > 0.0 => {
                self.last_checked = s.start;
                s.requests > 0.0 && 1.0 - s.errors / s.requests >= 0.99
            }
            _ => false,
        };
        if !pass {
            self.failed += 1;
            if self.failed >= 5 {
                set(world, 1, None);
                return End::RolledBack;
            }
            return End::Running;
        }
        if weight >= 50.0 {
            set(world, 2, None);
            return End::Promoted;
        }
        set(
            world,
            1,
            Some(Routing {
                version: 2,
                weight: weight + 10.0,
            }),
        );
        End::Running
    }
}

/// Kayenta: 10% for three 5-minute intervals; after each, a Mann-Whitney test (98%) per metric on
/// the per-minute series since the start: error rate (critical) and latency; a critical High
/// fails at once, otherwise score = % of metrics passing; < 50 fails, ≥ 75 after the last passes.
struct Kayenta {
    started: Option<i64>,
}

impl Contender for Kayenta {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(start) = self.started else {
            begin(world);
            self.started = Some(now);
            return End::Running;
        };
        let elapsed = now - start;
        if elapsed % 300 != 0 || elapsed == 0 {
            return End::Running;
        }
        let c: Vec<Sample> = visible(world, 2, now)
            .into_iter()
            .filter(|s| s.start >= start - 60)
            .collect();
        let b: Vec<Sample> = visible(world, 1, now)
            .into_iter()
            .filter(|s| s.start >= start - 60)
            .collect();
        let rate = |xs: &[Sample]| {
            xs.iter()
                .filter(|s| s.requests > 0.0)
                .map(|s| s.errors / s.requests)
                .collect::<Vec<_>>()
        };
        let lat = |xs: &[Sample]| xs.iter().filter_map(|s| s.latency_ms).collect::<Vec<_>>();
        let errors_high = mann_whitney_high(&rate(&c), &rate(&b), 0.98);
        let latency_high = mann_whitney_high(&lat(&c), &lat(&b), 0.98);
        let score = if errors_high {
            0.0
        } else if latency_high {
            50.0
        } else {
            100.0
        };
        let last = elapsed >= 900;
        if score < 50.0 || (last && score < 75.0) {
            set(world, 1, None);
            return End::RolledBack;
        }
        if last {
            set(world, 2, None);
            return End::Promoted;
        }
        End::Running
    }
}

/// Mann-Whitney U (normal approximation with tie correction; exact enough for Kayenta's use):
/// whether `canary` is significantly higher than `control` at `confidence` (two-sided).
#[must_use]
pub fn mann_whitney_high(canary: &[f64], control: &[f64], confidence: f64) -> bool {
    let (n1, n2) = (canary.len() as f64, control.len() as f64);
    if canary.is_empty() || control.is_empty() {
        return false;
    }
    let mut all: Vec<(f64, bool)> = canary
        .iter()
        .map(|&x| (x, true))
        .chain(control.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum += all[i..=j].iter().filter(|(_, c)| *c).count() as f64 * avg;
        i = j + 1;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return false;
    }
    let z = (u - n1 * n2 / 2.0) / var.sqrt();
    let critical = super::traffic::inverse_normal(1.0 - (1.0 - confidence) / 2.0);
    let med = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    z > critical && med(canary) > med(control)
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
struct Run {
    end: End,
    minutes: f64,
    failed: u64,
    served: u64,
    floor: f64,
}

fn one(judge: &Judge, scenario: &Scenario, seed: u64) -> Run {
    let mut policy = match judge {
        Judge::Ours { policy, .. } => (**policy).clone(),
        _ => default_policy(),
    };
    policy.function = "bench".to_string();
    policy.notify = None;
    let mut world = World::new(START - 300, scenario.traffic, judge.delay(), seed);
    world.functions.push(SimFunction::new(
        policy.clone(),
        Build::healthy(),
        START - 300,
    ));
    world.advance(START);
    world.functions[0].deploy(scenario.build);
    let shared = Shared::new(world);
    let mut contender = judge.contender(&shared, &policy);
    let step = judge.tick_secs();
    let mut now = START;
    let mut end = End::Running;
    let mut began = None;
    while now < START + HORIZON_MIN * 60 {
        end = contender.tick(&shared, now);
        if began.is_none() && shared.lock().functions[0].canary.is_some() {
            began = Some(now);
        }
        if end != End::Running {
            break;
        }
        now += step;
        shared.lock().advance(now);
    }
    let w = shared.lock();
    let f = &w.functions[0];
    let began = began.unwrap_or(START);
    // The floor: canary traffic times the wait until its first datapoint can be seen.
    let period = judge.period();
    let first_visible = (began.div_euclid(period) + 1) * period + judge.delay();
    let floor =
        scenario.traffic.rps * judge.first_weight() / 100.0 * (first_visible - began) as f64;
    let after_promotion = if end == End::Promoted {
        scenario.traffic.rps
            * scenario.build.error_rate
            * (START + HORIZON_MIN * 60 - now).max(0) as f64
    } else {
        0.0
    };
    Run {
        end,
        minutes: (now - began) as f64 / 60.0,
        failed: f.failed.get(&2).copied().unwrap_or(0) + after_promotion.round() as u64,
        served: f.served.get(&2).copied().unwrap_or(0),
        floor: floor
            * scenario
                .build
                .error_rate
                .max(if scenario.bad { 0.0 } else { 1.0 }),
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

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Judge label.
    pub judge: String,
    /// Runs.
    pub runs: usize,
    /// Share of runs rolled back.
    pub rollback_rate: f64,
    /// Median and p95 of 5xx served by the canary (rolled-back runs of bad builds; all runs otherwise).
    pub failed: (f64, f64),
    /// Median requests served by a bad canary before rollback.
    pub exposed: f64,
    /// Median and p95 minutes to rollback (bad builds) or to 100% (healthy builds).
    pub minutes: (f64, f64),
    /// Median floor (failed requests unavoidable before the first datapoint is visible).
    pub floor: f64,
}

/// Runs `runs` seeded canaries of `scenario` under `judge`.
#[must_use]
pub fn measure(judge: &Judge, scenario: &Scenario, runs: usize, seed: u64) -> Row {
    let results: Vec<Run> = (0..runs)
        .map(|i| {
            one(
                judge,
                scenario,
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            )
        })
        .collect();
    let rolled: Vec<&Run> = results
        .iter()
        .filter(|r| r.end == End::RolledBack)
        .collect();
    let relevant: Vec<&Run> = if scenario.bad {
        results.iter().collect()
    } else {
        results.iter().filter(|r| r.end == End::Promoted).collect()
    };
    let timed: Vec<f64> = if scenario.bad {
        rolled.iter().map(|r| r.minutes).collect()
    } else {
        relevant.iter().map(|r| r.minutes).collect()
    };
    Row {
        scenario: scenario.name.to_string(),
        judge: judge.label(),
        runs,
        rollback_rate: rolled.len() as f64 / runs as f64,
        failed: (
            quantile(relevant.iter().map(|r| r.failed as f64).collect(), 0.5),
            quantile(relevant.iter().map(|r| r.failed as f64).collect(), 0.95),
        ),
        exposed: quantile(relevant.iter().map(|r| r.served as f64).collect(), 0.5),
        minutes: (quantile(timed.clone(), 0.5), quantile(timed, 0.95)),
        floor: quantile(results.iter().map(|r| r.floor).collect(), 0.5),
    }
}

/// Runs the whole benchmark and renders it as Markdown.
#[must_use]
pub fn report(runs: usize, seed: u64, shipped: &[Policy], filter: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{runs} seeded canaries per scenario and judge (seed {seed}); baseline build 0.1% 5xx, 80 ms median latency; 10 req/s unless noted.\n\
         Bad builds: `rolled back` is the detection rate; `failed` the 5xx users got from the new build in the first hour after the deploy (median / p95; a bad build that was promoted keeps failing at 100% of traffic); `exposed` the new build's requests before the decision; `minutes` to rollback; `floor` the failed requests no judge can avoid: the first step's traffic until the first datapoint is visible.\n\
         Healthy builds: `rolled back` is the false-rollback rate, `minutes` to 100%.\n"
    );
    for scenario in scenarios() {
        if filter.is_some_and(|f| !scenario.name.contains(f)) {
            continue;
        }
        let _ = writeln!(out, "### {}\n", scenario.name);
        let _ = writeln!(out, "| judge | rolled back | failed (median / p95) | exposed (median) | minutes (median / p95) | floor |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for judge in judges(shipped) {
            let r = measure(&judge, &scenario, runs, seed);
            let _ = writeln!(
                out,
                "| {} | {:.1}% | {:.0} / {:.0} | {:.0} | {:.1} / {:.1} | {} |",
                r.judge,
                100.0 * r.rollback_rate,
                r.failed.0,
                r.failed.1,
                r.exposed,
                r.minutes.0,
                r.minutes.1,
                if scenario.bad && scenario.build.error_rate > 0.01 {
                    format!("{:.0}", r.floor)
                } else {
                    "-".to_string()
                }
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_sees_a_clear_shift_and_not_noise() {
        let a: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i)).collect();
        let b: Vec<f64> = (0..10).map(|i| 50.0 + f64::from(i)).collect();
        assert!(mann_whitney_high(&a, &b, 0.98));
        assert!(!mann_whitney_high(&b, &a, 0.98));
        assert!(!mann_whitney_high(&[0.0; 5], &[0.0; 5], 0.98));
    }

    #[test]
    fn ours_rolls_back_a_failing_build_near_the_floor_and_promotes_a_healthy_one() {
        let judges = judges(&[]);
        let s = scenarios();
        let bad = measure(&judges[0], &s[0], 20, 1);
        assert_eq!(bad.rollback_rate, 1.0);
        assert!(bad.failed.0 <= 1.2 * bad.floor, "{bad:?}");
        let good = measure(&judges[0], &s[5], 20, 1);
        assert_eq!(good.rollback_rate, 0.0, "{good:?}");
        assert!(good.minutes.0 < 10.0, "{good:?}");
    }
}
