//! The count tests: 5xx (and slow requests) as Bernoulli events, one-sample against a ceiling
//! and two-sample against the baseline, each anytime-valid; and [`five_xx`], the judge's 5xx
//! tests put together (dispersion, shared outages, ceiling, error-event and margin tests).

use super::outage::{Ongoing, OutageSpans};
use super::{totals, Observations, Sample, Totals, SUSPICION};
use crate::policy::Policy;

/// Fixed grid of alternative 5xx rates for the mixture tests (equal weights).
pub(super) const GRID: [f64; 21] = [
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2, 0.35, 0.5, 0.7, 0.9, 0.99, 0.999, 0.9999,
];

/// Bernoulli log-likelihood of `k` events in `n` trials at rate `p`.
pub(super) fn loglik(k: f64, n: f64, p: f64) -> f64 {
    let a = if k > 0.0 {
        if p <= 0.0 {
            return f64::NEG_INFINITY;
        }
        k * p.ln()
    } else {
        0.0
    };
    let b = if n - k > 0.0 {
        if p >= 1.0 {
            return f64::NEG_INFINITY;
        }
        (n - k) * (1.0 - p).ln()
    } else {
        0.0
    };
    a + b
}

/// The alternative rates a one-sample mixture averages over, above its null rate `p0`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Alternatives {
    /// [`GRID`]'s rates above `p0`, each weighted 1/21: the ceiling's null, `max_rate`, is a
    /// policy constant, and the grid reaches 0.9999 so that a build failing every request is
    /// proof within a period.
    Fixed,
    /// [`MARGIN_GRID`]'s multiples of `p0` below 1, each weighted 1/8: the 5xx margin tests,
    /// whose null moves with the baseline's rate. The fixed grid gave the rates at or below
    /// such a null (8 of its 21 at a 0.1% baseline plus 0.1 points) weights no evidence could
    /// ever use; relative to the null, every weight is on a rate a worse build could have (1%
    /// 5xx against 0.2% is 5 times it, and on the grid).
    Relative,
}

impl Alternatives {
    /// The (rate, weight) pairs above `p0` and below 1. The weights are fixed before any data
    /// and sum to at most 1, which is what keeps the mixture a test supermartingale.
    pub(super) fn above(self, p0: f64) -> Vec<(f64, f64)> {
        let pairs: Vec<(f64, f64)> = match self {
            Alternatives::Fixed => {
                let w = 1.0 / GRID.len() as f64;
                GRID.iter().map(|&p| (p, w)).collect()
            }
            Alternatives::Relative => {
                let w = 1.0 / MARGIN_GRID.len() as f64;
                MARGIN_GRID.iter().map(|&m| (p0 * m, w)).collect()
            }
        };
        pairs
            .into_iter()
            .filter(|&(p1, _)| p1 > p0 && p1 < 1.0)
            .collect()
    }
}

/// Mixture likelihood ratio against H0: rate ≤ `p0` (the `alternatives` above `p0`).
///
/// Each term is a nonnegative supermartingale under H0, so their weighted average is too (the
/// weights sum to at most 1), and by Ville's inequality it exceeds `1/α` with probability at
/// most α, at any number of looks. The uncapped reference of [`ceiling_evidence`] and
/// [`margin_evidence`], which tests check them against.
#[cfg(test)]
#[must_use]
pub(super) fn evidence_above(k: f64, n: f64, p0: f64, alternatives: Alternatives) -> f64 {
    if n <= 0.0 {
        return 1.0;
    }
    if p0 <= 0.0 {
        return if k > 0.0 { f64::INFINITY } else { 1.0 };
    }
    if p0 >= 1.0 {
        return 0.0;
    }
    let l0 = loglik(k, n, p0);
    alternatives
        .above(p0)
        .into_iter()
        .map(|(p1, w)| w * (loglik(k, n, p1) - l0).exp())
        .sum()
}

/// A period of the ceiling test is proof on its own when it would be even if its errors came in
/// clusters of this size: a build failing every request is rolled back on its first period, a
/// burst of errors from a healthy one is not (bursts of 5 at 0.1% 5xx: no false rollback from
/// the ceiling in the benchmark; every request failing: rolled back on the first period).
const DECISIVE_CLUSTER: f64 = 4.0;

/// [`DECISIVE_CLUSTER`] in counts already divided by the dispersion `phi` (at least 1).
fn decisive(phi: f64) -> f64 {
    (DECISIVE_CLUSTER / phi.max(1.0)).max(1.0)
}

/// Evidence that the canary's 5xx rate is above `p0`, from its (requests, errors) per period,
/// counts already divided by the dispersion `phi`: [`evidence_above`]'s mixture over the grid of
/// alternative rates, with each period's likelihood ratio capped at [`PERIOD_CAP`] so one burst
/// of errors is never proof on its own, unless the period is proof even read as clusters of
/// [`DECISIVE_CLUSTER`] errors (a build failing every request). Capping keeps each factor's
/// expectation under H0 at most 1, so the product is still a test supermartingale and the
/// mixture anytime-valid.
pub(super) fn ceiling_evidence(periods: &[(f64, f64)], p0: f64, phi: f64) -> f64 {
    let decisive = Some(decisive(phi));
    capped_mixture(periods, p0, Alternatives::Fixed, PERIOD_CAP, decisive)
}

/// Evidence that the canary's 5xx rate is above `p0`, the baseline's rate plus its allowed
/// increase: [`ceiling_evidence`] over the [`Alternatives::Relative`] rates, with the same caps.
/// (The tail test's margin keeps the fixed grid: relative to a share of slow requests that a
/// quiet baseline can estimate at 0, it held healthy canaries on suspicion after a traffic
/// drop, p95 minutes to 100% 9 → 21 as shipped.)
pub(super) fn margin_evidence(periods: &[(f64, f64)], p0: f64, phi: f64) -> f64 {
    let decisive = Some(decisive(phi));
    capped_mixture(periods, p0, Alternatives::Relative, PERIOD_CAP, decisive)
}

/// The one-sample mixture over `alternatives` with each period's likelihood ratio capped at
/// `cap` (≥ 1), and no cap for a period that is proof even read as clusters of `decisive`
/// errors (when given).
pub(super) fn capped_mixture(
    periods: &[(f64, f64)],
    p0: f64,
    alternatives: Alternatives,
    cap: f64,
    decisive: Option<f64>,
) -> f64 {
    if p0 <= 0.0 {
        return if periods.iter().any(|&(_, k)| k > 0.0) {
            f64::INFINITY
        } else {
            1.0
        };
    }
    if p0 >= 1.0 {
        return 0.0;
    }
    let cap = cap.max(1.0).ln();
    alternatives
        .above(p0)
        .into_iter()
        .map(|(p1, w)| {
            let llr = |k: f64, n: f64| loglik(k.min(n), n, p1) - loglik(k.min(n), n, p0);
            let total: f64 = periods
                .iter()
                .filter(|&&(n, _)| n > 0.0)
                .map(|&(n, k)| {
                    let cap = decisive.map_or(cap, |c| cap.max(llr(k / c, n / c)));
                    llr(k, n).min(cap)
                })
                .sum();
            w * total.exp()
        })
        .sum()
}

/// Most evidence one period can add to the error-event test (a factor, per alternative).
///
/// One burst of errors (a retry storm, one hiccup of a dependency) lands in one period; a bad
/// build fails in period after period. Capping each period's likelihood ratio at this factor
/// makes one burst a suspicion at most, never a rollback, and stays anytime-valid: under the null
/// `min(L, C)` has expectation at most that of `L` (≤ 1), so the capped product is still a test
/// supermartingale. Chosen on the production scenarios: bursts of 5 errors fell from 3–10% false
/// rollbacks to 1–3%, with 1% 5xx builds caught as often as before.
pub(super) const PERIOD_CAP: f64 = 20.0;

/// Sum of per-period log-likelihood ratios, each capped at `ln(cap)`.
pub(super) fn capped_sum(terms: impl Iterator<Item = f64>, cap: f64) -> f64 {
    let cap = cap.ln();
    terms.map(|t| t.min(cap)).sum()
}

/// Multiples of its null rate the 5xx margin test mixes over (equal weights; see
/// [`Alternatives::Relative`]). [`RISK_GRID`] without 1.5: an alternative that close to the
/// null is excited by a healthy canary's noise and held it on suspicion (production scenarios,
/// a canary 0.09 points above the stable version under the defaults: p95 minutes to 100% were
/// 21 on the fixed grid, 31 with 1.5, 28 without), and a build 1.5 times the null is still
/// caught by the 2.
pub(super) const MARGIN_GRID: [f64; 8] = [2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0];

/// Relative risks the error-event test mixes over (equal weights).
pub(super) const RISK_GRID: [f64; 9] = [1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0];

/// Evidence that the canary's 5xx rate is above the baseline's (H0: canary rate ≤ baseline rate).
///
/// The two-sample error-event test of Lindon & Malek ("Anytime-valid inference for multinomial
/// count data", 2022; the method behind Netflix's canaries): within a period, given that an error
/// happened, it is the canary's with probability θ = ρR / (ρR + 1 − ρ), where ρ is the canary's
/// share of that period's requests and R the ratio of the rates. Under H0 (R ≤ 1) the likelihood
/// ratio of any R > 1 against R = 1 is a supermartingale; their average over a grid of R is the
/// e-process. It needs no baseline rate, only per-period sums, and follows traffic swings and
/// weight changes period by period. `pairs` holds (canary requests, canary errors, baseline
/// requests, baseline errors) of periods both versions served.
#[must_use]
pub fn error_event_evidence(pairs: &[(f64, f64, f64, f64)]) -> f64 {
    event_evidence(pairs, PERIOD_CAP)
}

/// [`error_event_evidence`] with each period's likelihood ratio capped at `cap` (≥ 1).
pub(super) fn event_evidence(pairs: &[(f64, f64, f64, f64)], cap: f64) -> f64 {
    let informative: Vec<&(f64, f64, f64, f64)> = pairs
        .iter()
        .filter(|&&(nc, xc, nb, xb)| nc > 0.0 && nb > 0.0 && xc + xb > 0.0)
        .collect();
    RISK_GRID
        .iter()
        .map(|&r| {
            capped_sum(
                informative.iter().map(|&&(nc, xc, nb, xb)| {
                    let rho = nc / (nc + nb);
                    let theta = rho * r / (rho * r + 1.0 - rho);
                    xc * (theta / rho).ln() + xb * ((1.0 - theta) / (1.0 - rho)).ln()
                }),
                cap.max(1.0),
            )
            .exp()
        })
        .sum::<f64>()
        / RISK_GRID.len() as f64
}

/// The most the judge discounts error counts for clustering (a cluster of errors counts as at
/// least 1/`MAX_DISPERSION` of an independent error).
pub(super) const MAX_DISPERSION: f64 = 50.0;
/// Baseline errors needed before their clustering is estimated at all.
pub(super) const DISPERSION_MIN_ERRORS: f64 = 5.0;
/// Baseline periods with requests needed before their clustering is estimated at all.
pub(super) const DISPERSION_MIN_PERIODS: usize = 4;

/// How much more one version's per-period error counts vary than independent requests at its
/// own mean rate would (Pearson's χ² over its degrees of freedom, at least 1): errors that come
/// in bursts (a retry storm, a shared dependency hiccup) carry less independent evidence than
/// their count. The 5xx tests divide every count by the larger of the canary's and the
/// [`split_dispersion`] (a quasi-likelihood), so a burst of errors on a healthy canary is not
/// read as many independent failures even while the baseline has had none; a bad build failing
/// independent requests at a steady rate keeps a dispersion near 1 and loses nothing. (The
/// stable version's own is not used there: a shared outage would read as clustering. The bake,
/// which has no concurrent version, uses it.)
#[must_use]
pub fn dispersion(baseline: &[Sample]) -> f64 {
    let periods: Vec<(f64, f64)> = baseline
        .iter()
        .filter(|s| s.requests > 0.0)
        .map(|s| (s.requests, s.errors.clamp(0.0, s.requests)))
        .collect();
    event_dispersion(&periods)
}

/// [`dispersion`] of per-period (trials, events), each period with trials and at most as many
/// events (errors, slow requests, cold starts over their limit).
pub(super) fn event_dispersion(periods: &[(f64, f64)]) -> f64 {
    let n: f64 = periods.iter().map(|p| p.0).sum();
    let k: f64 = periods.iter().map(|p| p.1).sum();
    if periods.len() < DISPERSION_MIN_PERIODS || k < DISPERSION_MIN_ERRORS || k >= n {
        return 1.0;
    }
    let p = k / n;
    let chi2: f64 = periods
        .iter()
        .map(|&(ni, xi)| {
            let e = ni * p;
            (xi - e).powi(2) / (e * (1.0 - p))
        })
        .sum();
    let df = (periods.len() - 1) as f64;
    (chi2 / df).clamp(1.0, MAX_DISPERSION)
}

/// How much lumpier the split of each period's errors between the two versions is than
/// independent requests would make it (Pearson's χ² over its degrees of freedom, at least 1).
///
/// Given a period's errors, each is the canary's with probability θ = ρR / (ρR + 1 − ρ) (ρ the
/// canary's share of the period's requests, R the ratio of the two rates, fitted so that the
/// canary's expected errors are its observed ones); clusters of errors make the canary's count
/// vary more than that binomial. Unlike [`dispersion`], it does not read a change of rate that
/// hits both versions alike (a shared outage, a traffic swing) as clustering: an outage in the
/// middle of a canary would otherwise discount every error for the rest of it. `pairs` as in
/// [`error_event_evidence`]. 1 when all errors are one version's (the split says nothing of
/// clustering then) or there is too little to estimate.
#[must_use]
pub fn split_dispersion(pairs: &[(f64, f64, f64, f64)]) -> f64 {
    // (ρ, canary errors, errors of both) of the periods with errors that both versions served.
    let periods: Vec<(f64, f64, f64)> = pairs
        .iter()
        .filter(|&&(nc, _, nb, _)| nc > 0.0 && nb > 0.0)
        .map(|&(nc, xc, nb, xb)| {
            let (xc, xb) = (xc.clamp(0.0, nc), xb.clamp(0.0, nb));
            (nc / (nc + nb), xc, xc + xb)
        })
        .filter(|&(_, _, t)| t > 0.0)
        .collect();
    let errors: f64 = periods.iter().map(|p| p.2).sum();
    let canary: f64 = periods.iter().map(|p| p.1).sum();
    if periods.len() < DISPERSION_MIN_PERIODS
        || errors < DISPERSION_MIN_ERRORS
        || canary <= 0.0
        || canary >= errors
    {
        return 1.0;
    }
    let theta = |rho: f64, ln_r: f64| {
        let r = ln_r.exp();
        rho * r / (rho * r + 1.0 - rho)
    };
    let expected = |ln_r: f64| -> f64 {
        periods
            .iter()
            .map(|&(rho, _, t)| t * theta(rho, ln_r))
            .sum()
    };
    // The canary's expected errors grow with R: bisect ln R until they match the observed ones.
    let (mut lo, mut hi) = (-SPLIT_LN_RATIO, SPLIT_LN_RATIO);
    for _ in 0..SPLIT_FIT_STEPS {
        let mid = 0.5 * (lo + hi);
        if expected(mid) < canary {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let ln_r = 0.5 * (lo + hi);
    let chi2: f64 = periods
        .iter()
        .map(|&(rho, xc, t)| {
            let th = theta(rho, ln_r);
            let var = t * th * (1.0 - th);
            if var > 0.0 {
                (xc - t * th).powi(2) / var
            } else {
                0.0
            }
        })
        .sum();
    let df = (periods.len() - 1) as f64;
    (chi2 / df).clamp(1.0, MAX_DISPERSION)
}

/// The rate ratios [`split_dispersion`] fits within: e^±30, far beyond any real pair of rates.
const SPLIT_LN_RATIO: f64 = 30.0;
/// Bisection steps of that fit (60 halve 60 to below 1e-16).
const SPLIT_FIT_STEPS: usize = 60;

/// The 5xx tests' evidence.
pub(super) struct FiveXx {
    /// Against "canary rate ≤ `max_rate`", on periods the stable version kept under it.
    pub(super) ceiling: f64,
    /// Against "canary rate ≤ baseline rate" (the error-event test).
    pub(super) worse: f64,
    /// Against "canary rate ≤ baseline rate + `max_increase`" (the margin test).
    pub(super) margin: f64,
    /// The baseline's (errors, requests) the margin test used, when it left out the spans of a
    /// shared outage (else the baseline's totals).
    pub(super) margin_baseline: Option<(f64, f64)>,
    /// The smaller of `worse` and `margin`: what a rollback on the increase needs.
    pub(super) increase: f64,
    /// Whether the ceiling may act: the canary looks worse than the baseline, or there is no
    /// baseline to compare with.
    pub(super) ceiling_may_act: bool,
    /// The shared outage going on now, if any: the canary holds its step through it.
    pub(super) outage_now: Option<Ongoing>,
}

/// Every canary period the baseline also has: its start, and (canary requests, canary errors,
/// baseline requests, baseline errors), errors at most the requests.
fn paired(obs: &Observations) -> Vec<(i64, (f64, f64, f64, f64))> {
    obs.canary
        .iter()
        .filter_map(|c| {
            let b = obs.baseline_at(c.start)?;
            Some((
                c.start,
                (
                    c.requests,
                    c.errors.min(c.requests),
                    b.requests,
                    b.errors.min(b.requests),
                ),
            ))
        })
        .collect()
}

/// What the 5xx tests compare: the periods outside a shared outage, and the dispersion they
/// divide counts by.
struct Calm {
    /// The paired periods outside a shared outage (`paired`).
    pairs: Vec<(i64, (f64, f64, f64, f64))>,
    /// The canary's periods outside a shared outage.
    canary: Vec<Sample>,
    /// The baseline's totals outside a shared outage.
    baseline: Totals,
    /// Whether any canary period was left out.
    left_out: bool,
    /// The errors' overdispersion over those periods.
    phi: f64,
}

/// The spans of a shared outage (the stable version failing too, for minutes) say little about
/// the new build: its own errors drown in the dependency's (a rate ratio near 1 in them would
/// cancel the evidence of the periods before), and they would raise the baseline's rate, and
/// with it the allowed rate, for the rest of the canary. Every 5xx test leaves them out, and
/// so does the dispersion: clustered errors carry less evidence than their count, measured by
/// how lumpy the split of each period's errors between the versions is, or by the canary's own
/// counts when they are all its (`split_dispersion`, `dispersion`). Not by the stable
/// version's own counts, and not over an outage: it would read as clustering there (and, for
/// a bad build, as a ratio that changes) and blind the tests for the rest of the canary.
fn calm(obs: &Observations, outages: &OutageSpans) -> Calm {
    let outage = |start: i64| outages.covers(start);
    let pairs: Vec<(i64, (f64, f64, f64, f64))> = paired(obs)
        .into_iter()
        .filter(|&(start, _)| !outage(start))
        .collect();
    let split: Vec<(f64, f64, f64, f64)> = pairs.iter().map(|&(_, p)| p).collect();
    let outside = |samples: &[Sample]| -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| !outage(s.start))
            .copied()
            .collect()
    };
    let canary = outside(&obs.canary);
    let phi = split_dispersion(&split).max(dispersion(&canary));
    let baseline = outside(&obs.baseline);
    Calm {
        pairs,
        left_out: canary.len() < obs.canary.len(),
        canary,
        baseline: totals(&baseline),
        phi,
    }
}

/// The 5xx tests, every count divided by the dispersion, over the periods outside a shared
/// outage.
pub(super) fn five_xx(policy: &Policy, obs: &Observations, baseline: &Totals) -> FiveXx {
    let rules = policy.errors;
    let outages = OutageSpans::new(&obs.baseline, rules.max_rate, obs.stable_error_rate);
    let calm = calm(obs, &outages);
    let phi = calm.phi;
    let scaled = |c: &Sample| {
        (
            c.requests.max(0.0) / phi,
            c.errors.clamp(0.0, c.requests.max(0.0)) / phi,
        )
    };
    // The ceiling is the canary's own rate, period by period; a period in which the stable
    // version itself answered more than the ceiling is not held against it.
    let own: Vec<(f64, f64)> = calm
        .canary
        .iter()
        .filter(|c| {
            obs.baseline_at(c.start)
                .is_none_or(|b| b.requests <= 0.0 || b.errors <= rules.max_rate * b.requests)
        })
        .map(scaled)
        .collect();
    let ceiling = if rules.max_rate >= 1.0 {
        0.0
    } else {
        ceiling_evidence(&own, rules.max_rate, phi)
    };
    let pairs: Vec<(f64, f64, f64, f64)> = calm
        .pairs
        .iter()
        .map(|&(_, (nc, xc, nb, xb))| (nc, xc / phi, nb, xb / phi))
        .collect();
    // Credibly worse than the baseline (the error-event test, period by period) and credibly by
    // more than the allowed increase (the margin test: the canary's rate against the
    // baseline's plus `max_increase`, one-sample like the ceiling).
    let worse = error_event_evidence(&pairs);
    let (kq, nq) = (
        calm.baseline.errors.min(calm.baseline.requests),
        calm.baseline.requests,
    );
    let all: Vec<(f64, f64)> = calm.canary.iter().map(scaled).collect();
    let margin = if nq > 0.0 {
        margin_evidence(&all, (kq / nq + rules.max_increase).min(1.0), phi)
    } else {
        0.0
    };
    FiveXx {
        ceiling,
        worse,
        margin,
        margin_baseline: calm.left_out.then_some((kq, nq)),
        increase: worse.min(margin),
        // Above the ceiling is the new build's fault only if it is also worse than the stable
        // version: an outage of a shared dependency fails both alike and rolls nothing back.
        // With no baseline traffic to compare with, the ceiling stands alone.
        ceiling_may_act: baseline.requests <= 0.0 || pairs.is_empty() || worse >= SUSPICION,
        outage_now: outages.ongoing(),
    }
}

/// A version's periods that pass `keep`, had requests and published a slow count, as samples
/// whose `errors` are the slow requests (for [`dispersion`] and the one-sample tests).
pub(super) fn slow_share_periods(samples: &[Sample], keep: &dyn Fn(i64) -> bool) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| keep(s.start) && s.requests > 0.0)
        .filter_map(|s| {
            s.slow.map(|k| Sample {
                errors: k.clamp(0.0, s.requests),
                ..*s
            })
        })
        .collect()
}

/// The tail test's view of the judged periods.
pub(super) struct Tail {
    /// Evidence that the canary's share of slow requests is more than `max_slow_increase` above
    /// the baseline's: the smaller of `worse` and `margin`.
    pub(super) evidence: f64,
    /// Evidence that the canary's share is above the baseline's (the error-event test).
    pub(super) worse: f64,
    /// Evidence that the canary's share is above the baseline's plus `max_slow_increase`.
    pub(super) margin: f64,
    /// Canary and baseline shares of slow requests, if both had requests.
    pub(super) shares: Option<(f64, f64)>,
    /// Canary slow, canary requests, baseline slow, baseline requests.
    pub(super) counts: (f64, f64, f64, f64),
}

/// The two-sample tail test: requests slower than `latency.slow_ms` are tested like 5xx (the
/// error-event test of [`error_event_evidence`], counts divided by the baseline's overdispersion
/// of slow requests), on the periods past every warm-up in which both versions published a slow
/// count. Each period's likelihood ratio is capped at the cube root of `threshold`, so a rollback
/// needs at least three periods of evidence: slow requests come in clusters (a slow dependency,
/// a garbage collection) more than errors do, and a tail regression is not an emergency that
/// one period must settle.
pub(super) fn slow_requests(
    obs: &Observations,
    warm: &dyn Fn(i64) -> bool,
    threshold: f64,
    max_increase: f64,
) -> Tail {
    let mut pairs = Vec::new();
    let mut baseline_slow = Vec::new();
    let mut canary_slow = Vec::new();
    for c in obs.canary.iter().filter(|c| warm(c.start)) {
        let Some(b) = obs.baseline_at(c.start) else {
            continue;
        };
        let (Some(sc), Some(sb)) = (c.slow, b.slow) else {
            continue;
        };
        pairs.push((
            c.requests.max(0.0),
            sc.clamp(0.0, c.requests.max(0.0)),
            b.requests.max(0.0),
            sb.clamp(0.0, b.requests.max(0.0)),
        ));
        baseline_slow.push(Sample { errors: sb, ..*b });
        canary_slow.push(Sample { errors: sc, ..*c });
    }
    let phi = dispersion(&baseline_slow).max(dispersion(&canary_slow));
    let scaled: Vec<(f64, f64, f64, f64)> = pairs
        .iter()
        .map(|&(nc, sc, nb, sb)| (nc, sc / phi, nb, sb / phi))
        .collect();
    let sum = |f: fn(&(f64, f64, f64, f64)) -> f64| pairs.iter().map(f).sum::<f64>();
    let counts = (sum(|p| p.1), sum(|p| p.0), sum(|p| p.3), sum(|p| p.2));
    let worse = event_evidence(&scaled, threshold.cbrt());
    // The margin: the canary's share, one-sample, against the baseline's plus the allowed
    // increase (as the 5xx margin test).
    let own: Vec<(f64, f64)> = scaled
        .iter()
        .map(|&(nc, sc, _, _)| (nc / phi, sc))
        .collect();
    let margin = if counts.3 > 0.0 {
        ceiling_evidence(&own, (counts.2 / counts.3 + max_increase).min(1.0), phi)
    } else {
        0.0
    };
    Tail {
        evidence: worse.min(margin),
        worse,
        margin,
        shares: (counts.1 > 0.0 && counts.3 > 0.0)
            .then(|| (counts.0 / counts.1, counts.2 / counts.3)),
        counts,
    }
}
