//! The statistical judge: canary vs baseline samples in, a verdict with its numbers out.
//!
//! Pure: no I/O, no clock. The agent looks every minute, so every test here is *anytime-valid*:
//! the chance of a false rollback stays below `1 - confidence` however many times it looks.
//! The false-rollback budget α is split evenly (Bonferroni) across three e-processes:
//!
//! 1. **5xx ceiling** — H0: canary rate ≤ `errors.max_rate`. A mixture of Bernoulli likelihood
//!    ratios over a fixed grid of alternative rates (Robbins' mixture SPRT). A build failing every
//!    request is rejected after 2–3 requests. Acted on only when the canary also looks worse than
//!    the baseline (or the baseline has no traffic): a shared outage is not the new build's fault.
//! 2. **5xx increase** — H0: canary rate ≤ baseline rate, the two-sample error-event test of
//!    [`error_event_evidence`], each period's contribution capped so one burst is never proof; a
//!    rollback also needs the observed increase to be above `errors.max_increase` (a credible but
//!    immaterial difference is not a regression).
//!
//! Both 5xx tests divide counts by the baseline's overdispersion ([`dispersion`]).
//! 3. **Latency** — per period, `d = ln(canary / limit)` where the limit is the smaller of
//!    `latency.max_ms` and `max(max_ratio × baseline, baseline + min_increase_ms)`; H0: mean d ≤ 0,
//!    tested with a normal-mixture sequential probability ratio test (Johari, Pekelis & Walsh).
//!
//! Missing data is never a pass: no canary requests means [`Verdict::NotEnoughData`].

use crate::policy::Policy;
use std::fmt;

/// One metric period of one version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Start of the period, epoch seconds.
    pub start: i64,
    /// Requests (Invocations) in the period.
    pub requests: f64,
    /// 5xx responses (Errors) in the period; CloudWatch omits zero datapoints, so absent means 0.
    pub errors: f64,
    /// The policy's latency statistic for the period, in milliseconds, if published.
    pub latency_ms: Option<f64>,
    /// Requests slower than the policy's `latency.slow_ms` in the period, if it sets one and the
    /// source published it.
    pub slow: Option<f64>,
}

/// What the judge sees at one tick: every visible period since the canary started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Canary version periods, oldest first.
    pub canary: Vec<Sample>,
    /// Baseline (stable) version periods, oldest first.
    pub baseline: Vec<Sample>,
    /// When the current step started (epoch seconds); requests before it count for 5xx but not
    /// towards the step's `min_requests`.
    pub step_start: i64,
}

/// The judge's conclusion.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough canary evidence at this step and nothing credibly wrong.
    Healthy,
    /// The canary is credibly worse; each reason is a sentence with its numbers.
    Regressed(Vec<String>),
    /// Too little canary data to say either; the reason says what is missing.
    NotEnoughData(String),
}

/// Totals of one version over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Requests.
    pub requests: f64,
    /// 5xx responses.
    pub errors: f64,
    /// Median of the per-period latency statistic, if any period had one.
    pub latency_ms: Option<f64>,
}

impl Totals {
    /// 5xx rate, if there were requests.
    #[must_use]
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors / self.requests)
    }
}

/// The verdict and the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// What the judge concluded.
    pub verdict: Verdict,
    /// Canary totals since the canary started.
    pub canary: Totals,
    /// Baseline totals over the same periods.
    pub baseline: Totals,
    /// Canary requests since the current step started.
    pub canary_requests_at_step: f64,
    /// Start of the newest period with canary requests, if any.
    pub last_canary_traffic: Option<i64>,
    /// Evidence against "canary 5xx ≤ ceiling" (reject at ≥ `threshold`).
    pub ceiling_evidence: f64,
    /// Evidence against "canary 5xx ≤ baseline 5xx" (acted on only when the observed increase
    /// is above `errors.max_increase`).
    pub increase_evidence: f64,
    /// Evidence against "canary latency within limits".
    pub latency_evidence: f64,
    /// Evidence against "canary share of slow requests ≤ baseline's", when the tail test is on.
    pub slow_evidence: Option<f64>,
    /// Canary and baseline shares of slow requests over the judged periods, when the tail test
    /// is on and they had requests.
    pub slow_shares: Option<(f64, f64)>,
    /// Evidence needed to roll back on any one test (tests / α: 3, or 4 with the tail test).
    pub threshold: f64,
}

impl Judgement {
    /// A one-line, human summary: rates with counts, latency, and each test's evidence against
    /// the evidence a rollback needs, with the confidence that sets it.
    #[must_use]
    pub fn summary(&self) -> String {
        let rate = |t: &Totals| match t.error_rate() {
            Some(r) => format!("{} ({:.0}/{:.0})", pct(r), t.errors, t.requests),
            None => "no requests".to_string(),
        };
        let lat = |t: &Totals| {
            t.latency_ms
                .map_or("-".to_string(), |l| format!("{l:.0} ms"))
        };
        let tests = if self.slow_evidence.is_some() {
            4.0
        } else {
            3.0
        };
        let confidence = 1.0 - tests / self.threshold;
        let tail = match (self.slow_evidence, self.slow_shares) {
            (Some(e), Some((c, b))) => format!(", slow requests {} vs {} {e:.1}", pct(c), pct(b)),
            (Some(e), None) => format!(", slow requests {e:.1}"),
            _ => String::new(),
        };
        format!(
            "5xx canary {} vs baseline {}; latency canary {} vs baseline {}; evidence: 5xx ceiling {:.1}, 5xx vs baseline {:.1}, latency {:.1}{tail} (rollback at {:.0}, confidence {})",
            rate(&self.canary),
            rate(&self.baseline),
            lat(&self.canary),
            lat(&self.baseline),
            self.ceiling_evidence,
            self.increase_evidence,
            self.latency_evidence,
            self.threshold,
            pct(confidence)
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => write!(f, "healthy"),
            Self::Regressed(r) => write!(f, "regressed: {}", r.join("; ")),
            Self::NotEnoughData(r) => write!(f, "not enough data: {r}"),
        }
    }
}

/// Formats a rate as a percentage with sensible precision.
#[must_use]
pub fn pct(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// Fixed grid of alternative 5xx rates for the mixture tests (equal weights).
const GRID: [f64; 21] = [
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2, 0.35, 0.5, 0.7, 0.9, 0.99, 0.999, 0.9999,
];

/// Bernoulli log-likelihood of `k` events in `n` trials at rate `p`.
fn loglik(k: f64, n: f64, p: f64) -> f64 {
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

/// Mixture likelihood ratio against H0: rate ≤ `p0` (alternatives on the grid above `p0`).
///
/// Each term is a nonnegative supermartingale under H0, so their equal-weight average is too, and
/// by Ville's inequality it exceeds `1/α` with probability at most α, at any number of looks.
#[must_use]
pub fn evidence_above(k: f64, n: f64, p0: f64) -> f64 {
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
    let w = 1.0 / GRID.len() as f64;
    GRID.iter()
        .filter(|&&p1| p1 > p0)
        .map(|&p1| w * (loglik(k, n, p1) - l0).exp())
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
const PERIOD_CAP: f64 = 20.0;

/// Sum of per-period log-likelihood ratios, each capped at `ln(cap)`.
fn capped_sum(terms: impl Iterator<Item = f64>, cap: f64) -> f64 {
    let cap = cap.ln();
    terms.map(|t| t.min(cap)).sum()
}

/// Relative risks the error-event test mixes over (equal weights).
const RISK_GRID: [f64; 9] = [1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0];

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
fn event_evidence(pairs: &[(f64, f64, f64, f64)], cap: f64) -> f64 {
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
const MAX_DISPERSION: f64 = 50.0;
/// Baseline errors needed before their clustering is estimated at all.
const DISPERSION_MIN_ERRORS: f64 = 5.0;
/// Baseline periods with requests needed before their clustering is estimated at all.
const DISPERSION_MIN_PERIODS: usize = 4;

/// How much more the baseline's per-period error counts vary than independent requests would
/// (Pearson's χ² over its degrees of freedom, at least 1): errors that come in bursts (a retry
/// storm, a shared dependency hiccup) carry less independent evidence than their count, on
/// both versions alike. The 5xx tests divide every count by it (quasi-likelihood), so a burst
/// of errors on a healthy canary is not read as many independent failures.
#[must_use]
pub fn dispersion(baseline: &[Sample]) -> f64 {
    let periods: Vec<(f64, f64)> = baseline
        .iter()
        .filter(|s| s.requests > 0.0)
        .map(|s| (s.requests, s.errors.clamp(0.0, s.requests)))
        .collect();
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

/// Evidence needed for a suspicion: below the rollback threshold, but enough that the canary
/// holds its step (rather than moving on) while more data comes in. Under H0 an e-process ever
/// reaches 3 with probability at most 1/3 (Ville), and only a delay follows, never a rollback; the
/// benchmark chose 3 (healthy canaries: median time to 100% unchanged, p95 +0.7 min; 1% 5xx
/// builds caught 79% instead of 61%).
pub const SUSPICION: f64 = 3.0;

/// A suspicious canary holds at most this many step intervals before moving on anyway.
const SUSPICION_MAX_INTERVALS: i64 = 5;

/// Per-observation variance floor for the latency test (log scale).
///
/// Depends on the statistic: a median of ≥ 20 requests is precise, a tail statistic is not.
fn latency_var_floor(stat: crate::policy::LatencyStat) -> f64 {
    use crate::policy::LatencyStat as S;
    match stat {
        S::P50 | S::Average => 0.01,
        S::P90 | S::P95 => 0.02,
        S::P99 | S::P999 | S::Maximum => 0.04,
    }
}
/// Mixing variance of the latency effect (log scale).
const LATENCY_TAU2: f64 = 0.05;
/// Canary requests behind one latency observation: short periods are pooled until they reach it,
/// so a statistic of two or three requests never counts as a point on its own.
const LATENCY_MIN_REQUESTS: f64 = 20.0;

/// Per-observation `ln(canary / limit)` for the latency test, pooling consecutive periods (a
/// request-weighted mean of the log statistic of each version) until each observation rests on
/// at least [`LATENCY_MIN_REQUESTS`] canary requests.
fn latency_diffs(policy: &Policy, obs: &Observations, warm: &dyn Fn(i64) -> bool) -> Vec<f64> {
    let lat = policy.latency;
    let limit = |baseline: Option<f64>| {
        let relative = baseline
            .filter(|&b| b > 0.0)
            .map(|b| (b * lat.max_ratio).max(b + lat.min_increase_ms));
        relative.map_or(lat.max_ms, |r| r.min(lat.max_ms))
    };
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
const SHARE_GROWTH: f64 = 1.25;

/// Whether a period starting at a time is past every warm-up: not within `warmup` seconds of a
/// weight increase. Increases are the current step's start (exact) and every period whose
/// canary share of requests grew to [`SHARE_GROWTH`] times the largest before it (the canary
/// started, or its weight went up; such a period counts from its end, since the increase
/// happened somewhere inside it). The shares depend on routing, not on latency, so skipping
/// these periods keeps the latency tests anytime-valid.
fn warm_periods(obs: &Observations, warmup: i64) -> impl Fn(i64) -> bool {
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

/// Normal-mixture SPRT evidence that the mean of `d` is above 0 (one-sided).
fn mixture_evidence(d: &[f64], var_floor: f64) -> f64 {
    let n = d.len() as f64;
    if d.len() < 2 {
        return 1.0;
    }
    let mean = d.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 1.0;
    }
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let v = var.max(var_floor);
    let t = LATENCY_TAU2;
    (v / (v + n * t)).sqrt() * (n * n * t * mean * mean / (2.0 * v * (v + n * t))).exp()
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    Some(if xs.len().is_multiple_of(2) {
        0.5 * (xs[m - 1] + xs[m])
    } else {
        xs[m]
    })
}

fn totals(samples: &[Sample]) -> Totals {
    Totals {
        requests: samples.iter().map(|s| s.requests.max(0.0)).sum(),
        errors: samples.iter().map(|s| s.errors.max(0.0)).sum(),
        latency_ms: median(samples.iter().filter_map(|s| s.latency_ms).collect()),
    }
}

/// Judges the canary against the baseline under `policy`.
#[must_use]
pub fn judge(policy: &Policy, obs: &Observations) -> Judgement {
    let alpha = policy.alpha();
    let slow_on = policy.latency.slow_ms.is_some();
    // α is split evenly across the tests (Bonferroni): three, or four with the tail test.
    let threshold = if slow_on { 4.0 } else { 3.0 } / alpha;
    let canary = totals(&obs.canary);
    let baseline = totals(&obs.baseline);
    // Errors can't exceed requests; CloudWatch can be briefly inconsistent across metrics.
    let (kc, nc) = (canary.errors.min(canary.requests), canary.requests);
    let (kb, nb) = (baseline.errors.min(baseline.requests), baseline.requests);

    let rules = policy.errors;
    // Clustered errors carry less evidence than their count (see `dispersion`).
    let phi = dispersion(&obs.baseline);
    let ceiling_evidence = if rules.max_rate >= 1.0 {
        0.0
    } else {
        evidence_above(kc / phi, nc / phi, rules.max_rate)
    };
    let pairs: Vec<(f64, f64, f64, f64)> = obs
        .canary
        .iter()
        .filter_map(|c| {
            let b = obs.baseline.iter().find(|b| b.start == c.start)?;
            Some((
                c.requests,
                c.errors.min(c.requests) / phi,
                b.requests,
                b.errors.min(b.requests) / phi,
            ))
        })
        .collect();
    // Credibly worse than the baseline (tested) and by more than the allowed increase (observed).
    let observed_increase = if nc > 0.0 && nb > 0.0 {
        kc / nc - kb / nb
    } else {
        0.0
    };
    let increase_evidence = error_event_evidence(&pairs);
    let increase_material = observed_increase > rules.max_increase;
    // Above the ceiling is the new build's fault only if it is also worse than the stable
    // version: an outage of a shared dependency fails both alike and rolls nothing back. With no
    // baseline traffic to compare with, the ceiling stands alone.
    let worse_than_baseline = nb <= 0.0 || pairs.is_empty() || increase_evidence >= SUSPICION;
    let ceiling_breached = ceiling_evidence >= threshold && worse_than_baseline;

    let lat = policy.latency;
    let warm = warm_periods(obs, policy.warmup_secs());
    let diffs = latency_diffs(policy, obs, &warm);
    let latency_evidence = mixture_evidence(&diffs, latency_var_floor(lat.stat));
    let tail = slow_requests(obs, &warm, threshold);
    let slow_evidence = slow_on.then_some(tail.evidence);
    let slow_material = tail
        .shares
        .is_some_and(|(c, b)| c - b > lat.max_slow_increase);

    let mut reasons = Vec::new();
    if ceiling_breached {
        reasons.push(format!(
            "canary 5xx {} ({kc:.0} of {nc:.0}) is above the {} ceiling",
            pct(kc / nc),
            pct(rules.max_rate)
        ));
    }
    if increase_evidence >= threshold && increase_material {
        reasons.push(format!(
            "canary 5xx {} is more than {} above baseline {} ({kb:.0} of {nb:.0})",
            pct(kc / nc),
            pct(rules.max_increase),
            pct(kb / nb)
        ));
    }
    if let (Some(e), Some((c, b)), true) = (slow_evidence, tail.shares, slow_material) {
        if e >= threshold {
            reasons.push(format!(
                "canary {} of requests slower than {:.0} ms vs baseline {} ({:.0} of {:.0} vs {:.0} of {:.0}), more than {} above",
                pct(c),
                lat.slow_ms.unwrap_or_default(),
                pct(b),
                tail.counts.0,
                tail.counts.1,
                tail.counts.2,
                tail.counts.3,
                pct(lat.max_slow_increase)
            ));
        }
    }
    if latency_evidence >= threshold {
        let c = canary.latency_ms.unwrap_or(f64::NAN);
        let b = baseline
            .latency_ms
            .map_or("no baseline".to_string(), |b| format!("baseline {b:.0} ms"));
        reasons.push(format!(
            "canary {} {c:.0} ms vs {b} over {} periods (limit {}× and +{:.0} ms, ceiling {:.0} ms)",
            lat.stat.cloudwatch_name(),
            diffs.len(),
            lat.max_ratio,
            lat.min_increase_ms,
            lat.max_ms
        ));
    }

    let canary_requests_at_step: f64 = obs
        .canary
        .iter()
        .filter(|s| s.start >= obs.step_start)
        .map(|s| s.requests.max(0.0))
        .sum::<f64>()
        + 0.0; // an empty f64 sum is -0.0, which prints as -0
    let last_canary_traffic = obs
        .canary
        .iter()
        .filter(|s| s.requests > 0.0)
        .map(|s| s.start)
        .max();
    let newest = obs
        .canary
        .iter()
        .map(|s| s.start)
        .max()
        .unwrap_or(obs.step_start);
    let patience = SUSPICION_MAX_INTERVALS * policy.step_interval_secs();
    let suspicion = [
        (
            "5xx ceiling",
            if worse_than_baseline {
                ceiling_evidence
            } else {
                0.0
            },
        ),
        (
            "5xx vs baseline",
            if increase_material {
                increase_evidence
            } else {
                0.0
            },
        ),
        ("latency", latency_evidence),
        (
            "slow requests",
            match slow_evidence {
                Some(e) if slow_material => e,
                _ => 0.0,
            },
        ),
    ]
    .into_iter()
    .filter(|(_, e)| *e >= SUSPICION)
    .map(|(name, e)| format!("{name} evidence {e:.0} (rollback at {threshold:.0})"))
    .collect::<Vec<_>>();
    let verdict = if !reasons.is_empty() {
        Verdict::Regressed(reasons)
    } else if !suspicion.is_empty() && newest - obs.step_start < patience {
        Verdict::NotEnoughData(format!(
            "suspicious, holding for more data: {}",
            suspicion.join(", ")
        ))
    } else if canary_requests_at_step < policy.min_requests as f64 {
        Verdict::NotEnoughData(format!(
            "{canary_requests_at_step:.0} of {} canary requests at this step",
            policy.min_requests
        ))
    } else {
        Verdict::Healthy
    };
    Judgement {
        verdict,
        canary,
        baseline,
        canary_requests_at_step,
        last_canary_traffic,
        ceiling_evidence,
        increase_evidence,
        latency_evidence,
        slow_evidence,
        slow_shares: slow_on.then_some(tail.shares).flatten(),
        threshold,
    }
}

/// The tail test's view of the judged periods.
struct Tail {
    /// Evidence that the canary's share of slow requests is above the baseline's.
    evidence: f64,
    /// Canary and baseline shares of slow requests, if both had requests.
    shares: Option<(f64, f64)>,
    /// Canary slow, canary requests, baseline slow, baseline requests.
    counts: (f64, f64, f64, f64),
}

/// The two-sample tail test: requests slower than `latency.slow_ms` are tested like 5xx (the
/// error-event test of [`error_event_evidence`], counts divided by the baseline's overdispersion
/// of slow requests), on the periods past every warm-up in which both versions published a slow
/// count. Each period's likelihood ratio is capped at the cube root of `threshold`, so a rollback
/// needs at least three periods of evidence: slow requests come in clusters (a slow dependency,
/// a garbage collection) more than errors do, and a tail regression is not an emergency that
/// one period must settle.
fn slow_requests(obs: &Observations, warm: &dyn Fn(i64) -> bool, threshold: f64) -> Tail {
    let mut pairs = Vec::new();
    let mut baseline_slow = Vec::new();
    for c in obs.canary.iter().filter(|c| warm(c.start)) {
        let Some(b) = obs.baseline.iter().find(|b| b.start == c.start) else {
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
    }
    let phi = dispersion(&baseline_slow);
    let scaled: Vec<(f64, f64, f64, f64)> = pairs
        .iter()
        .map(|&(nc, sc, nb, sb)| (nc, sc / phi, nb, sb / phi))
        .collect();
    let sum = |f: fn(&(f64, f64, f64, f64)) -> f64| pairs.iter().map(f).sum::<f64>();
    let counts = (sum(|p| p.1), sum(|p| p.0), sum(|p| p.3), sum(|p| p.2));
    Tail {
        evidence: event_evidence(&scaled, threshold.cbrt()),
        shares: (counts.1 > 0.0 && counts.3 > 0.0)
            .then(|| (counts.0 / counts.1, counts.2 / counts.3)),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn minute(start: i64, requests: f64, errors: f64, latency: Option<f64>) -> Sample {
        Sample {
            start,
            requests,
            errors,
            latency_ms: latency,
            slow: None,
        }
    }

    pub(super) fn obs(canary: Vec<Sample>, baseline: Vec<Sample>) -> Observations {
        Observations {
            canary,
            baseline,
            step_start: 0,
        }
    }

    #[test]
    fn always_failing_build_is_caught_from_a_handful_of_requests() {
        let p = Policy::with_defaults("f");
        let j = judge(
            &p,
            &obs(
                vec![minute(0, 3.0, 3.0, None)],
                vec![minute(0, 30.0, 0.0, None)],
            ),
        );
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Two failures out of two is not yet enough at 99% confidence with three tests.
        let j = judge(&p, &obs(vec![minute(0, 1.0, 1.0, None)], vec![]));
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn no_canary_traffic_is_not_enough_data_never_healthy() {
        let p = Policy::with_defaults("f");
        let j = judge(&p, &obs(vec![], vec![minute(0, 1000.0, 1.0, Some(50.0))]));
        assert!(matches!(j.verdict, Verdict::NotEnoughData(_)));
        assert_eq!(j.last_canary_traffic, None);
    }

    #[test]
    fn a_canary_at_one_percent_of_a_tenth_of_a_request_per_second_is_not_enough_data() {
        // 0.1 req/s, 1% to the canary: about one canary request every 17 minutes.
        let p = Policy::with_defaults("f");
        let canary = vec![minute(600, 1.0, 0.0, Some(90.0))];
        let baseline = (0..20)
            .map(|i| minute(i * 60, 6.0, 0.0, Some(80.0)))
            .collect();
        let j = judge(&p, &obs(canary, baseline));
        assert!(
            matches!(&j.verdict, Verdict::NotEnoughData(m) if m.contains("1 of 100")),
            "{j:?}"
        );
        assert_eq!(j.last_canary_traffic, Some(600));
        // Even its one request failing is not proof of a bad build.
        let j = judge(
            &p,
            &obs(
                vec![minute(600, 1.0, 1.0, None)],
                vec![minute(600, 6.0, 0.0, None)],
            ),
        );
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn healthy_needs_min_requests_at_the_step() {
        let mut p = Policy::with_defaults("f");
        p.min_requests = 100;
        let c = vec![minute(0, 80.0, 0.0, None), minute(60, 80.0, 0.0, None)];
        let b = vec![minute(0, 800.0, 1.0, None), minute(60, 800.0, 0.0, None)];
        let mut o = obs(c, b);
        assert_eq!(judge(&p, &o).verdict, Verdict::Healthy);
        o.step_start = 60;
        assert!(
            matches!(judge(&p, &o).verdict, Verdict::NotEnoughData(m) if m.contains("80 of 100"))
        );
    }

    #[test]
    fn five_percent_errors_against_clean_baseline_is_regressed_within_a_few_hundred() {
        let p = Policy::with_defaults("f");
        let j = judge(
            &p,
            &obs(
                (0..5).map(|i| minute(i * 60, 60.0, 3.0, None)).collect(),
                (0..5).map(|i| minute(i * 60, 600.0, 1.0, None)).collect(),
            ),
        );
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("above baseline"))),
            "{j:?}"
        );
    }

    #[test]
    fn zero_error_baseline_and_zero_error_canary_is_healthy() {
        let p = Policy::with_defaults("f");
        let j = judge(
            &p,
            &obs(
                vec![minute(0, 500.0, 0.0, None)],
                vec![minute(0, 5000.0, 0.0, None)],
            ),
        );
        assert_eq!(j.verdict, Verdict::Healthy);
    }

    #[test]
    fn baseline_without_traffic_still_enforces_the_ceiling() {
        let p = Policy::with_defaults("f");
        let j = judge(&p, &obs(vec![minute(0, 200.0, 40.0, None)], vec![]));
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("ceiling")),
            "{j:?}"
        );
        assert!(
            (j.increase_evidence - 1.0).abs() < 1e-12,
            "no pairs, no evidence"
        );
    }

    #[test]
    fn doubled_latency_is_caught_after_a_few_minutes_and_not_before() {
        let p = Policy::with_defaults("f");
        let series = |n: i64, c: f64| {
            let canary = (0..n)
                .map(|i| minute(i * 60, 60.0, 0.0, Some(c * (1.0 + 0.05 * (i % 3) as f64))))
                .collect();
            let base = (0..n)
                .map(|i| {
                    minute(
                        i * 60,
                        600.0,
                        0.0,
                        Some(200.0 * (1.0 + 0.04 * (i % 2) as f64)),
                    )
                })
                .collect();
            obs(canary, base)
        };
        assert!(!matches!(
            judge(&p, &series(1, 400.0)).verdict,
            Verdict::Regressed(_)
        ));
        // The first minutes are the canary's warm-up (`source: lambda`: 2 minutes, plus the
        // minute in which it started), so they are not judged.
        assert!(!matches!(
            judge(&p, &series(3, 400.0)).verdict,
            Verdict::Regressed(_)
        ));
        let j = judge(&p, &series(8, 400.0));
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("p99")),
            "{j:?}"
        );
        // Same latency as the baseline: never regressed however long we look.
        assert_eq!(judge(&p, &series(30, 200.0)).verdict, Verdict::Healthy);
    }

    #[test]
    fn latency_ceiling_applies_without_a_baseline() {
        let p = Policy::with_defaults("f");
        let c = (0..6)
            .map(|i| minute(i * 60, 60.0, 0.0, Some(4000.0)))
            .collect();
        let j = judge(&p, &obs(c, vec![]));
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn small_absolute_latency_changes_are_tolerated() {
        // +50% on a 10 ms handler is 5 ms: below the 25 ms floor.
        let p = Policy::with_defaults("f");
        let c = (0..20)
            .map(|i| minute(i * 60, 60.0, 0.0, Some(15.0)))
            .collect();
        let b = (0..20)
            .map(|i| minute(i * 60, 600.0, 0.0, Some(10.0)))
            .collect();
        assert_eq!(judge(&p, &obs(c, b)).verdict, Verdict::Healthy);
    }

    #[test]
    fn reasons_carry_numbers() {
        let p = Policy::with_defaults("f");
        let j = judge(
            &p,
            &obs(
                vec![minute(0, 5.0, 5.0, None)],
                vec![minute(0, 100.0, 0.0, None)],
            ),
        );
        let Verdict::Regressed(r) = &j.verdict else {
            panic!("{j:?}")
        };
        assert!(r[0].contains("100% (5 of 5)"), "{r:?}");
        assert!(j.summary().contains("100% (5/5)"), "{}", j.summary());
        assert!(
            j.summary().contains("(rollback at 300, confidence 99%)"),
            "{}",
            j.summary()
        );
    }

    proptest! {
        /// More errors in the same requests is never less evidence.
        #[test]
        fn evidence_is_monotone_in_errors(k in 0u32..50, n in 50u32..500, p0 in 0.001f64..0.5) {
            let (k, n) = (f64::from(k), f64::from(n));
            prop_assert!(evidence_above(k + 1.0, n, p0) >= evidence_above(k, n, p0));
        }

        #[test]
        fn judge_never_panics_and_regresses_only_with_canary_data(
            c in proptest::collection::vec((0.0f64..1000.0, 0.0f64..1.0, proptest::option::of(0.0f64..5000.0)), 0..8),
            b in proptest::collection::vec((0.0f64..1000.0, 0.0f64..1.0, proptest::option::of(0.0f64..5000.0)), 0..8),
        ) {
            let p = Policy::with_defaults("f");
            let to = |v: &Vec<(f64, f64, Option<f64>)>| v.iter().enumerate()
                .map(|(i, &(n, r, l))| minute(i as i64 * 60, n.floor(), (n * r).floor(), l)).collect::<Vec<_>>();
            let j = judge(&p, &obs(to(&c), to(&b)));
            if j.canary.requests == 0.0 {
                prop_assert!(matches!(j.verdict, Verdict::NotEnoughData(_)), "{:?}", j);
            }
        }
    }

    /// Repeated looks under H0 keep the false-rollback rate at or below α (simulated, seeded).
    #[test]
    fn false_rollbacks_under_repeated_looks_stay_below_alpha() {
        let mut p = Policy::with_defaults("f");
        p.confidence = 0.95; // a larger α makes the check meaningful with few runs
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut uniform = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let runs = 400;
        let mut false_alarms = 0;
        for _ in 0..runs {
            let mut o = obs(vec![], vec![]);
            for m in 0..30 {
                let rate = 0.01; // canary and baseline identical, exactly at the ceiling
                let count = |n: u32, u: &mut dyn FnMut() -> f64| {
                    (0..n).filter(|_| u() < rate).count() as f64
                };
                let kc = count(30, &mut uniform);
                let kb = count(270, &mut uniform);
                o.canary.push(minute(m * 60, 30.0, kc, None));
                o.baseline.push(minute(m * 60, 270.0, kb, None));
                if matches!(judge(&p, &o).verdict, Verdict::Regressed(_)) {
                    false_alarms += 1;
                    break;
                }
            }
        }
        assert!(
            f64::from(false_alarms) / f64::from(runs) <= 0.05,
            "{false_alarms} of {runs}"
        );
    }
}

#[cfg(test)]
mod error_event_tests {
    use super::tests::{minute, obs};
    use super::*;

    #[test]
    fn errors_in_proportion_to_traffic_are_no_evidence() {
        // 10% of requests and 10% of errors: exactly what H0 predicts.
        let pairs = vec![(100.0, 1.0, 900.0, 9.0); 20];
        assert!(error_event_evidence(&pairs) < 1.0);
    }

    #[test]
    fn errors_concentrated_on_the_canary_are_strong_evidence() {
        let pairs = vec![(60.0, 1.0, 540.0, 0.0); 8];
        assert!(
            error_event_evidence(&pairs) > 300.0,
            "{}",
            error_event_evidence(&pairs)
        );
    }

    #[test]
    fn a_worse_but_immaterial_canary_is_held_not_rolled_back() {
        // 0.3% vs 0.1%: credibly worse, but within max_increase 0.5%.
        let p = Policy::with_defaults("f");
        let c: Vec<Sample> = (0..60)
            .map(|i| Sample {
                start: i * 60,
                requests: 1000.0,
                errors: 3.0,
                latency_ms: None,
                slow: None,
            })
            .collect();
        let b: Vec<Sample> = (0..60)
            .map(|i| Sample {
                start: i * 60,
                requests: 9000.0,
                errors: 9.0,
                latency_ms: None,
                slow: None,
            })
            .collect();
        let j = judge(
            &p,
            &Observations {
                canary: c,
                baseline: b,
                step_start: 0,
            },
        );
        assert!(j.increase_evidence > j.threshold, "{j:?}");
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn suspicious_evidence_holds_the_step_instead_of_moving_on() {
        let p = Policy::with_defaults("f");
        // Two canary errors in 120 requests, none in the baseline: evidence, not proof.
        let c = vec![Sample {
            start: 0,
            requests: 120.0,
            errors: 2.0,
            latency_ms: None,
            slow: None,
        }];
        let b = vec![Sample {
            start: 0,
            requests: 1080.0,
            errors: 0.0,
            latency_ms: None,
            slow: None,
        }];
        let j = judge(
            &p,
            &Observations {
                canary: c,
                baseline: b,
                step_start: 0,
            },
        );
        assert!(
            j.increase_evidence >= SUSPICION && j.increase_evidence < j.threshold,
            "{j:?}"
        );
        assert!(
            matches!(&j.verdict, Verdict::NotEnoughData(m) if m.starts_with("suspicious")),
            "{j:?}"
        );
    }

    #[test]
    fn an_outage_that_fails_both_versions_alike_is_not_the_new_builds_fault() {
        // Issue 7: a shared dependency adds 3% 5xx to both versions for ten minutes.
        let p = Policy::with_defaults("f");
        let c: Vec<Sample> = (0..10)
            .map(|i| Sample {
                start: i * 60,
                requests: 60.0,
                errors: 2.0,
                latency_ms: None,
                slow: None,
            })
            .collect();
        let b: Vec<Sample> = (0..10)
            .map(|i| Sample {
                start: i * 60,
                requests: 540.0,
                errors: 17.0,
                latency_ms: None,
                slow: None,
            })
            .collect();
        let j = judge(
            &p,
            &Observations {
                canary: c.clone(),
                baseline: b,
                step_start: 0,
            },
        );
        assert!(
            j.ceiling_evidence >= j.threshold,
            "above the 1% ceiling: {j:?}"
        );
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Without baseline traffic to compare with, the ceiling stands alone.
        let j = judge(
            &p,
            &Observations {
                canary: c,
                baseline: vec![],
                step_start: 0,
            },
        );
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn clustered_baseline_errors_are_overdispersed_and_independent_ones_are_not() {
        let period = |i: i64, errors: f64| Sample {
            start: i * 60,
            requests: 1000.0,
            errors,
            latency_ms: None,
            slow: None,
        };
        // About 1 error a period, but in clusters of ten.
        let bursty: Vec<Sample> = (0..20)
            .map(|i| period(i, if i % 10 == 0 { 10.0 } else { 0.0 }))
            .collect();
        assert!(dispersion(&bursty) > 5.0, "{}", dispersion(&bursty));
        let steady: Vec<Sample> = (0..20).map(|i| period(i, f64::from(i as u8 % 3))).collect();
        assert!(dispersion(&steady) < 1.5, "{}", dispersion(&steady));
        assert!(
            (dispersion(&bursty[..2]) - 1.0).abs() < 1e-12,
            "too little to estimate"
        );
    }

    #[test]
    fn one_burst_of_errors_is_at_most_a_suspicion_but_errors_in_period_after_period_roll_back() {
        let p = Policy::with_defaults("f");
        let base = |n: i64| {
            (0..n)
                .map(|i| minute(i * 60, 540.0, 0.0, None))
                .collect::<Vec<_>>()
        };
        // Six canary errors in one minute, none before or after: a burst.
        let burst: Vec<Sample> = (0..10)
            .map(|i| minute(i * 60, 60.0, if i == 3 { 6.0 } else { 0.0 }, None))
            .collect();
        let j = judge(&p, &obs(burst, base(10)));
        assert!(j.increase_evidence <= PERIOD_CAP + 1e-9, "{j:?}");
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Two canary errors a minute, every minute: a bad build.
        let steady: Vec<Sample> = (0..4).map(|i| minute(i * 60, 60.0, 2.0, None)).collect();
        let j = judge(&p, &obs(steady, base(4)));
        assert!(j.increase_evidence >= j.threshold, "{j:?}");
    }

    /// Runs where the error-event test ever reaches `threshold` on identical versions whose errors
    /// come in clusters (geometric sizes with mean `mean_cluster`), each cluster landing on the
    /// canary with its share of the traffic: the test's own null, with bursty inputs.
    /// Events of one period in Poisson(`clusters`) clusters of geometric size with mean
    /// `mean_cluster`, each cluster wholly the canary's with probability `canary_share`: the
    /// (canary, baseline) counts.
    fn clustered_split(
        rng: &mut crate::sim::rng::Rng,
        clusters: f64,
        mean_cluster: f64,
        canary_share: f64,
    ) -> (f64, f64) {
        let (mut c, mut b) = (0.0_f64, 0.0_f64);
        for _ in 0..rng.poisson(clusters) {
            let mut size = 1.0;
            while rng.uniform() > 1.0 / mean_cluster {
                size += 1.0;
            }
            if rng.uniform() < canary_share {
                c += size;
            } else {
                b += size;
            }
        }
        (c, b)
    }

    fn bursty_null_rejections(runs: u32, mean_cluster: f64, threshold: f64) -> u32 {
        let mut rng = crate::sim::rng::Rng::new(7);
        let (nc, nb, rate) = (100.0, 900.0, 0.002);
        let clusters_per_period = (nc + nb) * rate / mean_cluster;
        let mut rejected = 0;
        for _ in 0..runs {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            for m in 0..30 {
                let (xc, xb) =
                    clustered_split(&mut rng, clusters_per_period, mean_cluster, nc / (nc + nb));
                c.push(minute(m * 60, nc, xc.min(nc), None));
                b.push(minute(m * 60, nb, xb.min(nb), None));
                let phi = dispersion(&b);
                let pairs: Vec<_> = c
                    .iter()
                    .zip(&b)
                    .map(|(c, b)| (c.requests, c.errors / phi, b.requests, b.errors / phi))
                    .collect();
                if error_event_evidence(&pairs) >= threshold {
                    rejected += 1;
                    break;
                }
            }
        }
        rejected
    }

    #[test]
    fn the_error_event_test_keeps_its_share_of_alpha_when_errors_come_in_bursts() {
        // α = 0.05 split three ways: this test's share is 1/60, at any of 30 looks.
        let runs = 600;
        let share = 0.05 / 3.0;
        for mean_cluster in [1.0, 5.0] {
            let r = bursty_null_rejections(runs, mean_cluster, 3.0 / 0.05);
            assert!(
                f64::from(r) / f64::from(runs) <= share,
                "clusters of {mean_cluster}: {r} of {runs} false rejections"
            );
        }
    }

    fn with_slow(mut s: Sample, slow: f64) -> Sample {
        s.slow = Some(slow);
        s
    }

    #[test]
    fn slow_requests_in_the_warm_up_after_a_weight_increase_are_not_judged_and_after_it_are() {
        let mut p = Policy::with_defaults("f");
        p.latency.slow_ms = Some(400.0);
        // 10% of 1000 requests a minute for 4 minutes, then 25%: each increase brings 10% of the
        // canary's requests over 400 ms for two minutes (cold starts); the baseline has 0.5%.
        let mut c = Vec::new();
        let mut b = Vec::new();
        for m in 0..8 {
            let share = if m < 4 { 0.1 } else { 0.25 };
            let (nc, nb) = (1000.0 * share, 1000.0 * (1.0 - share));
            let cold = m == 0 || m == 1 || m == 4 || m == 5;
            let slow_c = if cold { 0.1 * nc } else { 0.005 * nc };
            c.push(with_slow(minute(m * 60, nc, 0.0, Some(100.0)), slow_c));
            b.push(with_slow(minute(m * 60, nb, 0.0, Some(100.0)), 0.005 * nb));
        }
        let mut o = obs(c.clone(), b.clone());
        o.step_start = 240;
        let j = judge(&p, &o);
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        assert!(j.slow_evidence.is_some_and(|e| e < 2.0), "{j:?}");
        // Judged with no warm-up, the same periods are a regression.
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let j = judge(&p, &o);
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("slower than 400 ms"))),
            "{j:?}"
        );
    }

    #[test]
    fn a_tail_regression_is_caught_by_its_slow_requests_when_the_median_does_not_move() {
        let mut p = Policy::with_defaults("f");
        p.latency.stat = crate::policy::LatencyStat::P50;
        p.latency.slow_ms = Some(400.0);
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let series = |minutes: i64| {
            let c = (0..minutes)
                .map(|m| with_slow(minute(m * 60, 60.0, 0.0, Some(80.0)), 2.0))
                .collect();
            let b = (0..minutes)
                .map(|m| {
                    with_slow(
                        minute(m * 60, 540.0, 0.0, Some(80.0)),
                        if m % 3 == 0 { 1.0 } else { 0.0 },
                    )
                })
                .collect();
            obs(c, b)
        };
        assert!(!matches!(
            judge(&p, &series(1)).verdict,
            Verdict::Regressed(_)
        ));
        let j = judge(&p, &series(6));
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.len() == 1 && r[0].contains("3.3% of requests slower than 400 ms")),
            "{j:?}"
        );
        assert!(j.summary().contains("slow requests"), "{}", j.summary());
        // Within the allowed increase: credible but immaterial, never a rollback.
        p.latency.max_slow_increase = 0.05;
        let j = judge(&p, &series(30));
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    /// Runs of 30 looks under the tail test's null (both versions share each minute's chance of a
    /// slow request), with that chance wandering from minute to minute (autocorrelated, log-AR(1))
    /// and slow requests in clusters of geometric size (heavy-tailed counts); how many runs the
    /// full judge rolls back for slow requests.
    fn tail_null_rejections(runs: u32, mean_cluster: f64, policy: &Policy) -> u32 {
        let mut rng = crate::sim::rng::Rng::new(11);
        let (nc, nb) = (100.0, 900.0);
        let mut rejected = 0;
        for _ in 0..runs {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            let mut level = 0.0_f64;
            for m in 0..30 {
                level = 0.8 * level + 0.5 * rng.normal();
                let p_slow = (0.01 * level.exp()).min(0.5);
                let (sc, sb) = clustered_split(
                    &mut rng,
                    (nc + nb) * p_slow / mean_cluster,
                    mean_cluster,
                    nc / (nc + nb),
                );
                c.push(with_slow(minute(m * 60, nc, 0.0, Some(80.0)), sc.min(nc)));
                b.push(with_slow(minute(m * 60, nb, 0.0, Some(80.0)), sb.min(nb)));
                let j = judge(policy, &obs(c.clone(), b.clone()));
                if matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("slower than")))
                {
                    rejected += 1;
                    break;
                }
            }
        }
        rejected
    }

    #[test]
    fn the_tail_test_keeps_its_share_of_alpha_on_autocorrelated_bursty_slow_requests() {
        // α = 0.05 split four ways: this test's share is 1/80, at any of 30 looks; the allowed
        // increase is 0 so only the evidence stands between the null and a rollback.
        let mut p = Policy::with_defaults("f");
        p.confidence = 0.95;
        p.latency.slow_ms = Some(400.0);
        p.latency.max_slow_increase = 0.0;
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let runs = 400;
        for mean_cluster in [1.0, 5.0] {
            let r = tail_null_rejections(runs, mean_cluster, &p);
            assert!(
                f64::from(r) / f64::from(runs) <= 0.05 / 4.0,
                "clusters of {mean_cluster}: {r} of {runs} false rejections"
            );
        }
    }
}
