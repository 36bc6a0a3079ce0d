//! The watch after 100%: the bake of a promoted version, and the recheck of the previous one
//! after a rollback in the bake.

use super::{
    hold, rollback, startable, unjudged, Action, AliasState, Bake, Decision, Recheck, Version,
};
use crate::judge::{Judgement, Verdict};
use crate::policy::Policy;
use crate::text::human_duration;

/// A promoted version under watch: reverted to the previous version on a regression, ended when
/// its time is up; a new candidate waits for the end.
pub(super) fn bake(
    state: &AliasState,
    policy: &Policy,
    judgement: Option<&Judgement>,
    b: Bake,
    now: i64,
) -> Decision {
    let v = b.version;
    if now >= b.until {
        return end_bake(state, v, "its time is up".to_string());
    }
    if state.candidate == Some(b.previous) {
        return rollback(
            state,
            b.previous,
            Some(v),
            format!(
                "the {} alias moved back to v{} during the bake",
                policy.candidate_alias, b.previous
            ),
        );
    }
    let Some(j) = judgement else {
        return unjudged(state, policy, v, now);
    };
    if let Verdict::Regressed(reasons) = &j.verdict {
        let mut d = rollback(
            state,
            b.previous,
            Some(v),
            format!(
                "during the bake, against v{}'s numbers before the canary: {}",
                b.previous,
                reasons.join("; ")
            ),
        );
        // Unless a recheck already lifted this version's rollback once, the previous version is
        // judged against the same reference for as long as the bake was to last.
        if state.record.lifted != Some(v) {
            if let Some(next) = d.next.as_mut() {
                next.record.recheck = Some(Recheck {
                    version: v,
                    stable: b.previous,
                    from: now,
                    until: now.saturating_add(policy.bake_secs()),
                    rejected_before: state.record.rejected,
                });
            }
        }
        return d;
    }
    let left = human_duration(b.until.saturating_sub(now));
    let waiting = state
        .candidate
        .filter(|&c| c != v && startable(&state.record, c))
        .map_or(String::new(), |c| {
            format!(
                "; v{c} starts after it (`canary promote {}` ends the bake now)",
                policy.function
            )
        });
    hold(format!("baking v{v}, {left} left{waiting}"))
}

/// Ends the bake of `version` (the stable version).
pub(super) fn end_bake(state: &AliasState, version: Version, why: String) -> Decision {
    let mut next = state.clone();
    next.record.bake = None;
    next.record.unjudged_since = None;
    next.record.unprotected_paged = false;
    next.record.last = Some(format!("v{version} baked: {why}"));
    Decision::new(Action::Baked { version }, Some(next))
}

/// After a rollback in the bake, the version the alias went back to (`r.stable`) is judged
/// against the reference the bake used. A regression lifts the rollback: the cause is shared,
/// and the rolled-back version may start again (once). The recheck ends with the rollback
/// standing when its time is up. `None` when a newer candidate takes over (its start ends the
/// recheck).
pub(super) fn recheck(
    state: &AliasState,
    judgement: Option<&Judgement>,
    r: Recheck,
    now: i64,
) -> Option<Decision> {
    let (v, s) = (r.version, r.stable);
    if state.candidate.is_some_and(|c| c > v) {
        return None;
    }
    if let Some(Verdict::Regressed(reasons)) = judgement.map(|j| &j.verdict) {
        let why = reasons.join("; ");
        let mut next = state.clone();
        next.record.recheck = None;
        next.record.rejected = r.rejected_before;
        next.record.lifted = Some(v);
        next.record.last = Some(format!("v{v}'s rollback lifted: v{s} fails alike ({why})"));
        return Some(Decision::new(
            Action::Lift {
                version: v,
                stable: s,
                why,
            },
            Some(next),
        ));
    }
    if now >= r.until {
        let why = format!("v{v} stays rolled back: v{s} kept its numbers after the rollback");
        let mut next = state.clone();
        next.record.recheck = None;
        next.record.last = Some(why.clone());
        return Some(Decision::new(Action::Hold(why), Some(next)));
    }
    let left = human_duration(r.until.saturating_sub(now));
    Some(hold(match judgement {
        Some(_) => {
            format!("v{v} rolled back in its bake; checking whether v{s} fails alike, {left} left")
        }
        None => format!("v{v} rolled back in its bake; v{s} could not be judged yet, {left} left"),
    }))
}
