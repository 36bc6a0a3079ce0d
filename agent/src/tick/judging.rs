//! Which window of metrics a running canary or bake is judged on, and judging it.

use crate::judge::{judge, judge_bake, judge_recheck, Judgement, Observations};
use crate::policy::Policy;
use crate::ports::{MetricsQuery, Series, Snapshot};
use crate::rollout::{baking, rechecking, AliasState};

/// What to read for the alias's running canary (since it started, or the last five minutes when
/// the record's start is out of range), bake, or recheck (the version back on the alias as the
/// bake's "promoted" version, against its own reference hour); `None` when nothing is running.
pub(super) fn window(policy: &Policy, snap: &Snapshot, now: i64) -> Option<MetricsQuery> {
    let s = &snap.state;
    // (the version whose reference hour is read, the version judged against it)
    let watched = baking(s)
        .map(|b| (b.previous, b.version))
        .or_else(|| rechecking(s).map(|r| (r.stable, r.stable)));
    if let Some((reference, version)) = watched {
        return Some(MetricsQuery::for_bake(
            policy,
            reference,
            version,
            canary_start(s, now),
            now,
        ));
    }
    let c = s.canary?;
    let started = s.record.started;
    let from = if s.record.canary == Some(c.version)
        && (crate::record::EARLIEST..=now).contains(&started)
    {
        started
    } else {
        now.saturating_sub(300)
    };
    Some(MetricsQuery::for_policy(
        policy, s.stable, c.version, from, now,
    ))
}

/// When the canary before a bake began (where the previous version's reference hour ends): the
/// record's `started`, or the promotion itself when that is out of range.
pub(super) fn canary_start(s: &AliasState, now: i64) -> i64 {
    let started = s.record.started;
    if (crate::record::EARLIEST..=s.record.since.min(now)).contains(&started) {
        started
    } else {
        s.record.since.min(now)
    }
}

/// Judges a canary's series, or during a bake the promoted version's since the promotion
/// against the previous version's hour before the canary (during a recheck, the version back on
/// the alias since the rollback against the same hour, its own). The step's requests include the
/// period the step began in (it served the step's weight for part of it), so a step is never a
/// whole period plus the metric delay slower.
pub(super) fn judge_series(
    policy: &Policy,
    state: &AliasState,
    series: Series,
    now: i64,
) -> Judgement {
    let period = policy.metrics.period_secs();
    // A corrupted record is repaired by the decision; judge with the repaired step start.
    let mut record = state.record.clone();
    record.sanitize(policy.steps.len(), now);
    let mut obs = Observations {
        canary: series.canary,
        baseline: series.baseline,
        step_start: record.since.div_euclid(period).saturating_mul(period),
        slow_ms: series.slow_ms,
        cold: series.cold,
        cold_limit_ms: series
            .stable_cold_ms
            .map(|m| crate::judge::cold_limit(&policy.latency, m)),
        latency_wander: series.latency_wander,
        stable_error_rate: series.stable_error_rate,
        step: record.step,
    };
    let recheck = rechecking(state);
    if baking(state).is_none() && recheck.is_none() {
        return judge(policy, &obs);
    }
    if let Some(r) = recheck {
        obs.step_start = r.from.div_euclid(period).saturating_mul(period);
    }
    let start = canary_start(state, now);
    obs.baseline.retain(|b| {
        b.start < start && b.start >= start.saturating_sub(crate::ports::REFERENCE_SECS)
    });
    obs.cold.retain(|c| c.start >= obs.step_start);
    match recheck {
        Some(_) => judge_recheck(policy, &obs),
        None => judge_bake(policy, &obs),
    }
}
