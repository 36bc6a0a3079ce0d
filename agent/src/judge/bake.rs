//! The bake: a promoted version judged against the version it replaced, after 100%.
//!
//! The previous version no longer serves traffic, so there is nothing to compare with period by
//! period: its reference is its own numbers from the hour before the canary began. Each test is
//! one-sample: the promoted version's periods since the promotion against the reference, with
//! the reference's 5xx and slow-request rates taken at an upper confidence bound (the hour is a
//! sample too). Every test splits its share of α in two, half for that bound and half for its
//! e-process, so a healthy version is rolled back by the bake at most `1 - confidence` of the
//! time however often the agent looks.
//!
//! With no concurrent version, an outage of a shared dependency during the bake looks like a
//! regression. The count tests therefore judge minutes ([`BLOCK_SECS`]), not periods, and cap each
//! minute's likelihood ratio so that a rollback needs at least [`MIN_BLOCKS`] minutes of
//! evidence: an outage shorter than that is outlasted, a build that is worse all the time is
//! not. An outage that lasts longer is not told from a build that fails under full load by the
//! bake alone; it points the alias back at the previous version, which the outage hits alike,
//! and [`judge_recheck`] then judges that version against the same reference: if it fails
//! alike, the cause is shared and the rollback is lifted (`rollout`).

use super::counts::{capped_mixture, dispersion, slow_share_periods, Alternatives};
use super::latency::{latency_evidence, latency_limit, warm_periods, LatencySeen};
use super::{cold_starts, pct, totals, Judgement, Observations, Sample, Verdict};
use crate::policy::Policy;
use statrs::distribution::{ContinuousCDF, Gamma};

/// The bake's count tests sum periods into blocks of this many seconds (a minute: as long as a
/// standard AWS/Lambda period, six 10-second EMF periods).
pub(super) const BLOCK_SECS: i64 = 60;
/// Blocks of evidence a bake rollback needs at the least: each block's likelihood ratio is
/// capped at the `MIN_BLOCKS`-th root of the threshold.
pub(super) const MIN_BLOCKS: f64 = 5.0;

/// Periods summed into [`BLOCK_SECS`] blocks by start time (slow counts summed where every
/// period of the block has one), oldest first.
fn blocks(periods: &[Sample]) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for p in periods.iter().filter(|p| p.requests > 0.0) {
        let start = p.start.div_euclid(BLOCK_SECS).saturating_mul(BLOCK_SECS);
        let n = p.requests.max(0.0);
        let errors = p.errors.clamp(0.0, n);
        let slow = p.slow.map(|s| s.clamp(0.0, n));
        match out.last_mut() {
            Some(b) if b.start == start => {
                b.requests += n;
                b.errors += errors;
                b.slow = b.slow.zip(slow).map(|(a, c)| a + c);
            }
            _ => out.push(Sample {
                start,
                requests: n,
                errors,
                latency_ms: None,
                slow,
            }),
        }
    }
    out
}

/// Upper confidence bound (one-sided, at `1 - beta`) of a rate of `k` events in `n` trials,
/// counts already divided by the dispersion: the Poisson (Garwood) bound on the count, over `n`.
/// `None` without trials.
fn upper_rate(k: f64, n: f64, beta: f64) -> Option<f64> {
    if n.is_nan() || n <= 0.0 || !k.is_finite() {
        return None;
    }
    let gamma = Gamma::new(k.clamp(0.0, n) + 1.0, 1.0).ok()?;
    let bound = gamma.inverse_cdf((1.0 - beta).clamp(0.5, 1.0 - 1e-12));
    Some((bound / n).min(1.0))
}

/// The reference's per-period latency statistic: the median over the hour before the canary.
fn reference_latency(reference: &[Sample]) -> Option<f64> {
    super::median(
        reference
            .iter()
            .filter(|s| s.requests > 0.0)
            .filter_map(|s| s.latency_ms.filter(|&l| l > 0.0))
            .collect(),
    )
}

/// What a one-sample watch against the reference hour is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// The bake: the promoted version since the promotion, against the previous version's hour.
    /// A rollback needs [`MIN_BLOCKS`] minutes of evidence, so a short outage is outlasted.
    Bake,
    /// After a rollback in the bake: the version back on the alias since the rollback, against
    /// its own hour. Any minute may be proof: an outage, however short, is what it looks for.
    Recheck,
}

impl Watch {
    fn min_blocks(self) -> f64 {
        match self {
            Self::Bake => MIN_BLOCKS,
            Self::Recheck => 1.0,
        }
    }

    fn since(self) -> &'static str {
        match self {
            Self::Bake => "since the promotion",
            Self::Recheck => "since the rollback",
        }
    }

    fn reference(self) -> &'static str {
        match self {
            Self::Bake => "the previous version's",
            Self::Recheck => "its own",
        }
    }
}

/// Judges the promoted version during its bake. `obs.canary` holds the promoted version's
/// periods since the promotion (`obs.step_start`), `obs.baseline` the previous version's in the
/// hour before the canary; `slow_ms`, `cold` and `cold_limit_ms` as for the canary.
#[must_use]
pub fn judge_bake(policy: &Policy, obs: &Observations) -> Judgement {
    judge_watch(policy, obs, Watch::Bake)
}

/// Judges the version the alias went back to after a rollback in the bake (the recheck):
/// `obs.canary` holds its periods since the rollback (`obs.step_start`), `obs.baseline` its own
/// hour before the canary, as [`judge_bake`] has them. A regression says the reference no
/// longer describes the present: the cause of the rollback is shared. The same tests and
/// threshold as the bake, without its minimum of minutes.
#[must_use]
pub fn judge_recheck(policy: &Policy, obs: &Observations) -> Judgement {
    judge_watch(policy, obs, Watch::Recheck)
}

fn judge_watch(policy: &Policy, obs: &Observations, watch: Watch) -> Judgement {
    // Each test's share is split between its reference bound and its e-process.
    let tests = 2.0 * super::tests(policy);
    let threshold = tests / policy.alpha();
    let current: Vec<Sample> = obs
        .canary
        .iter()
        .filter(|s| s.start >= obs.step_start)
        .copied()
        .collect();
    let canary = totals(&current);
    let baseline = totals(&obs.baseline);
    let beta = policy.alpha() / tests;
    let ev = evidence(policy, obs, &current, (threshold, beta), watch.min_blocks());
    let reasons = reasons(policy, obs, &ev, (&canary, &baseline), (threshold, watch));
    let verdict = if !reasons.is_empty() {
        Verdict::Regressed(reasons)
    } else if canary.requests <= 0.0 {
        Verdict::NotEnoughData(format!("no requests {}", watch.since()))
    } else {
        Verdict::Healthy
    };
    Judgement {
        verdict,
        canary,
        baseline,
        canary_requests_at_step: canary.requests,
        // A bake has no step to hold: its latency test has nothing to wait for.
        latency_seen: LatencySeen::default(),
        last_canary_traffic: current
            .iter()
            .filter(|s| s.requests > 0.0)
            .map(|s| s.start)
            .max(),
        // A bake has no version beside it to hold for: the recheck tells a shared failure.
        outage_since: None,
        ceiling_evidence: ev.ceiling,
        increase_evidence: ev.increase,
        latency_evidence: ev.latency,
        slow_evidence: ev.slow.map(|s| s.0),
        slow_shares: ev.slow.map(|s| s.1),
        cold_evidence: ev.cold,
        tests,
        threshold,
    }
}

/// The bake's tail test: its evidence, the shares of slow requests (promoted, reference) and the
/// promoted version's counts (slow, all).
type TailEvidence = (f64, (f64, f64), (f64, f64));

/// Each bake test's evidence, and what its reasons need to name.
struct Evidence {
    /// Against "5xx since the promotion ≤ `max_rate`".
    ceiling: f64,
    /// Against "5xx ≤ the reference's rate (at its upper bound) + `max_increase`".
    increase: f64,
    /// Against "latency within the limit over the reference's statistic".
    latency: f64,
    /// The latency observations it rests on.
    periods: usize,
    /// The latency limit (ms).
    limit: f64,
    /// The tail test's threshold (ms), when known.
    slow_ms: Option<f64>,
    /// The tail test: evidence, shares and counts, when its threshold is known.
    slow: Option<TailEvidence>,
    /// The cold-start test's evidence, when its limit is known, and the cold starts counted.
    cold: Option<f64>,
    cold_counts: (f64, f64),
}

/// Every bake test on the promoted version's periods since the promotion (`current`), against
/// the reference (`obs.baseline`, the previous version's hour before the canary); `beta` is each
/// reference bound's share of α, and each block's evidence is capped so that reaching the
/// threshold takes `min_blocks` blocks.
fn evidence(
    policy: &Policy,
    obs: &Observations,
    current: &[Sample],
    (threshold, beta): (f64, f64),
    min_blocks: f64,
) -> Evidence {
    let baseline = totals(&obs.baseline);
    let phi = dispersion(&obs.baseline).max(dispersion(current));
    let cap = threshold.powf(1.0 / min_blocks);
    let own: Vec<(f64, f64)> = blocks(current)
        .iter()
        .map(|b| (b.requests / phi, b.errors / phi))
        .collect();
    let rules = policy.errors;
    let ceiling = if rules.max_rate >= 1.0 {
        0.0
    } else {
        capped_mixture(&own, rules.max_rate, Alternatives::Fixed, cap, None)
    };
    let reference_rate = upper_rate(baseline.errors / phi, baseline.requests / phi, beta);
    let increase = reference_rate.map_or(0.0, |r| {
        let p0 = (r + rules.max_increase).min(1.0);
        capped_mixture(&own, p0, Alternatives::Relative, cap, None)
    });
    // The promoted version alone: no concurrent baseline period, so every observation is held
    // against the reference statistic.
    let alone = Observations {
        canary: current.to_vec(),
        step_start: obs.step_start,
        latency_wander: obs.latency_wander,
        ..Observations::default()
    };
    let warm = warm_periods(&alone, policy.warmup_secs());
    let lat = policy.latency;
    let reference = reference_latency(&obs.baseline);
    let (latency, periods) = latency_evidence(policy, &alone, &warm, reference, 1.0);
    let slow_ms = obs.slow_ms.or(lat.slow_ms);
    let slow = slow_ms
        .and_then(|_| slow_evidence(obs, current, &warm, (beta, cap), lat.max_slow_increase));
    let (cold, cold_counts) = cold_starts(obs, threshold);
    Evidence {
        ceiling,
        increase,
        latency,
        periods,
        limit: latency_limit(&lat, reference),
        slow_ms,
        slow,
        cold,
        cold_counts,
    }
}

/// A sentence with its numbers for each test whose evidence reached `threshold`.
fn reasons(
    policy: &Policy,
    obs: &Observations,
    ev: &Evidence,
    (canary, baseline): (&super::Totals, &super::Totals),
    (threshold, watch): (f64, Watch),
) -> Vec<String> {
    let (rules, lat) = (policy.errors, policy.latency);
    let (since, reference) = (watch.since(), watch.reference());
    let mut reasons = Vec::new();
    let (kc, nc) = (canary.errors.min(canary.requests), canary.requests);
    let (kb, nb) = (baseline.errors.min(baseline.requests), baseline.requests);
    if ev.ceiling >= threshold {
        reasons.push(format!(
            "5xx {} ({kc:.0} of {nc:.0}) {since} is above the {} ceiling",
            pct(kc / nc),
            pct(rules.max_rate)
        ));
    }
    if ev.increase >= threshold {
        reasons.push(format!(
            "5xx {} {since} is more than {} above {reference} {} ({kb:.0} of {nb:.0}) before the canary",
            pct(kc / nc),
            pct(rules.max_increase),
            pct(kb / nb)
        ));
    }
    if let Some((_, shares, counts)) = ev.slow.filter(|s| s.0 >= threshold) {
        reasons.push(format!(
            "{} of requests slower than {:.0} ms {since} ({:.0} of {:.0}) vs {reference} {} before the canary, more than {} above",
            pct(shares.0),
            ev.slow_ms.unwrap_or_default(),
            counts.0,
            counts.1,
            pct(shares.1),
            pct(lat.max_slow_increase)
        ));
    }
    if let (Some(e), Some(limit)) = (ev.cold, obs.cold_limit_ms) {
        if e >= threshold {
            reasons.push(format!(
                "cold starts {since}: {:.0} of {:.0} took longer than {limit:.0} ms",
                ev.cold_counts.1, ev.cold_counts.0
            ));
        }
    }
    if ev.latency >= threshold {
        reasons.push(format!(
            "{} {:.0} ms {since} vs {reference} {} before the canary over {} periods (limit {:.0} ms)",
            lat.stat.cloudwatch_name(),
            canary.latency_ms.unwrap_or(f64::NAN),
            baseline
                .latency_ms
                .map_or("(none)".to_string(), |b| format!("{b:.0} ms")),
            ev.periods,
            ev.limit
        ));
    }
    reasons
}

/// The tail test of the bake: the promoted version's share of slow requests in its warm periods
/// (in blocks, each capped at `cap`) against the reference's share (at its upper bound at
/// `1 - beta`) plus `max_increase`. Evidence, the two
/// shares, and (slow, requests) since the promotion; `None` when either side has no counts.
#[allow(clippy::type_complexity)]
fn slow_evidence(
    obs: &Observations,
    current: &[Sample],
    warm: &dyn Fn(i64) -> bool,
    (beta, cap): (f64, f64),
    max_increase: f64,
) -> Option<TailEvidence> {
    let reference: Vec<Sample> = slow_share_periods(&obs.baseline, &|_| true);
    let now: Vec<Sample> = slow_share_periods(current, warm);
    let (r, c) = (totals(&reference), totals(&now));
    let (kr, nr, kc, nc) = (r.errors, r.requests, c.errors, c.requests);
    if nr <= 0.0 || nc <= 0.0 {
        return None;
    }
    let phi = dispersion(&reference).max(dispersion(&now));
    let bound = upper_rate(kr / phi, nr / phi, beta)?;
    let own: Vec<(f64, f64)> = blocks(&now)
        .iter()
        .map(|s| (s.requests / phi, s.errors / phi))
        .collect();
    let e = capped_mixture(
        &own,
        (bound + max_increase).min(1.0),
        Alternatives::Fixed,
        cap,
        None,
    );
    Some((e, (kc / nc, kr / nr), (kc, nc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::Rng;

    const PROMOTED: i64 = 1_795_428_000;

    #[test]
    fn the_upper_bound_of_a_rate_is_above_it_and_shrinks_with_more_data() {
        let small = upper_rate(1.0, 1000.0, 0.001).expect("bound");
        let large = upper_rate(100.0, 100_000.0, 0.001).expect("bound");
        assert!(small > 0.005 && small < 0.02, "{small}");
        assert!(large > 0.001 && large < 0.0015, "{large}");
        assert_eq!(upper_rate(0.0, 0.0, 0.001), None);
        assert!(upper_rate(f64::NAN, 10.0, 0.001).is_none());
        assert!(upper_rate(5.0, 5.0, 0.001).expect("bound") <= 1.0);
    }

    /// One minute of a version at 10 req/s: 5xx at `rate`, p99 around 250 ms (wandering 10%),
    /// slow requests (over the reference's p99) at `slow`.
    fn minute(rng: &mut Rng, start: i64, rate: f64, slow: f64) -> Sample {
        let n = rng.poisson(600.0);
        Sample {
            start,
            requests: n as f64,
            errors: rng.binomial(n, rate) as f64,
            latency_ms: Some(250.0 * (0.1 * rng.normal()).exp()),
            slow: Some(rng.binomial(n, slow) as f64),
        }
    }

    /// The previous version's hour before the canary (which began 20 minutes before the
    /// promotion): 0.1% 5xx, 1% slow.
    fn reference(rng: &mut Rng) -> Vec<Sample> {
        (0..60)
            .map(|m| minute(rng, PROMOTED - 1200 - 3600 + 60 * m, 0.001, 0.01))
            .collect()
    }

    /// Looks at every minute of a 15-minute bake whose minute `m` has 5xx `rate(m)`; the minute
    /// of the first rollback, if any.
    fn bake_run(seed: u64, rate: &dyn Fn(i64) -> f64, slow: f64) -> Option<i64> {
        watch_run(Watch::Bake, seed, rate, slow)
    }

    /// [`bake_run`] for either watch.
    fn watch_run(watch: Watch, seed: u64, rate: &dyn Fn(i64) -> f64, slow: f64) -> Option<i64> {
        let mut rng = Rng::new(seed);
        let policy = Policy::with_defaults("f");
        let mut obs = Observations {
            baseline: reference(&mut rng),
            step_start: PROMOTED,
            slow_ms: Some(250.0),
            ..Observations::default()
        };
        for m in 0..15 {
            obs.canary
                .push(minute(&mut rng, PROMOTED + 60 * m, rate(m), slow));
            if matches!(
                judge_watch(&policy, &obs, watch).verdict,
                Verdict::Regressed(_)
            ) {
                return Some(m);
            }
        }
        None
    }

    fn rolled_back_share(runs: u64, rate: &dyn Fn(i64) -> f64, slow: f64) -> f64 {
        let hits = (0..runs)
            .filter(|&seed| bake_run(seed, rate, slow).is_some())
            .count();
        hits as f64 / runs as f64
    }

    #[test]
    fn a_version_at_the_edge_of_max_increase_is_rolled_back_by_the_bake_at_most_its_share() {
        // 0.1% + the default max_increase (0.1 points): the null's boundary for the 5xx test,
        // looked at every minute; its share of alpha is 1% / 4.
        let share = 0.01 / 4.0;
        let runs = 2000;
        let noise = 2.0 * (share / runs as f64).sqrt();
        let edge = 0.001 + Policy::with_defaults("f").errors.max_increase;
        let rate = rolled_back_share(runs, &|_| edge, 0.01);
        assert!(rate <= share + noise, "{:.2}%", rate * 100.0);
        // And a healthy version, like the one before it, practically never.
        let healthy = rolled_back_share(500, &|_| 0.001, 0.01);
        assert!(healthy <= 0.004, "{:.2}%", healthy * 100.0);
    }

    #[test]
    fn the_bake_rolls_back_a_one_percent_build_and_a_tail_regression() {
        // At 10 req/s each minute is capped, so a 1% build needs most of the 15 minutes
        // (measured: 84.5%); the canary before it caught most such builds already.
        let caught = rolled_back_share(200, &|_| 0.01, 0.01);
        assert!(caught >= 0.8, "1% 5xx: {:.1}%", caught * 100.0);
        // 3% of requests slower than the reference's p99, on top of its own 1%.
        let tail = rolled_back_share(200, &|_| 0.001, 0.04);
        assert!(tail >= 0.95, "tail: {:.1}%", tail * 100.0);
    }

    #[test]
    fn an_outage_shorter_than_min_blocks_minutes_is_outlasted_and_a_longer_one_is_not() {
        // +3% 5xx on everything for the first minutes of the bake (a shared dependency).
        let short = rolled_back_share(200, &|m| if m < 4 { 0.031 } else { 0.001 }, 0.01);
        assert!(short <= 0.01, "4 minutes: {:.1}%", short * 100.0);
        let long = rolled_back_share(200, &|m| if m < 8 { 0.031 } else { 0.001 }, 0.01);
        assert!(long >= 0.9, "8 minutes: {:.1}%", long * 100.0);
    }

    #[test]
    fn the_recheck_sees_an_outage_the_bake_outlasts_and_keeps_its_share_on_a_healthy_version() {
        let share = |watch, runs: u64, rate: &dyn Fn(i64) -> f64| {
            (0..runs)
                .filter(|&seed| watch_run(watch, seed, rate, 0.01).is_some())
                .count() as f64
                / runs as f64
        };
        // Two minutes of +3% 5xx after the rollback: proof of a shared cause for the recheck,
        // outlasted by the bake (which needs five minutes to roll back).
        let outage = |m: i64| if m < 2 { 0.031 } else { 0.001 };
        let recheck = share(Watch::Recheck, 200, &outage);
        assert!(recheck >= 0.95, "recheck: {:.1}%", recheck * 100.0);
        assert!(share(Watch::Bake, 200, &outage) <= 0.01);
        // A healthy version at the null's edge (0.1% + max_increase) lifts a rollback at most
        // the 5xx test's share of α, with no minimum of minutes either.
        let runs = 2000;
        let alpha_share = 0.01 / 4.0;
        let at = 0.001 + Policy::with_defaults("f").errors.max_increase;
        let edge = share(Watch::Recheck, runs, &|_| at);
        let noise = 2.0 * (alpha_share / runs as f64).sqrt();
        assert!(edge <= alpha_share + noise, "{:.2}%", edge * 100.0);
    }

    #[test]
    fn the_bake_reports_its_numbers_and_says_what_it_compared() {
        let mut rng = Rng::new(3);
        let policy = Policy::with_defaults("f");
        let obs = Observations {
            baseline: reference(&mut rng),
            canary: (0..10)
                .map(|m| minute(&mut rng, PROMOTED + 60 * m, 0.05, 0.01))
                .collect(),
            step_start: PROMOTED,
            ..Observations::default()
        };
        let j = judge_bake(&policy, &obs);
        let Verdict::Regressed(reasons) = &j.verdict else {
            panic!("{j:?}");
        };
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("since the promotion") && r.contains("before the canary")),
            "{reasons:?}"
        );
        // Each test's share is split between its reference bound and its e-process.
        assert!((j.tests - 8.0).abs() < 1e-9 && (j.threshold - 800.0).abs() < 1e-6);
        // Periods before the promotion are the canary's, not the bake's.
        let mut earlier = obs.clone();
        earlier.step_start = PROMOTED + 600;
        assert_eq!(
            judge_bake(&policy, &earlier).verdict,
            Verdict::NotEnoughData("no requests since the promotion".to_string())
        );
    }
}
