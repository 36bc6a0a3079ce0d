//! Flagger's canary analysis with its two built-in metric checks.
//!
//! Configuration: the canonical example of Flagger's README and `docs/gitbook/usage/how-it-works.md`
//! (fluxcd/flagger): `interval: 1m`, `threshold: 10`, `maxWeight: 50`, `stepWeight: 5`,
//! `request-success-rate` `thresholdRange.min: 99` and `request-duration` `thresholdRange.max: 500`
//! (ms), both over `interval: 1m`. The code default of `threshold` is 1
//! (`Canary.GetAnalysisThreshold`, `pkg/apis/flagger/v1beta1/canary.go`); the tutorials mostly use
//! 5 with `stepWeight: 10` (Istio, Linkerd, Contour, Gloo, Kuma, Gateway API); the README and the
//! usage pages use 10 with `stepWeight: 5` (or 2), which is what this runs.
//!
//! Semantics, from `pkg/controller/scheduler.go` (`advanceCanary`) and
//! `pkg/controller/scheduler_metrics.go` (`runBuiltinMetricChecks`):
//! - Every `interval` the controller first rolls back if `FailedChecks >= threshold`, so a
//!   rollback lands on the interval after the threshold is reached.
//! - The interval that detects a new revision only scales the canary deployment up
//!   (`checkCanaryStatus`); a Lambda version needs no scaling, so here the first tick goes
//!   straight to the next interval's work: it sets the canary weight to the first step (no
//!   analysis). Later intervals run the checks: any failing check increments `FailedChecks` (never
//!   reset during the analysis: failures accumulate, they need not be consecutive) and holds the
//!   weight; a pass adds the next step while the weight is below `maxWeight`, and at `maxWeight`
//!   promotes.
//! - `request-success-rate` is the percentage of non-5xx requests over the last `interval`; it
//!   fails when below `min`. `request-duration` is the p99 (`histogram_quantile(0.99, …)`) over the
//!   last `interval`, truncated to whole milliseconds; it fails when above `max`.
//! - No data is a failed check: a query without values (a NaN rate when the canary served no
//!   request) returns `ErrNoValuesFound` (`pkg/metrics/providers/prometheus.go`) and the check
//!   returns false.
//!
//! On the benchmark's 60 s source "the last `interval`" is the newest one-minute period visible
//! at the tick; right after the canary starts that period predates it, so the first check fails
//! for lack of data, as Flagger on a metrics source with a minute of delay would.

use super::{newest_period, period, promote, roll_back, route, weight, Contender, End, Footing};
use crate::judge::Sample;
use crate::sim::Shared;

/// A Flagger `analysis` block with the built-in checks' thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct FlaggerConfig {
    /// `threshold`: failed checks that trigger a rollback.
    pub threshold: u32,
    /// The canary weights in order (`stepWeight` up to `maxWeight`, or `stepWeights`); the last is
    /// `maxWeight`.
    pub weights: Vec<f64>,
    /// `request-success-rate` `thresholdRange.min`, percent.
    pub min_success_rate: f64,
    /// `request-duration` `thresholdRange.max`, milliseconds.
    pub max_duration_ms: f64,
}

impl FlaggerConfig {
    /// The README / "How it works" example: threshold 10, stepWeight 5, maxWeight 50.
    #[must_use]
    pub fn documented() -> Self {
        Self {
            threshold: 10,
            weights: (1..=10).map(|k| 5.0 * f64::from(k)).collect(),
            min_success_rate: 99.0,
            max_duration_ms: 500.0,
        }
    }

    /// The same with a 10% first step (`stepWeights: [10, 15, …, 50]`), for equal footing.
    #[must_use]
    pub fn equal_footing() -> Self {
        Self {
            weights: (2..=10).map(|k| 5.0 * f64::from(k)).collect(),
            ..Self::documented()
        }
    }

    /// The configuration for `footing`.
    #[must_use]
    pub fn for_footing(footing: Footing) -> Self {
        match footing {
            Footing::Documented => Self::documented(),
            Footing::Equal => Self::equal_footing(),
        }
    }

    /// Row label of the built-in table.
    #[must_use]
    pub fn label(&self) -> String {
        format!(
            "Flagger (1m checks: success >= {}%, p99 <= {} ms; threshold {}, steps {}..{})",
            self.min_success_rate,
            self.max_duration_ms,
            self.threshold,
            self.weights.first().copied().unwrap_or(0.0),
            self.weights.last().copied().unwrap_or(0.0),
        )
    }

    /// Whether the built-in checks pass on the canary's datapoint for the last interval (`None`:
    /// no data, a failed check).
    #[must_use]
    pub fn checks_pass(&self, canary: Option<&Sample>) -> bool {
        let Some(s) = canary.filter(|s| s.requests > 0.0) else {
            return false;
        };
        let success = 100.0 * (s.requests - s.errors) / s.requests;
        if success < self.min_success_rate {
            return false;
        }
        s.latency_ms
            .is_some_and(|ms| ms.trunc() <= self.max_duration_ms)
    }

    /// The weight after `current` (`None` at `maxWeight`: promote).
    fn next_weight(&self, current: f64) -> Option<f64> {
        self.weights.iter().copied().find(|&w| w > current)
    }
}

/// A Flagger canary: its configuration and failed-check counter.
#[derive(Debug)]
pub struct Flagger {
    config: FlaggerConfig,
    failed: u32,
}

impl Flagger {
    /// A canary analysis not yet started.
    #[must_use]
    pub fn new(config: FlaggerConfig) -> Self {
        Self { config, failed: 0 }
    }
}

impl Contender for Flagger {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(current) = weight(world) else {
            route(world, self.config.weights.first().copied().unwrap_or(100.0));
            return End::Running;
        };
        if self.failed >= self.config.threshold {
            return roll_back(world);
        }
        let last = period(world, 2, newest_period(world, now), now);
        if !self.config.checks_pass(last.as_ref()) {
            self.failed += 1;
            return End::Running;
        }
        match self.config.next_weight(current) {
            Some(next) => {
                route(world, next);
                End::Running
            }
            None => promote(world),
        }
    }
}
