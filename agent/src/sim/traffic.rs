//! The traffic model: requests, 5xx and handler time per version, span by span.
//!
//! Per version and span (a stretch of time in which nothing the model knows about changes):
//! - requests are Poisson at the alias rate (`rps`, times the scheduled rate change in force,
//!   times this minute's log-normal noise) times the version's share of the traffic;
//! - the version's own 5xx come in clusters: cluster starts are Binomial(requests, rate / size),
//!   sizes geometric with mean `error_bursts`, and a cluster longer than the span fails the
//!   version's next requests, so the mean rate stays `error_rate` (size 1 = independent 5xx);
//! - shared 5xx (an outage, a dependency blip) hit the version's other requests independently;
//! - handler time is lognormal around the version's median, moved by its drift (a log-level
//!   re-drawn every `drift.every`); `slow.share` of requests take `slow.add_ms` longer, and for
//!   `cold_start.for` after the version's share of traffic grows (the canary starts, a weight
//!   increase, a promotion or a rollback) `cold_start.share` of them take `cold_start.add_ms`
//!   longer. Every request belongs to one component of the period's [`Mixture`].

use super::latency::{Component, Mixture};
pub use super::rng::Rng;

/// A tail regression: a share of requests slower by a fixed amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slow {
    /// Share of requests affected, in [0, 1].
    pub share: f64,
    /// Milliseconds they take on top.
    pub add_ms: f64,
}

/// New execution environments warming up after the version's share of traffic grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdStart {
    /// Share of the version's requests affected during the warm-up, in [0, 1].
    pub share: f64,
    /// Milliseconds they take on top.
    pub add_ms: f64,
    /// How long the warm-up lasts, in seconds.
    pub secs: i64,
}

/// The version's latency level wandering: a log-scale offset re-drawn every `every_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// Standard deviation of the log-level offset (0 = no drift).
    pub sd: f64,
    /// Seconds between re-draws, counted from the traffic's origin.
    pub every_secs: i64,
}

/// How one build behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Build {
    /// Probability a request answers 5xx.
    pub error_rate: f64,
    /// Median latency in milliseconds.
    pub latency_median_ms: f64,
    /// Log-scale spread of latency (lognormal sigma).
    pub latency_sigma: f64,
    /// A tail regression, if any.
    pub slow: Option<Slow>,
    /// Warm-up after traffic grows, if any.
    pub cold_start: Option<ColdStart>,
    /// Mean size of a cluster of 5xx (1 = independent).
    pub error_bursts: f64,
    /// Latency-level drift.
    pub drift: Drift,
}

impl Build {
    /// A healthy build with the scenario defaults: 0.1% 5xx, 80 ms median, σ 0.5, nothing else.
    #[must_use]
    pub fn healthy() -> Self {
        Self {
            error_rate: 0.001,
            latency_median_ms: 80.0,
            latency_sigma: 0.5,
            slow: None,
            cold_start: None,
            error_bursts: 1.0,
            drift: Drift {
                sd: 0.0,
                every_secs: 300,
            },
        }
    }

    /// The median time of the build's cold starts (its median plus what a cold start adds), if
    /// it has any.
    #[must_use]
    pub fn cold_median(&self) -> Option<f64> {
        self.cold_start
            .map(|c| self.latency_median_ms + c.add_ms.max(0.0))
    }

    /// The `q` quantile of the build's warm handler time (its lognormal and its tail regression,
    /// no cold starts or drift): what CloudWatch would report as its p99 over an hour of steady
    /// traffic, for `q` = 0.99.
    #[must_use]
    pub fn warm_quantile(&self, q: f64) -> f64 {
        use statrs::distribution::ContinuousCDF;
        const WEIGHT: u64 = 1_000_000;
        let base = Component {
            mu: self.latency_median_ms.ln(),
            sigma: self.latency_sigma,
            add_ms: 0.0,
            count: WEIGHT,
        };
        let mut m = Mixture::default();
        let (share, add) = self.slow.map_or((0.0, 0.0), |s| (s.share, s.add_ms));
        let slow = (share.clamp(0.0, 1.0) * WEIGHT as f64).round() as u64;
        m.add(Component {
            count: WEIGHT - slow,
            ..base
        });
        m.add(Component {
            count: slow,
            add_ms: add,
            ..base
        });
        m.inverse_cdf(q)
    }
}

/// From `at` seconds after the origin on, the alias rate is `rps × factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateChange {
    /// Seconds after the origin.
    pub at: i64,
    /// Multiplier of the base rate (not of the previous change's rate).
    pub factor: f64,
}

/// A window in which both versions answer extra 5xx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// Seconds after the origin.
    pub at: i64,
    /// Length in seconds.
    pub secs: i64,
    /// Extra probability that a request answers 5xx.
    pub errors: f64,
}

/// The traffic both versions see.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Mean requests per second to the alias.
    pub rps: f64,
    /// Log-scale minute-to-minute noise on the request rate.
    pub rate_noise: f64,
    /// Log-scale minute-to-minute noise on the error rate, shared by both versions (a noisy dependency).
    pub error_noise: f64,
    /// Chance per minute of a shared error burst (a dependency blip that hits both versions).
    pub burst_chance: f64,
    /// Error rate during a burst (added to both versions).
    pub burst_error_rate: f64,
    /// Epoch second the schedule counts from (the deploy).
    pub origin: i64,
    /// Scheduled rate changes, by `at`.
    pub changes: Vec<RateChange>,
    /// Shared outages.
    pub outages: Vec<Outage>,
}

/// Shared conditions of one minute, drawn once and applied to both versions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteConditions {
    /// Multiplier of the request rate.
    pub rate_factor: f64,
    /// Multiplier of each version's own error rate (mean 1).
    pub error_factor: f64,
    /// Extra shared error probability (a dependency blip).
    pub burst: f64,
}

impl Traffic {
    /// Steady traffic at `rps` with ±10% minute-to-minute rate noise and nothing scheduled.
    #[must_use]
    pub fn steady(rps: f64) -> Self {
        Self {
            rps,
            rate_noise: 0.1,
            error_noise: 0.0,
            burst_chance: 0.0,
            burst_error_rate: 0.0,
            origin: 0,
            changes: Vec::new(),
            outages: Vec::new(),
        }
    }

    /// Draws the shared conditions of one minute.
    pub fn minute_conditions(&self, rng: &mut Rng) -> MinuteConditions {
        let burst = if rng.uniform() < self.burst_chance {
            self.burst_error_rate
        } else {
            0.0
        };
        MinuteConditions {
            rate_factor: (self.rate_noise * rng.normal()).exp(),
            error_factor: (self.error_noise * rng.normal() - self.error_noise.powi(2) / 2.0).exp(),
            burst,
        }
    }

    /// The scheduled rate multiplier in force at `t`.
    #[must_use]
    pub fn rate_factor_at(&self, t: i64) -> f64 {
        self.changes
            .iter()
            .filter(|c| self.origin + c.at <= t)
            .max_by_key(|c| c.at)
            .map_or(1.0, |c| c.factor)
    }

    /// The extra shared 5xx probability of the outages in force at `t`.
    #[must_use]
    pub fn outage_at(&self, t: i64) -> f64 {
        let ok: f64 = self
            .outages
            .iter()
            .filter(|o| (self.origin + o.at..self.origin + o.at + o.secs).contains(&t))
            .map(|o| 1.0 - o.errors)
            .product();
        1.0 - ok
    }

    /// The first time after `after` at which a rate change or an outage starts or ends.
    #[must_use]
    pub fn next_event(&self, after: i64) -> Option<i64> {
        let changes = self.changes.iter().map(|c| c.at);
        let outages = self.outages.iter().flat_map(|o| [o.at, o.at + o.secs]);
        changes
            .chain(outages)
            .map(|at| self.origin + at)
            .filter(|&t| t > after)
            .min()
    }

    /// Expected 5xx of `build` serving all traffic from `from` to `to` (for the rest of a run
    /// after a promotion): the schedule and the outages integrated, noise at its mean.
    #[must_use]
    pub fn expected_failures(&self, build: &Build, from: i64, to: i64) -> f64 {
        let noise_mean = (self.rate_noise * self.rate_noise / 2.0).exp();
        let blip = self.burst_chance * self.burst_error_rate;
        let mut total = 0.0;
        let mut t = from;
        while t < to {
            let end = self.next_event(t).map_or(to, |e| e.min(to));
            let shared = 1.0 - (1.0 - blip) * (1.0 - self.outage_at(t));
            let p = 1.0 - (1.0 - build.error_rate) * (1.0 - shared);
            total += self.rps * self.rate_factor_at(t) * noise_mean * (end - t) as f64 * p;
            t = end;
        }
        total
    }
}

/// What the model remembers of one version of one function between spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionState {
    /// The version's share of the alias's traffic at the last routing seen, in [0, 1].
    pub share: f64,
    /// The version warms up (cold starts) until this epoch second.
    pub warm_until: i64,
    /// Current drift epoch and its log-level offset.
    drift: Option<(i64, f64)>,
    /// Failures of an unfinished error cluster, owed by the version's next requests.
    pending_errors: u64,
}

impl VersionState {
    /// A version already serving `share` of the traffic, warm.
    #[must_use]
    pub fn serving(share: f64) -> Self {
        Self {
            share,
            ..Self::default()
        }
    }

    /// Notes the routing in force from `now`: a larger share than before starts a warm-up.
    pub fn route(&mut self, share: f64, now: i64, build: &Build) {
        if share > self.share {
            if let Some(cold) = build.cold_start {
                self.warm_until = self.warm_until.max(now + cold.secs);
            }
        }
        self.share = share;
    }

    /// The first time after `now` at which this version's behaviour changes by itself (its
    /// warm-up ends, its drift is re-drawn).
    #[must_use]
    pub fn next_change(&self, build: &Build, origin: i64, now: i64) -> Option<i64> {
        let warm = (self.warm_until > now).then_some(self.warm_until);
        let drift = (build.drift.sd > 0.0 && self.share > 0.0).then(|| {
            let every = build.drift.every_secs.max(1);
            origin + ((now - origin).div_euclid(every) + 1) * every
        });
        warm.into_iter().chain(drift).min()
    }

    fn drift_offset(&mut self, rng: &mut Rng, drift: Drift, origin: i64, t: i64) -> f64 {
        if drift.sd <= 0.0 {
            return 0.0;
        }
        let epoch = (t - origin).div_euclid(drift.every_secs.max(1));
        match self.drift {
            Some((e, offset)) if e == epoch => offset,
            _ => {
                let offset = drift.sd * rng.normal();
                self.drift = Some((epoch, offset));
                offset
            }
        }
    }
}

/// The 5xx among `n` requests of a version whose own rate is `p` in clusters of mean size
/// `mean_size`; `pending` carries the failures a cluster still owes into the version's next
/// requests (so the long-run rate is `p` whatever the cluster size).
pub fn clustered_errors(rng: &mut Rng, n: u64, p: f64, mean_size: f64, pending: &mut u64) -> u64 {
    let size = mean_size.max(1.0);
    let starts = rng.binomial(n, (p / size).min(1.0));
    let owed = pending.saturating_add(rng.geometric_sum(starts, size));
    let errors = owed.min(n);
    *pending = owed - errors;
    errors
}

/// One span of one version: when, how much traffic, under which shared conditions.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// The traffic.
    pub traffic: &'a Traffic,
    /// This minute's shared conditions.
    pub conditions: MinuteConditions,
    /// Start, epoch seconds.
    pub from: i64,
    /// End (exclusive), epoch seconds.
    pub to: i64,
}

/// What one version served in one span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests.
    pub requests: u64,
    /// 5xx answered.
    pub errors: u64,
}

/// Serves `span` for a version running `build` with `state.share` of the traffic; adds the
/// handler times of its warm requests to `warm` and of its cold starts to `first`.
pub fn serve(
    rng: &mut Rng,
    span: &Span<'_>,
    build: &Build,
    state: &mut VersionState,
    warm: &mut Mixture,
    first: &mut Mixture,
) -> Served {
    let (traffic, cond) = (span.traffic, span.conditions);
    let seconds = (span.to - span.from) as f64;
    let rate = traffic.rps * traffic.rate_factor_at(span.from) * cond.rate_factor * state.share;
    let n = rng.poisson(rate * seconds);
    if n == 0 {
        return Served::default();
    }
    let own_rate = (build.error_rate * cond.error_factor).min(1.0);
    let own = clustered_errors(
        rng,
        n,
        own_rate,
        build.error_bursts,
        &mut state.pending_errors,
    );
    let shared_rate = 1.0 - (1.0 - cond.burst) * (1.0 - traffic.outage_at(span.from));
    let shared = rng.binomial(n - own, shared_rate);
    let offset = state.drift_offset(rng, build.drift, traffic.origin, span.from);
    let base = Component {
        mu: build.latency_median_ms.ln() + offset,
        sigma: build.latency_sigma,
        add_ms: 0.0,
        count: 0,
    };
    let cold = build.cold_start.filter(|_| span.from < state.warm_until);
    let (cold_share, cold_ms) = cold.map_or((0.0, 0.0), |c| (c.share, c.add_ms));
    let (slow_share, slow_ms) = build.slow.map_or((0.0, 0.0), |s| (s.share, s.add_ms));
    let n_cold = rng.binomial(n, cold_share);
    for (count, add, mixture) in [(n_cold, cold_ms, first), (n - n_cold, 0.0, warm)] {
        let slow = rng.binomial(count, slow_share);
        mixture.add(Component {
            add_ms: add + slow_ms,
            count: slow,
            ..base
        });
        mixture.add(Component {
            add_ms: add,
            count: count - slow,
            ..base
        });
    }
    Served {
        requests: n,
        errors: own + shared,
    }
}

/// A version's per-minute latency statistic over the `minutes` minutes before `until`, as
/// CloudWatch would hold it: `build` serving all of the steady traffic (minute-to-minute rate
/// noise, no scheduled changes), warm, its level drifting as its build says. What the agent
/// reads of the stable version before a canary to measure its wander.
pub fn history(
    rng: &mut Rng,
    traffic: &Traffic,
    build: &Build,
    stat: crate::policy::LatencyStat,
    until: i64,
    minutes: u32,
) -> Vec<(i64, f64)> {
    let steady = Traffic {
        changes: Vec::new(),
        outages: Vec::new(),
        ..traffic.clone()
    };
    let mut state = VersionState::serving(1.0);
    let first = until.div_euclid(60) * 60 - i64::from(minutes) * 60;
    (0..i64::from(minutes))
        .filter_map(|m| {
            let from = first + m * 60;
            let span = Span {
                traffic: &steady,
                conditions: steady.minute_conditions(rng),
                from,
                to: from + 60,
            };
            let (mut warm, mut cold) = (Mixture::default(), Mixture::default());
            serve(rng, &span, build, &mut state, &mut warm, &mut cold);
            warm.statistic(rng, stat).map(|v| (from, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_keep_the_mean_rate_and_cluster_the_errors() {
        let mut r = Rng::new(5);
        let per_minute = |r: &mut Rng, size: f64| {
            let mut pending = 0;
            (0..20_000)
                .map(|_| clustered_errors(r, 600, 0.01, size, &mut pending) as f64)
                .collect::<Vec<_>>()
        };
        let stats = |xs: &[f64]| {
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
            (m, v)
        };
        let (m1, v1) = stats(&per_minute(&mut r, 1.0));
        let (m10, v10) = stats(&per_minute(&mut r, 10.0));
        assert!((m1 - 6.0).abs() < 0.1, "{m1}");
        assert!((m10 - 6.0).abs() < 0.3, "{m10}");
        // Independent 5xx: variance ≈ mean; clusters of mean 10: far more (≈ mean × (2·10 − 1)).
        assert!((v1 / m1 - 1.0).abs() < 0.1, "{v1}");
        assert!(v10 / m10 > 10.0, "{v10}");
    }

    #[test]
    fn schedule_changes_rates_and_outages_in_their_windows() {
        let t = Traffic {
            origin: 1000,
            changes: vec![
                RateChange {
                    at: 60,
                    factor: 0.1,
                },
                RateChange {
                    at: 300,
                    factor: 3.0,
                },
            ],
            outages: vec![Outage {
                at: 120,
                secs: 600,
                errors: 0.03,
            }],
            ..Traffic::steady(10.0)
        };
        assert_eq!(t.rate_factor_at(1059), 1.0);
        assert_eq!(t.rate_factor_at(1060), 0.1);
        assert_eq!(t.rate_factor_at(1400), 3.0);
        assert_eq!(t.outage_at(1119), 0.0);
        assert!((t.outage_at(1120) - 0.03).abs() < 1e-12);
        assert_eq!(t.outage_at(1720), 0.0);
        assert_eq!(t.next_event(0), Some(1060));
        assert_eq!(t.next_event(1300), Some(1720));
        assert_eq!(t.next_event(1720), None);
    }

    #[test]
    fn warm_up_starts_when_the_share_grows_and_not_when_it_shrinks() {
        let build = Build {
            cold_start: Some(ColdStart {
                share: 0.1,
                add_ms: 500.0,
                secs: 120,
            }),
            ..Build::healthy()
        };
        let mut s = VersionState::default();
        s.route(0.1, 100, &build);
        assert_eq!(s.warm_until, 220);
        assert_eq!(s.next_change(&build, 0, 100), Some(220));
        s.route(0.05, 400, &build);
        assert_eq!(s.warm_until, 220);
        s.route(0.25, 500, &build);
        assert_eq!(s.warm_until, 620);
    }
}
