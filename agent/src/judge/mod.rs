//! The statistical judge: canary vs baseline samples in, a verdict with its numbers out.
//!
//! Pure: no I/O, no clock. The agent looks every minute, so every test here is *anytime-valid*:
//! the chance of a false rollback stays below `1 - confidence` however many times it looks.
//! The false-rollback budget α is split evenly (Bonferroni) across four e-processes:
//!
//! 1. **5xx ceiling** — H0: canary rate ≤ `errors.max_rate`. A mixture of Bernoulli likelihood
//!    ratios over a fixed grid of alternative rates (Robbins' mixture SPRT), period by period,
//!    each period's factor capped unless it is proof even as clusters of errors
//!    (`counts::ceiling_evidence`). Periods in which the stable version itself answered more
//!    than the ceiling are left out, and a rollback also needs the canary to look worse than the
//!    baseline (or the baseline to have no traffic): a shared outage is not the new build's fault.
//! 2. **5xx increase** — H0: canary rate ≤ baseline rate + `errors.max_increase`. Two tests must
//!    both reject: the two-sample error-event test of [`error_event_evidence`] (no worse than
//!    the baseline, period by period, each period's contribution capped so one burst is never
//!    proof), and the margin test, the canary's own rate against the baseline's plus
//!    `max_increase` (one-sample like the ceiling, its alternatives multiples of that rate:
//!    `counts::margin_evidence`). Each is anytime-valid, so a canary inside the allowed
//!    increase is rolled back at most the test's share of α.
//!
//! Both 5xx tests divide counts by the errors' overdispersion: how much lumpier the split of
//! each period's errors between the versions is than independent requests make it
//! ([`split_dispersion`]; a shared outage is not clustering), or the canary's own
//! ([`dispersion`]) when all errors are its. Both tests, and the dispersion, leave out the
//! minutes of a shared outage (`outage`: the stable version failing for minutes, above the
//! ceiling and well above its usual rate, its rate over the hour before the canary), and the
//! canary holds its step while one goes on: the new build's errors cannot be told from the
//! dependency's then.
//! 3. **Latency** — per period, `d = ln(canary / limit)` where the limit is the smaller of
//!    `latency.max_ms` and `max(max_ratio × baseline, baseline + min_increase_ms)`; H0: mean d ≤ 0,
//!    tested with a normal-mixture sequential probability ratio test (Johari, Pekelis & Walsh)
//!    on the periods' long-run variance (correlated periods count as fewer).
//! 4. **Slow requests** — the share of requests over `latency.slow_ms` (or, when the policy
//!    sets none, over the stable version's p99 in the hour before the canary), tested against
//!    the baseline's like 5xx.
//!
//! Missing data is never a pass: no canary requests means [`Verdict::NotEnoughData`], and so
//! does a shared outage going on now, and a step whose latency the test has not yet seen past
//! its warm-up ([`LatencySeen`]: one period at the step's weight, two since the canary began).

mod bake;
mod counts;
mod latency;
#[cfg(test)]
mod null_tests;
mod outage;
#[cfg(test)]
mod tests;
mod verdict;

use crate::policy::Policy;
pub use bake::{judge_bake, judge_recheck};
use counts::{
    capped_mixture, event_dispersion, five_xx, slow_requests, Alternatives, FiveXx, Tail,
};
pub use counts::{dispersion, error_event_evidence, split_dispersion};
use latency::{latency_evidence, warm_periods};
pub use latency::{
    wander, LatencySeen, ASSUMED_WANDER, LATENCY_WAIT, WANDER_MIN_POINTS, WANDER_SECS,
};
use std::fmt;
use verdict::{suspicions, verdict};
pub use verdict::{HOLDING, SHARED_OUTAGE, SUSPICION};

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
    /// Requests slower than the tail test's threshold ([`Observations::slow_ms`]) in the period,
    /// if the threshold is known and the source published the count.
    pub slow: Option<f64>,
}

/// The canary's cold starts (first invocations of new execution environments) in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ColdStarts {
    /// Start of the period, epoch seconds.
    pub start: i64,
    /// Cold starts in the period.
    pub count: f64,
    /// Of them, those slower than the cold-start limit ([`Observations::cold_limit_ms`]).
    pub slow: f64,
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
    /// The tail test's threshold in milliseconds: `latency.slow_ms`, or the stable version's p99
    /// before the canary started; `None` when neither is known (the tail test has no data).
    pub slow_ms: Option<f64>,
    /// The canary's cold starts per period (EMF metrics or Lambda Insights only).
    pub cold: Vec<ColdStarts>,
    /// The cold-start test's limit in milliseconds: the stable version's median cold start,
    /// moved by `latency.max_ratio` and `min_increase_ms`; `None` when not known.
    pub cold_limit_ms: Option<f64>,
    /// How much the stable version's latency level wandered in the hours before the canary
    /// ([`wander`]: log² × seconds); `None` when not known (the latency test then assumes
    /// [`ASSUMED_WANDER`]).
    pub latency_wander: Option<f64>,
    /// The stable version's 5xx rate over the hour before the canary, if known: its usual rate,
    /// against which a shared outage is told (else its usual minute over the canary).
    pub stable_error_rate: Option<f64>,
    /// The index of the canary's current step in the policy's `steps` (how far the canary
    /// could have come, for the suspicion's patience).
    pub step: usize,
}

impl Observations {
    /// The baseline's period that starts at `start`, if it has one.
    ///
    /// A binary search (the periods are oldest first), so a tick's pairing of the versions'
    /// periods stays linear in their number over a long hold; a miss looks through them all in
    /// case they are out of order.
    pub(super) fn baseline_at(&self, start: i64) -> Option<&Sample> {
        match self.baseline.binary_search_by_key(&start, |b| b.start) {
            Ok(i) => self.baseline.get(i),
            Err(_) => self.baseline.iter().find(|b| b.start == start),
        }
    }
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
    /// The canary's periods with a latency statistic past the warm-up, at this step and in all:
    /// a step moves on only when they are [`LatencySeen::enough`].
    pub latency_seen: LatencySeen,
    /// Start of the newest period with canary requests, if any.
    pub last_canary_traffic: Option<i64>,
    /// When the shared outage going on now began (the stable version failing too, well above
    /// its usual rate): the canary holds its step through it. `None` when there is none.
    pub outage_since: Option<i64>,
    /// Evidence against "canary 5xx ≤ ceiling" (reject at ≥ `threshold`).
    pub ceiling_evidence: f64,
    /// Evidence against "canary 5xx ≤ baseline 5xx + `errors.max_increase`": the smaller of
    /// the error-event test's (no worse than the baseline, period by period) and the margin
    /// test's (no more than the baseline's rate plus `max_increase`).
    pub increase_evidence: f64,
    /// Evidence against "canary latency within limits".
    pub latency_evidence: f64,
    /// Evidence against "canary share of slow requests ≤ baseline's", when the tail test is on.
    pub slow_evidence: Option<f64>,
    /// Canary and baseline shares of slow requests over the judged periods, when the tail test
    /// is on and they had requests.
    pub slow_shares: Option<(f64, f64)>,
    /// Evidence against "the canary's median cold start is within the limit", when the limit is
    /// known (EMF metrics or Lambda Insights, and a stable version with cold starts before the
    /// canary).
    pub cold_evidence: Option<f64>,
    /// The tests α is split across (4, or 5 where cold starts are judged).
    pub tests: f64,
    /// Evidence needed to roll back on any one test (tests / α).
    pub threshold: f64,
}

#[cfg(test)]
impl Judgement {
    /// A judgement with `verdict` and neutral numbers (no requests, evidence 1 on every test,
    /// enough latency periods, threshold 300), for tests of what is decided from a verdict.
    pub(crate) fn fixture(verdict: Verdict, last_canary_traffic: Option<i64>) -> Judgement {
        Judgement {
            verdict,
            canary: Totals::default(),
            baseline: Totals::default(),
            canary_requests_at_step: 0.0,
            latency_seen: LatencySeen {
                at_step: crate::policy::LATENCY_PERIODS_AT_STEP,
                in_all: crate::policy::LATENCY_PERIODS_IN_ALL,
            },
            last_canary_traffic,
            outage_since: None,
            ceiling_evidence: 1.0,
            increase_evidence: 1.0,
            latency_evidence: 1.0,
            slow_evidence: None,
            slow_shares: None,
            cold_evidence: None,
            tests: 4.0,
            threshold: 300.0,
        }
    }
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
        let confidence = 1.0 - self.tests / self.threshold;
        let cold = self
            .cold_evidence
            .map_or(String::new(), |e| format!(", cold starts {e:.1}"));
        let tail = match (self.slow_evidence, self.slow_shares) {
            (Some(e), Some((c, b))) => {
                format!(", slow requests ({} vs {}) {e:.1}", pct(c), pct(b))
            }
            (Some(e), None) => format!(", slow requests {e:.1}"),
            _ => String::new(),
        };
        format!(
            "5xx canary {} vs baseline {}; latency canary {} vs baseline {}; evidence: 5xx ceiling {:.1}, 5xx vs baseline {:.1}, latency {:.1}{tail}{cold} (rollback at {:.0}, confidence {})",
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

/// The tests α is split across (Bonferroni): 5xx ceiling, 5xx increase, latency and slow
/// requests, plus cold starts where the metrics flag them (EMF, or Lambda Insights). Fixed by
/// the policy alone, so the threshold never depends on the data.
#[must_use]
pub fn tests(policy: &Policy) -> f64 {
    if policy.metrics.judges_cold_starts() {
        5.0
    } else {
        4.0
    }
}

/// The cold-start test's limit for a stable version whose median cold start took `stable_ms`:
/// `latency.max_ratio` times it, at least `min_increase_ms` more, and at most `max_ms`.
#[must_use]
pub fn cold_limit(lat: &crate::policy::LatencyRule, stable_ms: f64) -> f64 {
    (stable_ms * lat.max_ratio)
        .max(stable_ms + lat.min_increase_ms)
        .min(lat.max_ms.max(stable_ms))
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
    // Every test counts in the split, so the threshold is fixed before any data.
    let tests = tests(policy);
    let threshold = tests / policy.alpha();
    let canary = totals(&obs.canary);
    let baseline = totals(&obs.baseline);
    let errors = five_xx(policy, obs, &baseline);
    let warm = warm_periods(obs, policy.warmup_secs());
    let (latency, latency_periods) = latency_evidence(policy, obs, &warm, None, 2.0);
    let slow_ms = obs.slow_ms.or(policy.latency.slow_ms);
    let tail = slow_requests(obs, &warm, threshold, policy.latency.max_slow_increase);
    let (cold, cold_counts) = cold_starts(obs, threshold);
    let ev = Evidence {
        errors,
        latency,
        latency_periods,
        slow: slow_ms.map(|_| tail.evidence),
        slow_ms,
        tail,
        cold,
        cold_counts,
    };
    let reasons = reasons(policy, obs, &ev, &canary, &baseline, threshold);
    let suspicion = suspicions(&ev, threshold);
    let canary_requests_at_step: f64 = obs
        .canary
        .iter()
        .filter(|s| s.start >= obs.step_start)
        .map(|s| s.requests.max(0.0))
        .sum::<f64>()
        + 0.0; // an empty f64 sum is -0.0, which prints as -0
    let latency_seen = LatencySeen::count(obs, &warm);
    let verdict = verdict(
        policy,
        obs,
        reasons,
        &suspicion,
        (canary_requests_at_step, latency_seen),
        ev.errors.outage_now,
    );
    Judgement {
        verdict,
        canary,
        baseline,
        canary_requests_at_step,
        latency_seen,
        last_canary_traffic: obs
            .canary
            .iter()
            .filter(|s| s.requests > 0.0)
            .map(|s| s.start)
            .max(),
        outage_since: ev.errors.outage_now.map(|o| o.since),
        ceiling_evidence: ev.errors.ceiling,
        increase_evidence: ev.errors.increase,
        latency_evidence: ev.latency,
        slow_evidence: ev.slow,
        slow_shares: slow_ms.and(ev.tail.shares),
        cold_evidence: ev.cold,
        tests,
        threshold,
    }
}

/// Every test's evidence at one tick, with what its reason needs.
struct Evidence {
    errors: FiveXx,
    latency: f64,
    /// Latency observations judged.
    latency_periods: usize,
    /// The tail test's evidence, when its threshold is known.
    slow: Option<f64>,
    /// The tail test's threshold.
    slow_ms: Option<f64>,
    tail: Tail,
    /// The cold-start test's evidence, when its limit is known.
    cold: Option<f64>,
    /// Cold starts judged, and of them those over the limit.
    cold_counts: (f64, f64),
}

/// The cold-start test: H0 is "the canary's median cold start is within the limit", so each cold
/// start is slower than the limit with probability at most 1/2 (the ceiling's one-sample
/// mixture with 1/2 as its ceiling, on counts divided by their overdispersion, each period's
/// likelihood ratio capped at the cube root of `threshold` so that a rollback needs three
/// periods of evidence). Its evidence when the limit is known, and the cold starts judged with
/// those over the limit.
fn cold_starts(obs: &Observations, threshold: f64) -> (Option<f64>, (f64, f64)) {
    let periods: Vec<(f64, f64)> = obs
        .cold
        .iter()
        .filter(|c| c.count > 0.0)
        .map(|c| (c.count, c.slow.clamp(0.0, c.count)))
        .collect();
    let counts = periods
        .iter()
        .fold((0.0, 0.0), |(n, k), &(cn, ck)| (n + cn, k + ck));
    // Environments started together warm up alike (one slow dependency slows every one of
    // them): cold starts are counted as clusters, like errors ([`dispersion`]).
    let phi = event_dispersion(&periods);
    let scaled: Vec<(f64, f64)> = periods.iter().map(|&(n, k)| (n / phi, k / phi)).collect();
    let evidence = obs
        .cold_limit_ms
        .map(|_| capped_mixture(&scaled, 0.5, Alternatives::Fixed, threshold.cbrt(), None));
    (evidence, counts)
}

/// One sentence, with its numbers, per test whose evidence reached `threshold`.
fn reasons(
    policy: &Policy,
    obs: &Observations,
    ev: &Evidence,
    canary: &Totals,
    baseline: &Totals,
    threshold: f64,
) -> Vec<String> {
    let (rules, lat) = (policy.errors, policy.latency);
    let (kc, nc) = (canary.errors.min(canary.requests), canary.requests);
    let (kb, nb) = (baseline.errors.min(baseline.requests), baseline.requests);
    let mut reasons = Vec::new();
    if ev.errors.ceiling >= threshold && ev.errors.ceiling_may_act {
        reasons.push(format!(
            "canary 5xx {} ({kc:.0} of {nc:.0}) is above the {} ceiling",
            pct(kc / nc),
            pct(rules.max_rate)
        ));
    }
    if ev.errors.increase >= threshold {
        let (kb, nb, outside) = ev
            .errors
            .margin_baseline
            .map_or((kb, nb, ""), |(k, n)| (k, n, ", outside a shared outage"));
        reasons.push(format!(
            "canary 5xx {} is more than {} above baseline {} ({kb:.0} of {nb:.0}{outside})",
            pct(kc / nc),
            pct(rules.max_increase),
            pct(kb / nb)
        ));
    }
    if let (Some(e), Some((c, b))) = (ev.slow, ev.tail.shares) {
        if e >= threshold {
            let n = ev.tail.counts;
            reasons.push(format!(
                "canary {} of requests slower than {:.0} ms vs baseline {} ({:.0} of {:.0} vs {:.0} of {:.0}), more than {} above",
                pct(c),
                ev.slow_ms.unwrap_or_default(),
                pct(b),
                n.0,
                n.1,
                n.2,
                n.3,
                pct(lat.max_slow_increase)
            ));
        }
    }
    if let (Some(e), Some(limit)) = (ev.cold, obs.cold_limit_ms) {
        if e >= threshold {
            reasons.push(format!(
                "canary cold starts: {:.0} of {:.0} took longer than {limit:.0} ms ({}× the stable version's median cold start, at least +{:.0} ms)",
                ev.cold_counts.1,
                ev.cold_counts.0,
                lat.max_ratio,
                lat.min_increase_ms
            ));
        }
    }
    if ev.latency >= threshold {
        let c = canary.latency_ms.unwrap_or(f64::NAN);
        let b = baseline
            .latency_ms
            .map_or("no baseline".to_string(), |b| format!("baseline {b:.0} ms"));
        reasons.push(format!(
            "canary {} {c:.0} ms vs {b} over {} periods (limit {}× and +{:.0} ms, ceiling {:.0} ms)",
            lat.stat.cloudwatch_name(),
            ev.latency_periods,
            lat.max_ratio,
            lat.min_increase_ms,
            lat.max_ms
        ));
    }
    reasons
}
