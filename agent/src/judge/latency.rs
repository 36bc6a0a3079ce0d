//! The latency test: per-period log ratios of the canary's statistic to its limit, tested with a
//! normal mixture, and the warm-up rule that decides which periods it may see.

use super::Observations;
use crate::policy::{Policy, LATENCY_PERIODS_AT_STEP, LATENCY_PERIODS_IN_ALL};

/// Per-observation variance floor for the latency test (log scale).
///
/// Depends on the statistic: a median of ≥ 20 requests is precise, a tail statistic is not.
pub(super) fn latency_var_floor(stat: crate::policy::LatencyStat) -> f64 {
    use crate::policy::LatencyStat as S;
    match stat {
        S::P50 | S::Average => 0.01,
        S::P90 | S::P95 => 0.02,
        S::P99 | S::P999 | S::Maximum => 0.04,
    }
}
/// Mixing variance of the latency effect (log scale).
pub(super) const LATENCY_TAU2: f64 = 0.05;
/// Canary requests behind one latency observation: short periods are pooled until they reach it,
/// so a statistic of two or three requests never counts as a point on its own.
pub(super) const LATENCY_MIN_REQUESTS: f64 = 20.0;

/// The latency limit over a baseline statistic: `max_ratio` times it, at least `min_increase_ms`
/// more, at most `max_ms`; `max_ms` alone with no baseline.
pub(super) fn latency_limit(lat: &crate::policy::LatencyRule, baseline: Option<f64>) -> f64 {
    let relative = baseline
        .filter(|&b| b > 0.0)
        .map(|b| (b * lat.max_ratio).max(b + lat.min_increase_ms));
    relative.map_or(lat.max_ms, |r| r.min(lat.max_ms))
}

/// Per-observation `ln(canary / limit)` for the latency test, pooling consecutive periods (a
/// request-weighted mean of the log statistic of each version) until each observation rests on
/// at least [`LATENCY_MIN_REQUESTS`] canary requests, with the number of periods pooled. An
/// observation whose periods the baseline did not serve is held against `fallback` (the bake's
/// reference statistic), or `max_ms`.
fn latency_diffs(
    policy: &Policy,
    obs: &Observations,
    warm: &dyn Fn(i64) -> bool,
    fallback: Option<f64>,
) -> Vec<(f64, u32)> {
    let lat = policy.latency;
    let limit = |baseline: Option<f64>| latency_limit(&lat, baseline.or(fallback));
    let mut diffs = Vec::new();
    let (mut n, mut log_c, mut nb, mut log_b, mut pooled) = (0.0, 0.0, 0.0, 0.0, 0_u32);
    for c in &obs.canary {
        let Some(cl) = c
            .latency_ms
            .filter(|&l| l > 0.0 && c.requests > 0.0 && warm(c.start))
        else {
            continue;
        };
        n += c.requests;
        log_c += c.requests * cl.ln();
        pooled = pooled.saturating_add(1);
        if let Some((bn, bl)) = obs.baseline_at(c.start).and_then(|b| {
            b.latency_ms
                .filter(|&l| l > 0.0 && b.requests > 0.0)
                .map(|l| (b.requests, l))
        }) {
            nb += bn;
            log_b += bn * bl.ln();
        }
        if n >= LATENCY_MIN_REQUESTS {
            let baseline = (nb > 0.0).then(|| (log_b / nb).exp());
            diffs.push((log_c / n - limit(baseline).ln(), pooled));
            (n, log_c, nb, log_b, pooled) = (0.0, 0.0, 0.0, 0.0, 0);
        }
    }
    diffs
}

/// The latency test's evidence and how many observations it rests on. `versions` is how many
/// wandering levels each observation differs by: 2 against the concurrent baseline (each
/// version's level wanders on its own), 1 against a fixed reference (the bake).
pub(super) fn latency_evidence(
    policy: &Policy,
    obs: &Observations,
    warm: &dyn Fn(i64) -> bool,
    fallback: Option<f64>,
    versions: f64,
) -> (f64, usize) {
    let diffs = latency_diffs(policy, obs, warm, fallback);
    let values: Vec<f64> = diffs.iter().map(|&(d, _)| d).collect();
    let period = policy.metrics.period_secs().max(1) as f64;
    let secs: Vec<f64> = diffs.iter().map(|&(_, k)| f64::from(k) * period).collect();
    let wander = obs.latency_wander.unwrap_or(ASSUMED_WANDER);
    let floor = latency_var_floor(policy.latency.stat).max(wander_floor(wander, versions, &secs));
    (mixture_evidence(&values, floor), values.len())
}

/// The per-observation variance a `wander` (log² × seconds) implies for observations of
/// `secs` seconds each, differing by `versions` wandering levels. An observation over s
/// seconds has its level's variance at most w / s (a positively correlated level averages out
/// no faster); the mean of those is the variance of the observations' mean times their number.
pub(super) fn wander_floor(wander: f64, versions: f64, secs: &[f64]) -> f64 {
    if secs.is_empty() {
        return 0.0;
    }
    let inverse = secs.iter().map(|s| 1.0 / s.max(1.0)).sum::<f64>() / secs.len() as f64;
    versions * wander * inverse
}

/// The wander (log² × seconds) the latency test assumes of each version when the hours before
/// the canary give none ([`wander`] is `None`: fewer than [`WANDER_MIN_POINTS`] minutes with a
/// statistic, on the stable version and on every version together). A few periods of the
/// canary's own cannot tell a slow wander from a shift, so without it the test would be too
/// eager on autocorrelated latency (measured: 7.4% of null runs at AR(1) 0.8 against a share
/// of 0.25%). Twice the wander of the production scenarios' per-version drift (a level
/// re-drawn with log-sd 0.1 every 5 minutes: 0.1² × 300 = 3); its price is a slower latency
/// test in that case (BENCHMARKS.md, "The latency test without history").
pub const ASSUMED_WANDER: f64 = 6.0;

/// The hours of the stable version's per-minute latency statistic read before a canary, to
/// measure how much its level wanders ([`wander`]).
pub const WANDER_SECS: i64 = 6 * 3600;
/// Fewest points [`wander`] fits; with fewer the latency test assumes [`ASSUMED_WANDER`].
pub const WANDER_MIN_POINTS: usize = 30;

/// How much a version's latency level wanders by itself: the long-run variance of the log of
/// its per-period statistic, per second (log² × seconds), fitted on the stable version's
/// `(start, statistic)` series from the hours before the canary. A linear trend (the day's
/// traffic ramping) is taken out first; what is left is fitted as AR(1) over neighbouring
/// periods `period_secs` apart, as in `long_run_variance`. `None` with fewer than
/// [`WANDER_MIN_POINTS`] positive points, or with points that do not fit.
///
/// The latency test's per-observation variance is then never below what this wander implies
/// (twice it against the concurrent baseline): a canary's level is assumed to wander no more
/// than the stable version's did. A few periods of its own cannot tell a slow wander from a
/// shift; hours of the stable version's can.
#[must_use]
pub fn wander(points: &[(i64, f64)], period_secs: i64) -> Option<f64> {
    let mut ys: Vec<(i64, f64)> = points
        .iter()
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .map(|&(t, v)| (t, v.ln()))
        .collect();
    ys.sort_by_key(|&(t, _)| t);
    ys.dedup_by_key(|&mut (t, _)| t);
    if ys.len() < WANDER_MIN_POINTS || period_secs <= 0 {
        return None;
    }
    let n = ys.len() as f64;
    let t0 = ys[0].0;
    let ts: Vec<f64> = ys
        .iter()
        .map(|&(t, _)| t.saturating_sub(t0) as f64)
        .collect();
    let mean_t = ts.iter().sum::<f64>() / n;
    let mean_y = ys.iter().map(|&(_, y)| y).sum::<f64>() / n;
    let stt: f64 = ts.iter().map(|t| (t - mean_t).powi(2)).sum();
    let sty: f64 = ts
        .iter()
        .zip(&ys)
        .map(|(t, &(_, y))| (t - mean_t) * (y - mean_y))
        .sum();
    let slope = if stt > 0.0 { sty / stt } else { 0.0 };
    let resid: Vec<f64> = ts
        .iter()
        .zip(&ys)
        .map(|(t, &(_, y))| y - mean_y - slope * (t - mean_t))
        .collect();
    let g0 = resid.iter().map(|e| e * e).sum::<f64>() / n;
    let (mut g1, mut pairs) = (0.0, 0.0);
    for i in 1..ys.len() {
        if ys[i].0.saturating_sub(ys[i - 1].0) == period_secs {
            g1 += resid[i] * resid[i - 1];
            pairs += 1.0;
        }
    }
    let r = if pairs > 0.0 && g0 > 0.0 {
        g1 / pairs / g0
    } else {
        0.0
    };
    // One standard error up (Bartlett: √((1 − ρ²)/n)): hours of a slow wander are still few
    // independent stretches, and an underestimate is what would make the test too eager.
    let r = r + ((1.0 - r * r).max(0.0) / n).sqrt();
    let w = g0 * ar1_factor(r, n, 0.98) * period_secs as f64;
    w.is_finite().then_some(w)
}

/// The AR(1) long-run variance factor (1 + ρ)/(1 − ρ) for a lag-1 autocorrelation `r` measured
/// on `n` points: corrected for its small-sample bias (Kendall: about −(1 + 3ρ)/n) and kept in
/// [0, `most`] (a short series cannot tell a higher one from a trend).
fn ar1_factor(r: f64, n: f64, most: f64) -> f64 {
    let rho = (r + (1.0 + 3.0 * r) / n).clamp(0.0, most);
    (1.0 + rho) / (1.0 - rho)
}

/// A canary share of requests this many times the largest before it is a weight increase.
pub(super) const SHARE_GROWTH: f64 = 1.25;

/// Whether a period starting at a time is past every warm-up: not within `warmup` seconds of a
/// weight increase. Increases are the current step's start (exact) and every period whose
/// canary share of requests grew to [`SHARE_GROWTH`] times the largest before it (the canary
/// started, or its weight went up; such a period counts from its end, since the increase
/// happened somewhere inside it). The shares depend on routing, not on latency, so skipping
/// these periods keeps the latency tests anytime-valid.
pub(super) fn warm_periods(obs: &Observations, warmup: i64) -> impl Fn(i64) -> bool {
    // Windows [from, until) in which periods are still warming up.
    let mut windows = Vec::new();
    if warmup > 0 {
        windows.push((obs.step_start, obs.step_start.saturating_add(warmup)));
        let mut largest = 0.0_f64;
        let mut previous: Option<i64> = None;
        for c in &obs.canary {
            let nb = obs
                .baseline_at(c.start)
                .map_or(0.0, |b| b.requests.max(0.0));
            let nc = c.requests.max(0.0);
            if nc + nb <= 0.0 {
                continue;
            }
            let share = nc / (nc + nb);
            if share > 0.0 && share >= SHARE_GROWTH * largest {
                // The period is as long as the gap since the one before (a minute for the first).
                let length = previous.map_or(60, |p| c.start.saturating_sub(p).clamp(1, 3600));
                windows.push((
                    c.start,
                    c.start.saturating_add(length).saturating_add(warmup),
                ));
            }
            largest = largest.max(share);
            previous = Some(c.start);
        }
    }
    move |start: i64| {
        !windows
            .iter()
            .any(|&(from, until)| (from..until).contains(&start))
    }
}

/// Long-run variance of `d` around its mean: the variance of the mean times n when neighbouring
/// observations are correlated (a version's latency level that wanders for minutes). Fitted as
/// an AR(1) process (Andrews, 1991): the lag-1 autocorrelation, corrected for its small-sample
/// bias (Kendall: about −(1 + 3ρ)/n) and kept in [0, 0.95], scales the variance by
/// (1 + ρ)/(1 − ρ). Never below the plain variance.
pub(super) fn long_run_variance(d: &[f64], mean: f64) -> f64 {
    let n = d.len() as f64;
    let g0 = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    if g0 <= 0.0 {
        return 0.0;
    }
    let g1 = d
        .iter()
        .zip(&d[1..])
        .map(|(a, b)| (a - mean) * (b - mean))
        .sum::<f64>()
        / n;
    g0 * ar1_factor(g1 / g0, n, 0.95)
}

/// Normal-mixture SPRT evidence that the mean of `d` is above 0 (one-sided; Johari, Pekelis &
/// Walsh, "Always valid inference", 2017), with the per-observation variance taken as the
/// long-run variance ([`long_run_variance`]: correlated periods carry less information than
/// their number) and never below `var_floor`, the noise a per-period statistic has at the least.
pub(super) fn mixture_evidence(d: &[f64], var_floor: f64) -> f64 {
    let n = d.len() as f64;
    if d.len() < 2 {
        return 1.0;
    }
    let mean = d.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 1.0;
    }
    let plain = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let v = long_run_variance(d, mean).max(plain).max(var_floor);
    let t = LATENCY_TAU2;
    (v / (v + n * t)).sqrt() * (n * n * t * mean * mean / (2.0 * v * (v + n * t))).exp()
}

/// The canary's periods with a latency statistic past every warm-up (`warm_periods`): at the
/// current step, and since the canary began. A step moves on only once the latency test has
/// looked at its weight ([`LATENCY_PERIODS_AT_STEP`]) and could have rejected
/// ([`LATENCY_PERIODS_IN_ALL`]): otherwise a step whose warm-up and metric delay fill its
/// interval would advance on latency it never saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySeen {
    /// Warm periods with a latency statistic since the current step began.
    pub at_step: usize,
    /// Warm periods with a latency statistic since the canary began.
    pub in_all: usize,
}

impl LatencySeen {
    /// Counts the canary's warm periods with requests and a latency statistic.
    pub(super) fn count(obs: &Observations, warm: &dyn Fn(i64) -> bool) -> Self {
        let seen = obs
            .canary
            .iter()
            .filter(|s| s.requests > 0.0 && s.latency_ms.is_some_and(|l| l > 0.0))
            .filter(|s| warm(s.start));
        seen.fold(Self::default(), |n, s| Self {
            at_step: n.at_step + usize::from(s.start >= obs.step_start),
            in_all: n.in_all + 1,
        })
    }

    /// Whether latency lets the step move on.
    #[must_use]
    pub fn enough(self) -> bool {
        self.at_step >= LATENCY_PERIODS_AT_STEP && self.in_all >= LATENCY_PERIODS_IN_ALL
    }

    /// Why the step waits for latency, with the warm-up (seconds) the periods must be past.
    #[must_use]
    pub fn waiting(self, warmup_secs: i64) -> String {
        let past = if warmup_secs > 0 {
            format!(
                " past the {} warm-up",
                crate::text::human_duration(warmup_secs)
            )
        } else {
            String::new()
        };
        format!(
            "{LATENCY_WAIT}: {} {}{past} at this step (needs {LATENCY_PERIODS_AT_STEP}), {} in all (needs {LATENCY_PERIODS_IN_ALL})",
            self.at_step,
            if self.at_step == 1 { "period" } else { "periods" },
            self.in_all
        )
    }
}

/// How a hold for latency past the warm-up begins.
pub const LATENCY_WAIT: &str = "waiting for latency";
