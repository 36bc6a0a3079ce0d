//! The latency test: per-period log ratios of the canary's statistic to its limit, tested with a
//! normal mixture, and the warm-up rule that decides which periods it may see.

use super::Observations;
use crate::policy::Policy;

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
/// at least [`LATENCY_MIN_REQUESTS`] canary requests. An observation whose periods the baseline
/// did not serve is held against `fallback` (the bake's reference statistic), or `max_ms`.
pub(super) fn latency_diffs(
    policy: &Policy,
    obs: &Observations,
    warm: &dyn Fn(i64) -> bool,
    fallback: Option<f64>,
) -> Vec<f64> {
    let lat = policy.latency;
    let limit = |baseline: Option<f64>| latency_limit(&lat, baseline.or(fallback));
    let mut diffs = Vec::new();
    let (mut n, mut log_c, mut nb, mut log_b) = (0.0, 0.0, 0.0, 0.0);
    for c in &obs.canary {
        let Some(cl) = c
            .latency_ms
            .filter(|&l| l > 0.0 && c.requests > 0.0 && warm(c.start))
        else {
            continue;
        };
        n += c.requests;
        log_c += c.requests * cl.ln();
        if let Some((bn, bl)) = obs
            .baseline
            .iter()
            .find(|b| b.start == c.start)
            .and_then(|b| {
                b.latency_ms
                    .filter(|&l| l > 0.0 && b.requests > 0.0)
                    .map(|l| (b.requests, l))
            })
        {
            nb += bn;
            log_b += bn * bl.ln();
        }
        if n >= LATENCY_MIN_REQUESTS {
            let baseline = (nb > 0.0).then(|| (log_b / nb).exp());
            diffs.push(log_c / n - limit(baseline).ln());
            (n, log_c, nb, log_b) = (0.0, 0.0, 0.0, 0.0);
        }
    }
    diffs
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
                .baseline
                .iter()
                .find(|b| b.start == c.start)
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
    let r = g1 / g0;
    let rho = (r + (1.0 + 3.0 * r) / n).clamp(0.0, 0.95);
    g0 * (1.0 + rho) / (1.0 - rho)
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
