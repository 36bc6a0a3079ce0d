//! Holds that outlast `no_data_timeout`: no canary traffic, too little for the step, no latency
//! past the warm-up, or a shared outage. On-call is told once (or, under `on_no_data: rollback`,
//! a silent canary is rolled back).

use super::{rollback, Action, AliasState, Decision, Version};
use crate::judge::{Judgement, Verdict};
use crate::policy::{OnNoData, Policy};
use crate::text::human_duration;

/// The canary `c` has had no traffic for `no_data_timeout` (rolled back under `on_no_data:
/// rollback`, else on-call is told once), has been held through a shared outage for as long,
/// or has had some traffic but too little to finish its step for as long: short of
/// `min_requests`, or of latency periods past the warm-up (on-call is told once why it is
/// stuck). `None` when none of these.
pub(super) fn quiet(
    state: &AliasState,
    policy: &Policy,
    j: &Judgement,
    c: Version,
    now: i64,
) -> Option<Decision> {
    let record = &state.record;
    let quiet_since = j
        .last_canary_traffic
        .map_or(record.since, |t| t.max(record.since));
    if now.saturating_sub(quiet_since) >= policy.no_data_timeout_secs()
        && j.last_canary_traffic.is_none_or(|t| t < record.since)
    {
        let silent = human_duration(now.saturating_sub(quiet_since));
        match policy.on_no_data {
            OnNoData::Rollback => {
                return Some(rollback(
                    state,
                    state.stable,
                    Some(c),
                    format!("no canary traffic for {silent} (on_no_data: rollback)"),
                ));
            }
            OnNoData::Hold if !record.quiet_alerted => {
                return Some(told_once(
                    state,
                    format!("holding v{c}: no canary traffic for {silent}"),
                ));
            }
            OnNoData::Hold => {}
        }
    }
    if let Some(since) = j.outage_since {
        // Held through a shared outage: on-call hears once when it outlasts `no_data_timeout`.
        let lasted = now.saturating_sub(since);
        if lasted < policy.no_data_timeout_secs() || record.quiet_alerted || record.paused {
            return None;
        }
        return Some(told_once(
            state,
            format!(
                "holding v{c}: the stable version has been failing too for {}",
                human_duration(lasted)
            ),
        ));
    }
    let waited = now.saturating_sub(record.since);
    let at_step = j.canary_requests_at_step;
    let few = at_step < policy.min_requests as f64;
    let stuck = matches!(j.verdict, Verdict::NotEnoughData(_))
        && at_step > 0.0
        && (few || !j.latency_seen.enough())
        && waited >= policy.no_data_timeout_secs();
    if !stuck || record.quiet_alerted || record.paused {
        return None;
    }
    let last = if few {
        format!(
            "holding v{c}: {at_step:.0} of {} canary requests in {}",
            policy.min_requests,
            human_duration(waited)
        )
    } else {
        format!(
            "holding v{c}: {} latency periods past the warm-up at this step in {}",
            j.latency_seen.at_step,
            human_duration(waited)
        )
    };
    Some(told_once(state, last))
}

/// On-call is told once why a canary holds (`Action::NoData`); the record remembers it, with
/// `last` as its last decision, so later ticks hold quietly.
fn told_once(state: &AliasState, last: String) -> Decision {
    let mut next = state.clone();
    next.record.quiet_alerted = true;
    next.record.last = Some(last);
    Decision::new(Action::NoData, Some(next))
}
