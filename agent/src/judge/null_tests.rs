//! Every count test of the judge, and the bake's tests, under its own null on heavy-tailed and
//! autocorrelated inputs: the rate wanders from minute to minute (a log-AR(1) with Student t
//! innovations) and events come in clusters of heavy-tailed size (a retry storm, a burst of new
//! execution environments). Each test may reach its threshold in at most its share of
//! `1 - confidence` of the runs (α = 5%, so that a few hundred runs can tell), plus two standard
//! errors of sampling noise. The latency test's are in `tests.rs` (`latency_null_tests`).

use super::bake::judge_bake;
use super::counts::five_xx;
use super::tests::{minute, obs};
use super::*;
use crate::sim::rng::Rng;

/// The false-rollback budget of these tests (confidence 0.95).
const ALPHA: f64 = 0.05;
/// Runs per case.
const RUNS: u32 = 400;

/// A policy at [`ALPHA`] with the defaults otherwise.
fn policy() -> Policy {
    let mut p = Policy::with_defaults("f");
    p.confidence = 1.0 - ALPHA;
    p
}

/// Asserts that `rejected` of [`RUNS`] is within `share` plus two standard errors.
fn within(rejected: u32, share: f64, what: &str) {
    let rate = f64::from(rejected) / f64::from(RUNS);
    let noise = 2.0 * (share / f64::from(RUNS)).sqrt();
    eprintln!("{what}: {:.2}% (share {:.2}%)", rate * 100.0, share * 100.0);
    assert!(
        rate <= share + noise,
        "{what}: {rejected} of {RUNS} runs ({:.2}%) against a share of {:.2}%",
        rate * 100.0,
        share * 100.0
    );
}

/// How events cluster in one case.
#[derive(Clone, Copy, Debug)]
enum Clusters {
    /// Independent events.
    None,
    /// Clusters of lognormal size (log-sd 1.2, rounded up, at most 500): mean about 2.6, a
    /// tenth of them 5 or more, a few in a thousand over 30.
    Heavy,
}

/// The cases every test runs: (how the rate wanders, how events cluster). `0.0` is a steady
/// rate; `0.9` a level that wanders with AR(1) coefficient 0.9 a minute and log-sd 0.5.
const CASES: [(f64, Clusters); 3] = [
    (0.0, Clusters::Heavy),
    (0.9, Clusters::None),
    (0.9, Clusters::Heavy),
];

/// One null world: a wandering log-level and clustered events.
struct World {
    rng: Rng,
    /// The AR(1) coefficient of the level per minute (0: no wander).
    ar: f64,
    clusters: Clusters,
    level: f64,
    /// Mean cluster size (measured once).
    mean_cluster: f64,
}

impl World {
    fn new(seed: u64, (ar, clusters): (f64, Clusters)) -> Self {
        let mut w = World {
            rng: Rng::new(seed),
            ar,
            clusters,
            level: 0.0,
            mean_cluster: 1.0,
        };
        let draws = 20_000;
        w.mean_cluster = (0..draws).map(|_| w.cluster()).sum::<f64>() / f64::from(draws);
        w.level = w.stationary();
        w
    }

    /// A unit-variance Student t(3) draw (heavy tails), from statrs' Gamma via [`Rng::gamma`].
    fn student(&mut self) -> f64 {
        let dof = 3.0;
        let t = self.rng.normal() / (2.0 * self.rng.gamma(dof / 2.0) / dof).sqrt();
        t / (dof / (dof - 2.0_f64)).sqrt()
    }

    /// A draw of the level's stationary distribution (log-sd 0.5 when it wanders).
    fn stationary(&mut self) -> f64 {
        if self.ar > 0.0 {
            0.5 * self.student()
        } else {
            0.0
        }
    }

    /// The next minute's log-level.
    fn wander(&mut self) -> f64 {
        if self.ar > 0.0 {
            let a = (1.0 - self.ar * self.ar).sqrt();
            self.level = self.ar * self.level + a * 0.5 * self.student();
        }
        self.level
    }

    /// One cluster's size.
    fn cluster(&mut self) -> f64 {
        match self.clusters {
            Clusters::None => 1.0,
            Clusters::Heavy => (1.2 * self.rng.normal()).exp().ceil().min(500.0),
        }
    }

    /// Events among `n` requests at rate `p` in clusters, each cluster wholly the first
    /// version's with probability `share` (else the second's): (first, second), each at most
    /// its own requests.
    fn split(&mut self, n: (f64, f64), p: f64, share: f64) -> (f64, f64) {
        let (mut a, mut b) = (0.0, 0.0);
        let clusters = self.rng.poisson((n.0 + n.1) * p / self.mean_cluster);
        for _ in 0..clusters {
            let size = self.cluster();
            if self.rng.uniform() < share {
                a += size;
            } else {
                b += size;
            }
        }
        (a.min(n.0), b.min(n.1))
    }
}

/// A canary at 10% of about 1000 requests a minute, both versions' traffic swinging with the
/// world's level: (canary, baseline) requests of one minute.
fn traffic(w: &mut World) -> (f64, f64) {
    let total = (1000.0 * (0.3 * w.level).exp()).round().max(10.0);
    (total * 0.1, total * 0.9)
}

/// Runs of an hour of one-minute looks at the canary's 5xx tests; `rates(level)` gives the
/// (canary, baseline) 5xx rates of a minute whose level is `level`, and `evidence` picks the
/// test's evidence. How many runs ever reached `threshold`.
fn five_xx_runs(
    case: (f64, Clusters),
    seed: u64,
    rates: &dyn Fn(f64) -> (f64, f64),
    evidence: &dyn Fn(&counts::FiveXx) -> f64,
    threshold: f64,
) -> u32 {
    let p = policy();
    let mut w = World::new(seed, case);
    let mut rejected = 0;
    for _ in 0..RUNS {
        w.level = w.stationary();
        let (mut c, mut b) = (Vec::new(), Vec::new());
        for m in 0..60 {
            let level = w.wander();
            let (nc, nb) = traffic(&mut w);
            let (pc, pb) = rates(level);
            // The share of the errors' clusters that lands on the canary: its share of the
            // requests, weighted by its rate.
            let share = nc * pc / (nc * pc + nb * pb).max(f64::MIN_POSITIVE);
            let (xc, xb) = w.split((nc, nb), (nc * pc + nb * pb) / (nc + nb), share);
            c.push(minute(m * 60, nc, xc, None));
            b.push(minute(m * 60, nb, xb, None));
            let o = obs(c.clone(), b.clone());
            let base = totals(&o.baseline);
            if evidence(&five_xx(&p, &o, &base)) >= threshold {
                rejected += 1;
                break;
            }
        }
    }
    rejected
}

#[test]
fn the_error_event_test_keeps_its_share_on_wandering_clustered_errors() {
    // Both versions at the same rate, 0.2% moved by the level: its null, R ≤ 1, at the edge.
    let threshold = tests(&policy()) / ALPHA;
    for (i, case) in CASES.into_iter().enumerate() {
        let rates = |level: f64| {
            let p = (0.002 * level.exp()).min(0.5);
            (p, p)
        };
        let r = five_xx_runs(case, 100 + i as u64, &rates, &|e| e.worse, threshold);
        within(r, 1.0 / threshold, &format!("error-event test, {case:?}"));
    }
}

#[test]
fn the_margin_test_keeps_its_share_on_wandering_clustered_errors() {
    // The canary at the stable version's rate plus max_increase, minute by minute.
    let p = policy();
    let threshold = tests(&p) / ALPHA;
    for (i, case) in CASES.into_iter().enumerate() {
        let rates = |level: f64| {
            let b = (0.002 * level.exp()).min(0.5);
            (b + p.errors.max_increase, b)
        };
        let r = five_xx_runs(case, 200 + i as u64, &rates, &|e| e.margin, threshold);
        within(r, 1.0 / threshold, &format!("margin test, {case:?}"));
    }
}

#[test]
fn the_ceiling_keeps_its_share_on_wandering_clustered_errors() {
    // Both versions at max_rate or below it: the level takes the rate down, never above.
    let p = policy();
    let threshold = tests(&p) / ALPHA;
    for (i, case) in CASES.into_iter().enumerate() {
        let rates = |level: f64| {
            let r = p.errors.max_rate * level.exp().min(1.0);
            (r, r)
        };
        let r = five_xx_runs(case, 300 + i as u64, &rates, &|e| e.ceiling, threshold);
        within(r, 1.0 / threshold, &format!("ceiling, {case:?}"));
    }
}

/// Runs of cold starts at the edge of the cold-start test's null: each one over the limit with
/// probability `0.5 × min(1, e^level)` for its minute, and the cold starts of one cluster (new
/// environments started together) all over it or all under it when `together`. Looked at every
/// 10-second period for an hour (EMF); how many runs reached `threshold`.
fn cold_runs(case: (f64, Clusters), seed: u64, together: bool, threshold: f64) -> u32 {
    let mut w = World::new(seed, case);
    let mut rejected = 0;
    for _ in 0..RUNS {
        w.level = w.stationary();
        let mut o = Observations {
            cold_limit_ms: Some(700.0),
            ..Observations::default()
        };
        let mut level = w.level;
        for i in 0..360 {
            if i % 6 == 0 {
                level = w.wander();
            }
            let q = 0.5 * level.exp().min(1.0);
            let (mut count, mut slow) = (0.0, 0.0);
            for _ in 0..w.rng.poisson(0.3) {
                let size = w.cluster();
                count += size;
                slow += if together {
                    if w.rng.uniform() < q {
                        size
                    } else {
                        0.0
                    }
                } else {
                    w.rng.binomial(size as u64, q) as f64
                };
            }
            o.cold.push(ColdStarts {
                start: i * 10,
                count,
                slow,
            });
            if cold_starts(&o, threshold).0.is_some_and(|e| e >= threshold) {
                rejected += 1;
                break;
            }
        }
    }
    rejected
}

#[test]
fn the_cold_start_test_keeps_its_share_on_wandering_clustered_cold_starts() {
    // Policies that judge cold starts (EMF, or Lambda Insights) split α five ways.
    let mut p = policy();
    p.metrics = crate::policy::MetricsSource::Lambda { insights: true };
    let threshold = tests(&p) / ALPHA;
    for (i, case) in CASES.into_iter().enumerate() {
        for together in [false, true] {
            let r = cold_runs(case, 400 + i as u64, together, threshold);
            let what = format!("cold-start test, {case:?}, clusters alike: {together}");
            within(r, 1.0 / threshold, &what);
        }
    }
}

/// Runs of an hour of one-minute looks at the tail test, both versions' share of slow requests
/// moved by the world's level; `shares(level)` gives the (canary, baseline) shares and `pick`
/// the test's evidence (the error-event part or the margin part). How many runs ever reached
/// `threshold`.
fn tail_runs(
    case: (f64, Clusters),
    seed: u64,
    (shares, max_increase): (&dyn Fn(f64) -> (f64, f64), f64),
    pick: &dyn Fn(&counts::Tail) -> f64,
    threshold: f64,
) -> u32 {
    let mut w = World::new(seed, case);
    let mut rejected = 0;
    for _ in 0..RUNS {
        w.level = w.stationary();
        let mut o = obs(Vec::new(), Vec::new());
        o.slow_ms = Some(400.0);
        for m in 0..60 {
            let level = w.wander();
            let (nc, nb) = traffic(&mut w);
            let (sc, sb) = shares(level);
            let share = nc * sc / (nc * sc + nb * sb);
            let (kc, kb) = w.split((nc, nb), (nc * sc + nb * sb) / (nc + nb), share);
            let sample = |n: f64, k: f64| Sample {
                slow: Some(k),
                ..minute(m * 60, n, 0.0, Some(80.0))
            };
            o.canary.push(sample(nc, kc));
            o.baseline.push(sample(nb, kb));
            if pick(&counts::slow_requests(
                &o,
                &|_| true,
                threshold,
                max_increase,
            )) >= threshold
            {
                rejected += 1;
                break;
            }
        }
    }
    rejected
}

#[test]
fn the_tail_test_keeps_its_share_on_wandering_clustered_slow_requests() {
    let p = policy();
    let threshold = tests(&p) / ALPHA;
    let m = p.latency.max_slow_increase;
    for (i, case) in CASES.into_iter().enumerate() {
        // Both versions at the same share, 1% moved by the level: the error-event part's null.
        let same = |level: f64| {
            let s = (0.01 * level.exp()).min(0.5);
            (s, s)
        };
        let r = tail_runs(case, 500 + i as u64, (&same, m), &|t| t.worse, threshold);
        within(
            r,
            1.0 / threshold,
            &format!("tail test, same share, {case:?}"),
        );
        // The canary max_slow_increase above the stable version: the margin part's null.
        let edge = |level: f64| {
            let s = (0.01 * level.exp()).min(0.5);
            (s + m, s)
        };
        let r = tail_runs(case, 600 + i as u64, (&edge, m), &|t| t.margin, threshold);
        within(
            r,
            1.0 / threshold,
            &format!("tail test, at the margin, {case:?}"),
        );
    }
}

/// What the bake's null runs hold the promoted version to.
#[derive(Clone, Copy, Debug)]
enum BakeEdge {
    /// The same version as the one it replaced: every rate and level goes on wandering as in
    /// the reference hour.
    Same,
    /// At the edge of each test's null: 5xx at the previous version's mean rate plus
    /// `max_increase`, slow requests at its mean share plus `max_slow_increase`, latency at
    /// `max_ratio` times its level, each taken down (never up) by the level from then on; and
    /// 5xx at `max_rate` taken down by it for the ceiling; each of those multiplied by the
    /// factor (1: the edge; more: a regression, to show the runs can reject).
    Edge(f64),
}

/// One minute of a version at about 1000 requests a minute: 5xx at `rate`, slow requests at
/// `slow`, in the world's clusters, and a p99 of `p99` ms.
fn bake_minute(w: &mut World, start: i64, (rate, slow, p99): (f64, f64, f64)) -> Sample {
    let (nc, nb) = traffic(w);
    let n = nc + nb;
    Sample {
        start,
        requests: n,
        errors: w.split((n, 0.0), rate.min(1.0), 1.0).0,
        latency_ms: Some(p99),
        slow: Some(w.split((n, 0.0), slow.min(1.0), 1.0).0),
    }
}

/// Runs of a 15-minute bake looked at every minute, after a reference hour of the previous
/// version, on the world's wander. How many runs reached the bake's threshold on each test:
/// (ceiling, increase, latency, slow requests).
fn bake_runs(case: (f64, Clusters), seed: u64, edge: BakeEdge) -> [u32; 4] {
    let p = policy();
    let mut w = World::new(seed, case);
    let mut rejected = [0; 4];
    // The previous version's mean 5xx rate and slow share (the level's mean is about 0 in
    // log, its exponential's mean e^(0.125) for a log-sd of 0.5).
    let mean = if case.0 > 0.0 { 0.125_f64.exp() } else { 1.0 };
    let (rate, slow, p99) = (0.002, 0.01, 250.0);
    let before = |level: f64, white: f64| {
        (
            rate * level.exp(),
            slow * level.exp(),
            p99 * (0.2 * level + white).exp(),
        )
    };
    for _ in 0..RUNS {
        w.level = w.stationary();
        let t0: i64 = 1_795_428_000;
        // Six hours of the previous version's p99 for the latency test's wander floor.
        let history: Vec<(i64, f64)> = (0..360)
            .map(|m| {
                let level = w.wander();
                let white = 0.02 * w.student();
                (t0 - 7 * 3600 + m * 60, before(level, white).2)
            })
            .collect();
        let mut o = Observations {
            step_start: t0,
            slow_ms: Some(400.0),
            latency_wander: wander(&history, 60),
            ..Observations::default()
        };
        for m in 0..60 {
            let level = w.wander();
            let white = 0.05 * w.student();
            let s = bake_minute(&mut w, t0 - 3600 + m * 60, before(level, white));
            o.baseline.push(s);
        }
        let mut at_ceiling = o.clone();
        let mut hit = [false; 4];
        for m in 0..15 {
            let level = w.wander();
            let white = 0.05 * w.student();
            let down = level.exp().min(1.0);
            let now = match edge {
                BakeEdge::Same => before(level, white),
                BakeEdge::Edge(f) => (
                    (rate * mean + p.errors.max_increase) * down * f,
                    (slow * mean + p.latency.max_slow_increase) * down * f,
                    p99 * p.latency.max_ratio * f * (0.2 * level.min(0.0) + white).exp(),
                ),
            };
            o.canary.push(bake_minute(&mut w, t0 + m * 60, now));
            let j = judge_bake(&p, &o);
            // The ceiling at its own edge: the same minutes with 5xx drawn at max_rate, taken
            // down by the level.
            let n = o.canary.last().map_or(0.0, |c| c.requests);
            let f = match edge {
                BakeEdge::Same => 1.0,
                BakeEdge::Edge(f) => f,
            };
            let errors = w.split((n, 0.0), p.errors.max_rate * down * f, 1.0).0;
            at_ceiling.canary.push(Sample {
                errors,
                ..*o.canary.last().expect("pushed")
            });
            let ceiling = match edge {
                BakeEdge::Same => j.ceiling_evidence,
                BakeEdge::Edge(_) => judge_bake(&p, &at_ceiling).ceiling_evidence,
            };
            let evidence = [
                ceiling,
                j.increase_evidence,
                j.latency_evidence,
                j.slow_evidence.unwrap_or(0.0),
            ];
            for (h, e) in hit.iter_mut().zip(evidence) {
                *h |= e >= j.threshold;
            }
        }
        for (r, h) in rejected.iter_mut().zip(hit) {
            *r += u32::from(h);
        }
    }
    rejected
}

#[test]
fn the_bakes_tests_keep_their_shares_on_wandering_clustered_minutes() {
    // Each test's share of α, half for its reference bound and half for its e-process.
    let share = ALPHA / tests(&policy());
    let names = ["ceiling", "increase", "latency", "slow requests"];
    for (i, case) in CASES.into_iter().enumerate() {
        for edge in [BakeEdge::Same, BakeEdge::Edge(1.0)] {
            let rejected = bake_runs(case, 700 + i as u64, edge);
            for (name, r) in names.iter().zip(rejected) {
                within(r, share, &format!("bake {name}, {edge:?}, {case:?}"));
            }
        }
        // The same runs do reject a version three times past every edge: with independent
        // events, in most runs on every test. (Heavy clusters carry less evidence than their
        // count; measured: ceiling 83% and 57%, increase 5% and 4%, latency 100% and 99%,
        // slow requests 32% and 20%.)
        let rejected = bake_runs(case, 800 + i as u64, BakeEdge::Edge(3.0));
        for (name, r) in names.iter().zip(rejected) {
            eprintln!("bake {name}, three times the edge, {case:?}: {r} of {RUNS}");
            if matches!(case.1, Clusters::None) {
                assert!(r > RUNS / 2, "bake {name}, {case:?}: {r} of {RUNS}");
            }
        }
    }
}
