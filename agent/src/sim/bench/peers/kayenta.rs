//! Kayenta's NetflixACAJudge, scheduled as Spinnaker's Orca runs a canary analysis stage.
//!
//! Sources (spinnaker/kayenta and spinnaker/orca):
//! - Metric classification: [`super::mann_whitney`] (`NetflixACAJudge.classifyMetric`,
//!   `MannWhitneyClassifier`), confidence 0.98 and tolerance 0.25 as NetflixACAJudge builds it.
//! - Scoring: `kayenta-judge/.../scorers/WeightedSumScorer.scala`: a critical metric that is not
//!   `Pass` scores the canary 0; so do ≥ 50% of metrics without data; otherwise each group
//!   scores `Pass / (Pass + High + Low)` × 100 (a group with no such metric counts 100), and the
//!   groups are weighted (equally when the config gives no weights), rounded to 2 decimals.
//! - Schedule and thresholds: `orca-kayenta/.../pipeline/RunCanaryIntervalsStage.kt` waits one
//!   interval, then judges the scope from the stage start to now (no lookback: every judgment
//!   sees all data since the start), `lifetime / interval` times, at the scope's `step` (60 s);
//!   `tasks/MonitorKayentaCanaryTask.kt` fails the stage when a judgment scores ≤ `marginal`;
//!   `tasks/AggregateCanaryResultsTask.kt` then requires the last judgment to score ≥ `pass`.
//!   Defaults `pass 75`, `marginal 50` (`KayentaCanaryContext.kt`). Each interval is judged
//!   afresh at the same confidence: no correction for the repeated looks.
//!
//! The canary config (ours; Kayenta has no default metrics): two metrics in their own groups,
//! no group weights (50/50), `nanStrategy` at its default (`remove`):
//! - `5xx rate` (errors / requests per minute): `direction: increase`, `critical: true` (the docs
//!   recommend it "for important metrics that signal service outages"), effect sizes at their
//!   defaults (1.0);
//! - `latency p99` (the minute's p99): `direction: increase`, `outliers: {strategy: remove,
//!   outlierFactor: 3.0}` (the docs' outlier example is a latency graph; the code default is
//!   `keep`), `effectSize.allowedIncrease: 1.1` (the docs' example: fail only on a ≥ 10% increase).
//!
//! The schedule (ours, scaled to the benchmark's hour): 10% of traffic to the new version for a
//! 15-minute lifetime judged every 5 minutes, no warm-up. Spinnaker's best practices suggest
//! 3 hours judged hourly, which no run of an hour could finish; the shape (three judgments,
//! cumulative scope) is theirs.

use super::mann_whitney::{Classification, Direction, Label, MetricConfig, NETFLIX_ACA};
use super::{promote, roll_back, route, visible, Contender, End};
use crate::judge::Sample;
use crate::sim::rng::Rng;
use crate::sim::Shared;

/// Percent of traffic the new version gets for the whole analysis.
pub const WEIGHT: f64 = 10.0;

/// Seconds between judgments (`canaryAnalysisIntervalMins`).
pub const INTERVAL_SECS: i64 = 300;

/// Judgments in the analysis (`lifetime / interval`).
pub const INTERVALS: i64 = 3;

/// Orca's default `scoreThresholds.pass`.
pub const PASS: f64 = 75.0;

/// Orca's default `scoreThresholds.marginal`.
pub const MARGINAL: f64 = 50.0;

/// The 5xx-rate metric's configuration.
pub const ERRORS: MetricConfig = MetricConfig {
    direction: Direction::Increase,
    critical: true,
    outlier_factor: None,
    allowed_increase: 1.0,
    allowed_decrease: 1.0,
    critical_increase: 1.0,
    critical_decrease: 1.0,
};

/// The p99-latency metric's configuration.
pub const LATENCY: MetricConfig = MetricConfig {
    direction: Direction::Increase,
    critical: false,
    outlier_factor: Some(3.0),
    allowed_increase: 1.1,
    allowed_decrease: 1.0,
    critical_increase: 1.0,
    critical_decrease: 1.0,
};

/// One metric's classification and the group it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricResult {
    /// The metric's group (`groups` in the canary config).
    pub group: &'static str,
    /// Its classification.
    pub classification: Classification,
}

/// `WeightedSumScorer.score` with no configured group weights: the canary's 0–100 score.
#[must_use]
pub fn score(results: &[MetricResult]) -> f64 {
    if results
        .iter()
        .any(|r| r.classification.critical && r.classification.label != Label::Pass)
    {
        return 0.0;
    }
    let no_data = results
        .iter()
        .filter(|r| r.classification.label == Label::NoData)
        .count();
    if results.is_empty() || no_data as f64 / results.len() as f64 * 100.0 >= 50.0 {
        return 0.0;
    }
    let mut groups: Vec<&str> = results.iter().map(|r| r.group).collect();
    groups.sort_unstable();
    groups.dedup();
    let weight = 100.0 / groups.len() as f64;
    let total: f64 = groups
        .iter()
        .map(|g| {
            let labels = results.iter().filter(|r| r.group == *g);
            let judged = labels
                .clone()
                .filter(|r| {
                    matches!(
                        r.classification.label,
                        Label::Pass | Label::High | Label::Low
                    )
                })
                .count();
            let passed = labels
                .filter(|r| r.classification.label == Label::Pass)
                .count();
            let group_score = if judged == 0 {
                100.0
            } else {
                passed as f64 / judged as f64 * 100.0
            };
            group_score * weight / 100.0
        })
        .sum();
    (total * 100.0).round() / 100.0
}

/// What Orca does with judgment `index` (1-based) of `of` scoring `score`: `Some(true)` promote,
/// `Some(false)` fail the stage (roll back), `None` wait for the next interval.
#[must_use]
pub fn orca_decision(score: f64, index: i64, of: i64) -> Option<bool> {
    if score <= MARGINAL {
        return Some(false);
    }
    (index >= of).then_some(score >= PASS)
}

/// Judges the canary's and the baseline's per-minute series: (5xx rate, p99 latency) results.
#[must_use]
pub fn judge(canary: &[Sample], baseline: &[Sample], rng: &mut Rng) -> [MetricResult; 2] {
    let rate = |xs: &[Sample]| -> Vec<f64> {
        xs.iter()
            .map(|s| {
                if s.requests > 0.0 {
                    s.errors / s.requests
                } else {
                    f64::NAN
                }
            })
            .collect()
    };
    let p99 = |xs: &[Sample]| -> Vec<f64> {
        xs.iter()
            .map(|s| s.latency_ms.unwrap_or(f64::NAN))
            .collect()
    };
    let mut noise = || rng.normal();
    [
        MetricResult {
            group: "errors",
            classification: NETFLIX_ACA.classify(
                &rate(baseline),
                &rate(canary),
                &ERRORS,
                &mut noise,
            ),
        },
        MetricResult {
            group: "latency",
            classification: NETFLIX_ACA.classify(
                &p99(baseline),
                &p99(canary),
                &LATENCY,
                &mut noise,
            ),
        },
    ]
}

/// A Kayenta canary stage: its start and its own random source (Kayenta's jitter).
#[derive(Debug)]
pub struct Kayenta {
    started: Option<i64>,
    rng: Rng,
}

impl Kayenta {
    /// A stage not yet started.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            started: None,
            rng: Rng::new(seed ^ 0x006b_6179_656e_7461),
        }
    }
}

impl Contender for Kayenta {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(start) = self.started else {
            route(world, WEIGHT);
            self.started = Some(now);
            return End::Running;
        };
        let elapsed = now - start;
        if elapsed <= 0 || elapsed % INTERVAL_SECS != 0 {
            return End::Running;
        }
        // The scope: every one-minute period overlapping [start, now) the store can show now.
        let scope = |v| -> Vec<Sample> {
            visible(world, v, now)
                .into_iter()
                .filter(|s| s.start > start - 60 && s.start < now)
                .collect()
        };
        let results = judge(&scope(2), &scope(1), &mut self.rng);
        match orca_decision(score(&results), elapsed / INTERVAL_SECS, INTERVALS) {
            Some(true) => promote(world),
            Some(false) => roll_back(world),
            None => End::Running,
        }
    }
}
