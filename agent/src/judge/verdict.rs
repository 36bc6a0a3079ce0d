//! From every test's evidence to the verdict: rolled back on any reason; else held while a
//! test is suspicious (for a bounded time), through a shared outage, or short of requests or
//! latency past the warm-up; else healthy.

use super::outage::Ongoing;
use super::{pct, Evidence, LatencySeen, Observations, Verdict};
use crate::policy::Policy;

/// Evidence needed for a suspicion: below the rollback threshold, but enough that the canary
/// holds its step (rather than moving on) while more data comes in. Under H0 an e-process ever
/// reaches 3 with probability at most 1/3 (Ville), and only a delay follows, never a rollback; the
/// benchmark chose 3 (healthy canaries: median time to 100% unchanged, p95 +0.7 min; 1% 5xx
/// builds caught 79% instead of 61%).
pub const SUSPICION: f64 = 3.0;

/// Margin-test evidence below which a canary worse than the baseline is not held for more data:
/// the data already say its rate is inside the allowed increase (chosen on the benchmark: holds
/// of in-band canaries no longer outlast the hour, 1% 5xx builds caught as often as before).
const MARGIN_HOLD: f64 = 0.3;

/// How a suspicious hold's reason begins; the suspicious tests follow, each as
/// "NAME evidence E (rollback at T)", separated by ", ", then "; for at most D more" (how long
/// the hold may last).
pub const HOLDING: &str = "suspicious, holding for more data: ";

/// How long suspicions may delay a canary in all, at least: policies with steps shorter than
/// 5 minutes get this rather than [`SUSPICION_MAX_INTERVALS`] of their intervals (the defaults'
/// five intervals), so that subtle regressions still get time at small weights.
const SUSPICION_DELAY_SECS: i64 = 25 * 60;

/// A suspicious canary holds a step at most this many step intervals before moving on anyway,
/// and is held at most this many intervals (at least [`SUSPICION_DELAY_SECS`]) past the soonest
/// it could have reached the end of its step at its traffic ([`soonest_end`]), so that
/// suspicions at several steps cannot add up to more than one such delay.
const SUSPICION_MAX_INTERVALS: i64 = 5;

/// The tests whose evidence is at least [`SUSPICION`] (and may lead to a rollback), in words;
/// the cold-start test never holds a step.
pub(super) fn suspicions(ev: &Evidence, threshold: f64) -> Vec<String> {
    let errors = &ev.errors;
    [
        (
            "5xx ceiling",
            if errors.ceiling_may_act {
                errors.ceiling
            } else {
                0.0
            },
        ),
        // Worse than the baseline, with the margin test not against it, is reason enough to
        // wait for more data at this step.
        (
            "5xx vs baseline",
            if errors.margin >= MARGIN_HOLD {
                errors.worse
            } else {
                0.0
            },
        ),
        ("latency", ev.latency),
        // Not the cold-start test: cold starts come with weight increases, not with time at a
        // weight, so a hold would wait for evidence that mostly never comes (the next step's
        // warm-up brings it).
        (
            "slow requests",
            match ev.slow {
                Some(_) if ev.tail.margin >= MARGIN_HOLD => ev.tail.worse,
                _ => 0.0,
            },
        ),
    ]
    .into_iter()
    .filter(|(_, e)| *e >= SUSPICION)
    .map(|(name, e)| format!("{name} evidence {e:.0} (rollback at {threshold:.0})"))
    .collect()
}

/// Why the canary holds through a shared outage, with its numbers: while the stable version
/// fails too, the 5xx tests cannot tell the new build's errors from the dependency's.
fn outage_hold(o: Ongoing) -> String {
    format!(
        "{SHARED_OUTAGE} ({} 5xx, {:.0} of {:.0}, for {} against its usual {}): a shared outage; holding at this step until it passes",
        pct(o.errors / o.requests.max(1.0)),
        o.errors,
        o.requests,
        crate::text::human_duration(o.until.saturating_sub(o.since)),
        pct(o.usual)
    )
}

/// How the hold through a shared outage begins.
pub const SHARED_OUTAGE: &str = "the stable version is failing too";

/// How long after the canary's first period (`began`) it could have reached the end of its
/// current step at the soonest, at the traffic the alias served since: each step's interval,
/// or its `min_requests`, warm-up and latency periods where those take longer
/// ([`Policy::step_seconds`]). Without traffic, never ([`Policy::step_seconds`]'s cap).
fn soonest_end(policy: &Policy, obs: &Observations, began: i64, newest: i64) -> i64 {
    let served: f64 = obs
        .canary
        .iter()
        .chain(&obs.baseline)
        .filter(|s| s.start >= began)
        .map(|s| s.requests.max(0.0))
        .sum();
    let span = newest
        .saturating_sub(began)
        .saturating_add(policy.metrics.period_secs())
        .max(1);
    policy
        .step_seconds(served / span as f64)
        .iter()
        .take(obs.step.saturating_add(1))
        .fold(0_i64, |t, s| t.saturating_add(s.1))
}

/// How much longer a suspicion may hold the canary's step (seconds; 0 or less: no longer):
/// what is left of the step's patience, and of the canary's delay past the soonest end of the
/// step ([`soonest_end`]), counted to the newest canary period.
fn hold_left(policy: &Policy, obs: &Observations) -> i64 {
    let newest = obs
        .canary
        .iter()
        .map(|s| s.start)
        .max()
        .unwrap_or(obs.step_start);
    let patience = SUSPICION_MAX_INTERVALS * policy.step_interval_secs();
    let began = obs.canary.first().map_or(obs.step_start, |s| s.start);
    patience
        .saturating_sub(newest.saturating_sub(obs.step_start))
        .min(
            soonest_end(policy, obs, began, newest)
                .saturating_add(patience.max(SUSPICION_DELAY_SECS))
                .saturating_sub(newest.saturating_sub(began)),
        )
}

/// Regressed on any reason; else held while suspicious (for at most
/// [`SUSPICION_MAX_INTERVALS`] step intervals at the step, and as many, or
/// [`SUSPICION_DELAY_SECS`], past the soonest the canary could have reached the end of it),
/// through a shared outage, short of `min_requests`, or short of latency periods past the
/// warm-up ([`LatencySeen`]); else healthy.
pub(super) fn verdict(
    policy: &Policy,
    obs: &Observations,
    reasons: Vec<String>,
    suspicion: &[String],
    (canary_requests_at_step, latency_seen): (f64, LatencySeen),
    outage_now: Option<Ongoing>,
) -> Verdict {
    // Only a suspicion needs to know how long it may still hold the step.
    let left = if reasons.is_empty() && !suspicion.is_empty() {
        hold_left(policy, obs)
    } else {
        0
    };
    if !reasons.is_empty() {
        Verdict::Regressed(reasons)
    } else if left > 0 {
        Verdict::NotEnoughData(format!(
            "{HOLDING}{}; for at most {} more",
            suspicion.join(", "),
            crate::text::human_duration(left)
        ))
    } else if let Some(o) = outage_now {
        Verdict::NotEnoughData(outage_hold(o))
    } else if canary_requests_at_step < policy.min_requests as f64 {
        Verdict::NotEnoughData(format!(
            "{canary_requests_at_step:.0} of {} canary requests at this step",
            policy.min_requests
        ))
    } else if !latency_seen.enough() {
        Verdict::NotEnoughData(latency_seen.waiting(policy.warmup_secs()))
    } else {
        Verdict::Healthy
    }
}
