//! The rollout state machine: (alias state, policy, verdict, override, now) → one action.
//!
//! Pure. The state lives in AWS: the alias's `FunctionVersion` is the stable version, its routing
//! config holds the canary version and weight, and the agent's [`Record`] rides in the alias
//! description, written in the same `UpdateAlias` call under the alias's `RevisionId`.

use crate::judge::{Judgement, Verdict};
use crate::policy::Policy;

use crate::record::LEASE_SECS;
pub use crate::record::{
    Bake, EventKind, Owed, Recheck, Record, Version, DESCRIPTION_LIMIT, RECORD_PREFIX,
};
pub use manual::{Override, OverrideError, REASON_LIMIT};

mod bake;
mod manual;
mod quiet;
pub mod release;
mod types;
pub use types::{Action, AliasState, Decision, Routing};
pub mod wait;
use crate::text::human_duration;
use bake::{bake, end_bake, recheck};
use quiet::quiet;
use release::{Call, Order, ReleaseMark};

/// Decides the next action for one alias.
///
/// `judgement` is the judge's view of the running canary (ignored when there is none). A person's
/// `override` always wins over the agent's own reasoning.
///
/// # Errors
/// An override that does not apply to the current state (promote with no canary, start with no
/// candidate, rollback to where the alias already is).
pub fn decide(
    state: &AliasState,
    policy: &Policy,
    judgement: Option<&Judgement>,
    ovr: Option<&Override>,
    now: i64,
) -> Result<Decision, OverrideError> {
    decide_in(state, policy, judgement, ovr, &Call::alone(), now)
}

/// [`decide`] for a member of a release, doing its part ([`release::coordinate`]): its forward
/// moves held while the release waits for another member, its rollback with the release's, and
/// its announcement left to another member's when the release announces once.
///
/// # Errors
/// As [`decide`].
pub fn decide_in(
    state: &AliasState,
    policy: &Policy,
    judgement: Option<&Judgement>,
    ovr: Option<&Override>,
    call: &Call,
    now: i64,
) -> Result<Decision, OverrideError> {
    let (mut adopted, problems) = adopt(state, policy, now);
    if let Some(id) = call.id.filter(|_| judged(&adopted).is_some()) {
        if adopted.record.release.is_none_or(|m| m.id != id) {
            adopted.record.release = Some(ReleaseMark::live(id));
        }
    }
    let mut d = ordered(&adopted, policy, judgement, ovr, call, now)?;
    mark_release(&mut d, &adopted, call);
    d.problems = problems;
    if matches!(d.action, Action::Step { .. }) {
        if let Some(next) = d.next.as_mut() {
            next.record.since = now;
        }
    }
    if ovr.is_none() && judgement.is_some() && judged(&adopted).is_some() {
        back_under_protection(&adopted, &mut d, now);
    }
    if let Some(event) = d.action.event().filter(|_| call.announce) {
        owe(&mut d, &adopted, event, ovr.is_some(), now);
    } else if d.next.is_none() && adopted != *state {
        // Nothing to do, but the record must catch up (a canary set by hand, a repair).
        d.next = Some(adopted);
    }
    Ok(d)
}

/// What the call's order (or a person's override) makes of the adopted state, before the
/// release's mark, the step's clock and the announcement are added.
fn ordered(
    adopted: &AliasState,
    policy: &Policy,
    judgement: Option<&Judgement>,
    ovr: Option<&Override>,
    call: &Call,
    now: i64,
) -> Result<Decision, OverrideError> {
    Ok(match (ovr, &call.order) {
        (Some(o), _) => manual::manual(adopted, policy, o, now)?,
        (None, Order::Follow(why) | Order::HoldBack(why)) => follow(adopted, why, call.id),
        (None, Order::Restart(v)) => start(adopted, policy, *v, now),
        (None, Order::Finish) => match baking(adopted) {
            Some(b) => end_bake(
                adopted,
                b.version,
                "the release's other members ended their bake".to_string(),
            ),
            None => automatic(adopted, policy, judgement, now),
        },
        (None, Order::Wait(why)) => {
            let own = automatic(adopted, policy, judgement, now);
            if release::forward(&own.action) {
                hold(why.clone())
            } else {
                own
            }
        }
        (None, Order::Alone | Order::Go) => automatic(adopted, policy, judgement, now),
    })
}

/// Writes the announcement of `event` into the record the decision writes ("owed" until SNS
/// takes it), giving up the least needed one when too many are owed.
fn owe(d: &mut Decision, adopted: &AliasState, event: EventKind, manual: bool, now: i64) {
    let before = adopted.canary.map(|c| c.version);
    let version = match d.action {
        Action::Start { version, .. }
        | Action::Step { version, .. }
        | Action::Promote { version }
        | Action::Baked { version }
        | Action::Lift { version, .. }
        | Action::Unprotected { version, .. } => Some(version),
        Action::Rollback { rejected, .. } => rejected.or(before),
        _ => before,
    };
    let next = d.next.get_or_insert_with(|| adopted.clone());
    let owed = Owed {
        event,
        version,
        stable: next.stable,
        at: now,
        manual,
        lease: now.saturating_add(LEASE_SECS),
    };
    if let Some(lost) = next.record.owe(owed) {
        d.problems.push(format!(
            "gave up the owed {} announcement of {} (more than {} owed)",
            lost.event.as_str(),
            lost.at,
            crate::record::OWED_LIMIT
        ));
    }
}

/// Writes the member's part in its release into the decision's record: a start joins the
/// release; a rollback of a member under way marks it rolled back (and whether this record
/// announces the release's rollback).
fn mark_release(d: &mut Decision, adopted: &AliasState, call: &Call) {
    let (Some(id), Some(next)) = (call.id, d.next.as_mut()) else {
        return;
    };
    match d.action {
        Action::Start { .. } => next.record.release = Some(ReleaseMark::live(id)),
        Action::Rollback { .. } if judged(adopted).is_some() => {
            next.record.release = Some(ReleaseMark {
                id,
                rolled_back: true,
                follower: matches!(call.order, Order::Follow(_)),
                announced: call.announce && call.order != Order::Alone,
            });
        }
        _ => {}
    }
}

/// Rolls back with the release: a canary to the stable version, a bake to the version before
/// it. Its version is recorded as rolled back, like any other (a person may start it again; the
/// release's next deploy restarts it). A new candidate not started yet is held back the same
/// way, with nothing to move.
fn follow(state: &AliasState, why: &str, id: Option<i64>) -> Decision {
    match (state.canary, baking(state), state.candidate) {
        (Some(c), _, _) => rollback(state, state.stable, Some(c.version), why.to_string()),
        (None, Some(b), _) => rollback(state, b.previous, Some(b.version), why.to_string()),
        (None, None, Some(v)) if v != state.stable => {
            let mut next = state.clone();
            next.record.rejected = next.record.rejected.max(Some(v));
            next.record.release = id.map(|id| ReleaseMark {
                id,
                rolled_back: true,
                follower: true,
                announced: false,
            });
            next.record.last = Some(format!(
                "v{v} held back with its release (starts with the release's next deploy): {why}"
            ));
            Decision::new(
                Action::Hold(format!("v{v} held back with its release: {why}")),
                Some(next),
            )
        }
        (None, None, _) => hold(format!("nothing to roll back: {why}")),
    }
}

/// The canary is judged again: clear the "not judged since" marks and, if on-call was told it
/// was unprotected, owe them a "protected again".
fn back_under_protection(adopted: &AliasState, d: &mut Decision, now: i64) {
    let r = &adopted.record;
    if r.unjudged_since.is_none() && !r.unprotected_paged {
        return;
    }
    let next = d.next.get_or_insert_with(|| adopted.clone());
    next.record.unjudged_since = None;
    next.record.unprotected_paged = false;
    if r.unprotected_paged {
        let owed = Owed {
            event: EventKind::Protected,
            version: judged(adopted),
            stable: adopted.stable,
            at: now,
            manual: false,
            lease: now.saturating_add(LEASE_SECS),
        };
        if let Some(lost) = next.record.owe(owed) {
            d.problems.push(format!(
                "gave up the owed {} announcement of {}",
                lost.event.as_str(),
                lost.at
            ));
        }
    }
}

/// Makes the record agree with the alias: values no agent writes are repaired (and reported), a
/// canary set by hand (or a record left by a crash before the write) is adopted at the nearest
/// step at or below its weight.
fn adopt(state: &AliasState, policy: &Policy, now: i64) -> (AliasState, Vec<String>) {
    let mut s = state.clone();
    let was_corrupt = s.record.corrupt.is_some();
    let problems = s.record.sanitize(policy.steps.len(), now);
    if state.canary.is_some() {
        s.record.bake = None;
    }
    if s.record
        .recheck
        .is_some_and(|r| state.canary.is_some() || r.stable != state.stable)
    {
        // The alias was moved since the rollback (by hand): the recheck's premise is gone, and
        // the rollback stands.
        s.record.recheck = None;
    }
    match state.canary {
        Some(r)
            if s.record.canary != Some(r.version) || !is_step(policy, s.record.step, r.weight) =>
        {
            let step = policy
                .steps
                .iter()
                .rposition(|&w| w <= r.weight + 1e-9)
                .unwrap_or(0);
            if s.record.canary != Some(r.version) {
                // A canary set by hand is no release's until the coordinator says so.
                s.record.release = None;
                s.record.since = now;
                s.record.started = now;
                s.record.quiet_alerted = false;
                s.record.unjudged_since = None;
                s.record.unprotected_paged = false;
            }
            s.record.canary = Some(r.version);
            s.record.step = step;
        }
        None if s.record.canary.is_some() => {
            // Someone removed the routing by hand (the console's "rollback"): unless they made the
            // canary the stable version, respect it as a rollback and do not start it again.
            if let Some(c) = s.record.canary.filter(|&c| c != s.stable) {
                s.record.rejected = s.record.rejected.max(Some(c));
                s.record.last = Some(format!(
                    "v{c} was taken off the alias by hand; not restarted"
                ));
            }
            s.record.canary = None;
            s.record.step = 0;
            s.record.unjudged_since = None;
            s.record.unprotected_paged = false;
        }
        None if s.record.bake.is_some_and(|b| b.version != s.stable) => {
            // The alias was moved by hand during a bake: the bake was about another version.
            s.record.bake = None;
            s.record.unjudged_since = None;
            s.record.unprotected_paged = false;
        }
        None if was_corrupt => {
            // What was rolled back is unknown: start nothing on our own until a new deploy.
            if let Some(v) = s.candidate.filter(|&v| v != s.stable) {
                s.record.rejected = s.record.rejected.max(Some(v));
                s.record.last = Some(format!(
                    "unreadable record replaced; v{v} not started automatically"
                ));
            }
        }
        _ => {}
    }
    (s, problems)
}

/// The bake in progress: the record's, while the alias serves only the version it is about.
#[must_use]
pub fn baking(state: &AliasState) -> Option<Bake> {
    state
        .record
        .bake
        .filter(|b| state.canary.is_none() && b.version == state.stable)
}

/// The recheck in progress: the record's, while the alias serves only the version it judges.
#[must_use]
pub fn rechecking(state: &AliasState) -> Option<Recheck> {
    state
        .record
        .recheck
        .filter(|r| state.canary.is_none() && r.stable == state.stable)
}

/// The version the agent judges on this alias: the canary, or the version baking at 100%.
#[must_use]
pub fn judged(state: &AliasState) -> Option<Version> {
    state
        .canary
        .map(|c| c.version)
        .or_else(|| baking(state).map(|b| b.version))
}

fn is_step(policy: &Policy, step: usize, weight: f64) -> bool {
    policy
        .steps
        .get(step)
        .is_some_and(|&w| (w - weight).abs() < 1e-9)
}

fn hold(why: impl Into<String>) -> Decision {
    Decision::new(Action::Hold(why.into()), None)
}

/// Whether the candidate `v` may be started without a person: only versions newer than every
/// version rolled back on this alias.
pub(crate) fn startable(record: &Record, v: Version) -> bool {
    record.rejected.is_none_or(|r| v > r)
}

/// The running canary could not be judged this tick (its metrics could not be read): note since
/// when, and tell on-call once it has lasted `unprotected_after`.
fn unjudged(state: &AliasState, policy: &Policy, version: Version, now: i64) -> Decision {
    let record = &state.record;
    let since = record.unjudged_since.unwrap_or(now);
    let waited = now.saturating_sub(since);
    let why = format!("could not judge v{version} for {}", human_duration(waited));
    if record.unprotected_paged {
        return hold(why);
    }
    let mut next = state.clone();
    next.record.unjudged_since = Some(since);
    if waited >= policy.unprotected_after_secs() {
        next.record.unprotected_paged = true;
        next.record.last = Some(format!("v{version} unprotected: {why}"));
        return Decision::new(Action::Unprotected { version, since }, Some(next));
    }
    Decision::new(
        Action::Hold(why),
        (record.unjudged_since.is_none()).then_some(next),
    )
}

/// What the agent does on its own this tick: bake, start, replace, roll back, tell on-call the
/// canary is quiet or stuck, hold, or move forward.
fn automatic(
    state: &AliasState,
    policy: &Policy,
    judgement: Option<&Judgement>,
    now: i64,
) -> Decision {
    let record = &state.record;
    if let Some(b) = baking(state) {
        return bake(state, policy, judgement, b, now);
    }
    if let Some(d) = rechecking(state).and_then(|r| recheck(state, judgement, r, now)) {
        return d;
    }
    let Some(canary) = state.canary else {
        return without_canary(state, policy, now);
    };
    let c = canary.version;
    match state.candidate {
        Some(v) if v == state.stable => {
            return rollback(
                state,
                state.stable,
                Some(c),
                format!("the {} alias moved back to v{v}", policy.candidate_alias),
            );
        }
        // A replacement is a forward move: while paused, the old canary stays judged instead.
        Some(v) if v != c && startable(record, v) && !record.paused => {
            return start(state, policy, v, now);
        }
        _ => {}
    }
    let Some(j) = judgement else {
        return unjudged(state, policy, c, now);
    };
    if let Verdict::Regressed(reasons) = &j.verdict {
        return rollback(state, state.stable, Some(c), reasons.join("; "));
    }
    if let Some(d) = quiet(state, policy, j, c, now) {
        return d;
    }
    if record.paused {
        return hold(format!("paused at {}%", canary.weight));
    }
    let waited = now.saturating_sub(record.since);
    let interval = policy.step_interval_secs();
    match &j.verdict {
        Verdict::NotEnoughData(why) => hold(why.clone()),
        Verdict::Healthy if waited < interval => hold(format!(
            "healthy; {} more at {}%",
            human_duration(interval.saturating_sub(waited)),
            canary.weight
        )),
        Verdict::Healthy | Verdict::Regressed(_) => forward(state, policy, c, false, now),
    }
}

/// No canary running: start the candidate when there is a new one that may start, else say why
/// not.
fn without_canary(state: &AliasState, policy: &Policy, now: i64) -> Decision {
    let record = &state.record;
    match state.candidate {
        None => hold(format!("no {} alias", policy.candidate_alias)),
        Some(v) if v == state.stable => hold(format!("v{v} is live; no new candidate")),
        Some(v) if !startable(record, v) => {
            let r = record.rejected.unwrap_or_default();
            let what = if v == r {
                format!("v{v} was rolled back")
            } else {
                format!("v{v} is older than v{r}, which was rolled back")
            };
            hold(format!(
                "{what}; waiting for a newer {} version (or `canary start {} --version {v}`)",
                policy.candidate_alias, policy.function
            ))
        }
        Some(_) if record.paused => hold("paused"),
        Some(v) => start(state, policy, v, now),
    }
}

fn start(state: &AliasState, policy: &Policy, version: Version, now: i64) -> Decision {
    let weight = policy.steps.first().copied().unwrap_or(100.0);
    if weight >= 100.0 {
        return promote(state, policy, version, now);
    }
    let mut next = state.clone();
    next.canary = Some(Routing { version, weight });
    next.record = Record {
        canary: Some(version),
        step: 0,
        since: now,
        started: now,
        paused: state.record.paused,
        rejected: state.record.rejected,
        lifted: state.record.lifted,
        last: Some(format!("started v{version} at {weight}%")),
        owed: state.record.owed.clone(),
        ..Record::default()
    };
    Decision::new(Action::Start { version, weight }, Some(next))
}

fn forward(state: &AliasState, policy: &Policy, c: Version, full: bool, now: i64) -> Decision {
    let step = state.record.step.saturating_add(1);
    match policy.steps.get(step) {
        Some(&weight) if weight < 100.0 && !full => {
            let mut next = state.clone();
            next.canary = Some(Routing { version: c, weight });
            next.record.step = step;
            // `since` is set to the decision's clock by `decide`.
            next.record.quiet_alerted = false;
            next.record.last = Some(format!("v{c} to {weight}%"));
            Decision::new(
                Action::Step {
                    version: c,
                    step,
                    weight,
                },
                Some(next),
            )
        }
        _ => promote(state, policy, c, now),
    }
}

/// Makes `version` the stable version; with a `bake`, it is watched against the version it
/// replaces until the bake ends. The bake starts now (`since`); `started` stays the canary's
/// start (or now, with no canary), where the previous version's reference numbers end.
fn promote(state: &AliasState, policy: &Policy, version: Version, now: i64) -> Decision {
    let mut next = state.clone();
    next.stable = version;
    next.canary = None;
    if state.record.canary != Some(version) {
        next.record.started = now;
    }
    next.record.since = now;
    let bake = policy.bake_secs();
    next.record.bake = (bake > 0 && state.stable != version).then(|| Bake {
        version,
        previous: state.stable,
        until: now.saturating_add(bake),
    });
    next.record.canary = None;
    next.record.recheck = None;
    next.record.step = 0;
    next.record.quiet_alerted = false;
    next.record.unjudged_since = None;
    next.record.unprotected_paged = false;
    next.record.last = Some(format!("promoted v{version} to 100%"));
    Decision::new(Action::Promote { version }, Some(next))
}

fn rollback(state: &AliasState, to: Version, rejected: Option<Version>, why: String) -> Decision {
    let mut next = state.clone();
    next.stable = to;
    next.canary = None;
    next.record.canary = None;
    next.record.step = 0;
    next.record.quiet_alerted = false;
    next.record.unjudged_since = None;
    next.record.unprotected_paged = false;
    next.record.bake = None;
    next.record.recheck = None;
    // The newest rolled-back version is all the record needs: versions only grow.
    next.record.rejected = next.record.rejected.max(rejected);
    next.record.last = Some(match rejected {
        Some(r) => format!("rolled back v{r} to v{to}: {why}"),
        None => format!("rolled back to v{to}: {why}"),
    });
    Decision::new(Action::Rollback { to, rejected, why }, Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Judgement;
    use crate::policy::OnNoData;
    use proptest::prelude::*;

    fn judgement(verdict: Verdict, last_traffic: Option<i64>) -> Judgement {
        Judgement::fixture(verdict, last_traffic)
    }

    fn healthy(now: i64) -> Judgement {
        judgement(Verdict::Healthy, Some(now - 60))
    }

    fn regressed(now: i64) -> Judgement {
        judgement(Verdict::Regressed(vec!["5xx 100%".into()]), Some(now - 60))
    }

    fn live(stable: Version, candidate: Option<Version>) -> AliasState {
        AliasState {
            stable,
            canary: None,
            candidate,
            record: Record::default(),
        }
    }

    fn run(s: &AliasState, p: &Policy, j: Option<&Judgement>, now: i64) -> Decision {
        decide(s, p, j, None, now).expect("automatic decisions never fail")
    }

    fn policy() -> Policy {
        Policy::with_defaults("notes-create")
    }

    #[test]
    fn a_new_candidate_starts_at_the_first_step() {
        let d = run(&live(1, Some(2)), &policy(), None, 1000);
        assert_eq!(
            d.action,
            Action::Start {
                version: 2,
                weight: 10.0
            }
        );
        let next = d.next.expect("writes");
        assert_eq!(next.stable, 1);
        assert_eq!(next.record.canary, Some(2));
        assert_eq!(next.record.since, 1000);
        assert_eq!(
            next.record.owed.iter().map(|o| o.event).collect::<Vec<_>>(),
            [EventKind::Started],
            "the start is announced"
        );
    }

    #[test]
    fn nothing_to_do_without_a_new_candidate() {
        for s in [live(3, Some(3)), live(3, None)] {
            let d = run(&s, &policy(), None, 0);
            assert!(matches!(d.action, Action::Hold(_)));
            assert_eq!(d.next, None, "a hold writes nothing");
        }
    }

    fn canary_at(stable: Version, c: Version, step: usize, since: i64) -> AliasState {
        let p = policy();
        AliasState {
            stable,
            canary: Some(Routing {
                version: c,
                weight: p.steps[step],
            }),
            candidate: Some(c),
            record: Record {
                canary: Some(c),
                step,
                since,
                started: since,
                ..Record::default()
            },
        }
    }

    #[test]
    fn regression_rolls_back_at_once_even_mid_step_and_even_paused() {
        let mut s = canary_at(6, 7, 0, 1000);
        for paused in [false, true] {
            s.record.paused = paused;
            let d = run(&s, &policy(), Some(&regressed(1010)), 1010);
            assert!(matches!(
                d.action,
                Action::Rollback {
                    to: 6,
                    rejected: Some(7),
                    ..
                }
            ));
            let next = d.next.expect("writes");
            assert_eq!((next.stable, next.canary), (6, None));
            assert_eq!(next.record.rejected, Some(7));
        }
    }

    /// v7 promoted over v6 at 2000 (its canary began at 1000), baking for the default 15m.
    fn baked_state() -> AliasState {
        let d = run(
            &canary_at(6, 7, 2, 1000),
            &policy(),
            Some(&healthy(2000)),
            2000,
        );
        assert_eq!(d.action, Action::Promote { version: 7 });
        d.next.expect("writes")
    }

    #[test]
    fn a_promotion_starts_a_bake_against_the_version_it_replaces() {
        let s = baked_state();
        assert_eq!(
            s.record.bake,
            Some(Bake {
                version: 7,
                previous: 6,
                until: 2900
            })
        );
        assert_eq!((s.record.since, s.record.started), (2000, 1000));
        assert_eq!(baking(&s).map(|b| b.version), Some(7));
        assert_eq!(judged(&s), Some(7));
        // Healthy: hold, say how long is left, write nothing.
        let d = run(&s, &policy(), Some(&healthy(2300)), 2300);
        assert!(
            matches!(&d.action, Action::Hold(w) if w == "baking v7, 10m left"),
            "{:?}",
            d.action
        );
        assert_eq!(d.next, None);
        // With no bake, a promotion is the end.
        let mut p = policy();
        p.bake = std::time::Duration::ZERO;
        let d = run(&canary_at(6, 7, 2, 1000), &p, Some(&healthy(2000)), 2000);
        assert_eq!(d.next.expect("writes").record.bake, None);
    }

    #[test]
    fn a_regression_during_the_bake_points_the_alias_back_at_the_previous_version() {
        let s = baked_state();
        let d = run(&s, &policy(), Some(&regressed(2500)), 2500);
        let Action::Rollback { to, rejected, why } = &d.action else {
            panic!("{:?}", d.action);
        };
        assert_eq!((*to, *rejected), (6, Some(7)));
        assert!(
            why.starts_with("during the bake, against v6's numbers"),
            "{why}"
        );
        let next = d.next.expect("writes");
        assert_eq!(
            (next.stable, next.canary, next.record.bake),
            (6, None, None)
        );
        assert_eq!(next.record.rejected, Some(7));
        assert_eq!(
            next.record
                .owed
                .last()
                .map(|o| (o.event, o.version, o.stable)),
            Some((EventKind::RolledBack, Some(7), 6))
        );
    }

    /// The state right after v7's rollback in its bake at 2500 (candidate still v7).
    fn rolled_back_in_bake() -> AliasState {
        let s = baked_state();
        let mut next = run(&s, &policy(), Some(&regressed(2500)), 2500)
            .next
            .expect("writes");
        next.candidate = Some(7);
        next.record.owed.clear();
        next
    }

    #[test]
    fn a_rollback_in_the_bake_rechecks_the_previous_version_and_lifts_it_if_that_fails_alike() {
        let s = rolled_back_in_bake();
        let r = rechecking(&s).expect("a recheck starts with the rollback");
        assert_eq!(
            (r.version, r.stable, r.from, r.until, r.rejected_before),
            (7, 6, 2500, 2500 + 900, None)
        );
        assert_eq!(
            s.record.rejected,
            Some(7),
            "rejected while the recheck runs"
        );
        assert!(!startable(&s.record, 7));
        // v6 holding its numbers: wait, write nothing.
        let d = run(&s, &policy(), Some(&healthy(2700)), 2700);
        assert!(
            matches!(&d.action, Action::Hold(w) if w.contains("checking whether v6 fails alike, 12m left")),
            "{:?}",
            d.action
        );
        assert_eq!(d.next, None);
        // v6 regressing against its own reference: the cause is shared; v7 is no longer held
        // against, and on-call is told.
        let d = run(&s, &policy(), Some(&regressed(2800)), 2800);
        assert!(
            matches!(&d.action, Action::Lift { version: 7, stable: 6, why } if why == "5xx 100%"),
            "{:?}",
            d.action
        );
        let lifted = d.next.expect("writes");
        assert_eq!(
            (
                lifted.record.rejected,
                lifted.record.recheck,
                lifted.record.lifted
            ),
            (None, None, Some(7))
        );
        assert_eq!(
            lifted
                .record
                .owed
                .last()
                .map(|o| (o.event, o.version, o.stable)),
            Some((EventKind::SharedFailure, Some(7), 6))
        );
        // The next tick canaries v7 again from the first step.
        let d = run(&lifted, &policy(), None, 2860);
        assert_eq!(
            d.action,
            Action::Start {
                version: 7,
                weight: 10.0
            }
        );
        let again = d.next.expect("writes");
        assert_eq!(
            again.record.lifted,
            Some(7),
            "remembered through the canary"
        );
        // A second rollback of v7 in its bake stands: no second recheck.
        let promoted = run(
            &canary_at(6, 7, 2, 3000),
            &policy(),
            Some(&healthy(4000)),
            4000,
        )
        .next
        .map(|mut n| {
            n.record.lifted = Some(7);
            n
        })
        .expect("writes");
        let d = run(&promoted, &policy(), Some(&regressed(4400)), 4400);
        assert!(matches!(
            d.action,
            Action::Rollback {
                to: 6,
                rejected: Some(7),
                ..
            }
        ));
        assert_eq!(d.next.expect("writes").record.recheck, None);
    }

    #[test]
    fn a_recheck_that_sees_no_regression_lets_the_rollback_stand() {
        let s = rolled_back_in_bake();
        let d = run(&s, &policy(), Some(&healthy(3400)), 3400);
        assert!(
            matches!(&d.action, Action::Hold(w) if w.contains("v7 stays rolled back")),
            "{:?}",
            d.action
        );
        let next = d.next.expect("writes the end of the recheck");
        assert_eq!((next.record.recheck, next.record.rejected), (None, Some(7)));
        assert!(
            next.record.owed.is_empty(),
            "no page: the rollback was announced"
        );
        // Unjudged ticks hold without paging.
        let d = run(&s, &policy(), None, 2700);
        assert!(matches!(&d.action, Action::Hold(w) if w.contains("could not be judged")));
        assert_eq!(d.next, None);
    }

    #[test]
    fn a_newer_deploy_or_a_move_by_hand_ends_the_recheck_with_the_rollback_standing() {
        let mut s = rolled_back_in_bake();
        s.candidate = Some(8);
        let d = run(&s, &policy(), Some(&regressed(2800)), 2800);
        assert_eq!(
            d.action,
            Action::Start {
                version: 8,
                weight: 10.0
            }
        );
        let next = d.next.expect("writes");
        assert_eq!((next.record.recheck, next.record.rejected), (None, Some(7)));
        // The alias pointed elsewhere by hand: the recheck's premise is gone.
        let mut s = rolled_back_in_bake();
        s.stable = 5;
        let d = run(&s, &policy(), Some(&regressed(2800)), 2800);
        assert!(!matches!(d.action, Action::Lift { .. }), "{:?}", d.action);
        let next = d.next.expect("the record catches up");
        assert_eq!((next.record.recheck, next.record.rejected), (None, Some(7)));
    }

    #[test]
    fn a_bake_ends_when_its_time_is_up_and_a_waiting_candidate_starts_after_it() {
        let mut s = baked_state();
        s.candidate = Some(8);
        let d = run(&s, &policy(), Some(&healthy(2600)), 2600);
        assert!(
            matches!(&d.action, Action::Hold(w) if w.contains("v8 starts after it") && w.contains("canary promote notes-create")),
            "{:?}",
            d.action
        );
        // A regression judged after the end is the new stable version's own business.
        let d = run(&s, &policy(), Some(&regressed(2900)), 2900);
        assert_eq!(d.action, Action::Baked { version: 7 });
        let next = d.next.expect("writes");
        assert_eq!(next.record.bake, None);
        assert_eq!(
            next.record.owed.last().map(|o| o.event),
            Some(EventKind::Baked)
        );
        assert!(matches!(
            run(&next, &policy(), None, 2960).action,
            Action::Start { version: 8, .. }
        ));
    }

    #[test]
    fn during_a_bake_promote_ends_it_and_rollback_goes_to_the_previous_version() {
        let s = baked_state();
        for o in [Override::Promote, Override::PromoteFull] {
            let d = decide(&s, &policy(), None, Some(&o), 2100).expect("applies");
            assert_eq!(d.action, Action::Baked { version: 7 });
            assert!(d
                .next
                .expect("writes")
                .record
                .owed
                .last()
                .is_some_and(|o| o.manual));
        }
        // `promote --full` with a newer candidate promotes it instead (and bakes it).
        let mut newer = s.clone();
        newer.candidate = Some(8);
        let d =
            decide(&newer, &policy(), None, Some(&Override::PromoteFull), 2100).expect("applies");
        assert_eq!(d.action, Action::Promote { version: 8 });
        assert_eq!(
            d.next
                .expect("writes")
                .record
                .bake
                .map(|b| (b.version, b.previous)),
            Some((8, 7))
        );
        let back = Override::Rollback {
            to: None,
            reason: None,
        };
        let d = decide(&s, &policy(), None, Some(&back), 2100).expect("applies");
        assert!(matches!(
            d.action,
            Action::Rollback {
                to: 6,
                rejected: Some(7),
                ..
            }
        ));
        // After the bake, `rollback` with no --to has nothing to go back to.
        let mut done = s.clone();
        done.record.bake = None;
        assert!(decide(&done, &policy(), None, Some(&back), 3000).is_err());
    }

    #[test]
    fn an_unjudged_bake_pages_unprotected_and_a_hand_moved_alias_ends_it() {
        let s = baked_state();
        let d = run(&s, &policy(), None, 2100);
        assert!(matches!(&d.action, Action::Hold(w) if w.starts_with("could not judge v7")));
        let s = d.next.expect("notes since when");
        let d = run(&s, &policy(), None, 2100 + 300);
        assert_eq!(
            d.action,
            Action::Unprotected {
                version: 7,
                since: 2100
            }
        );
        // Someone points the alias at v5 by hand: the bake was about v7, so it is over.
        let mut moved = baked_state();
        moved.stable = 5;
        let d = run(&moved, &policy(), Some(&regressed(2200)), 2200);
        assert!(
            !matches!(d.action, Action::Rollback { .. }),
            "{:?}",
            d.action
        );
        assert_eq!(d.next.map(|n| n.record.bake), Some(None));
    }

    #[test]
    fn a_rejected_version_is_not_restarted_until_the_candidate_moves() {
        let mut s = live(6, Some(7));
        s.record.rejected = Some(7);
        assert!(
            matches!(run(&s, &policy(), None, 0).action, Action::Hold(w) if w.contains("rolled back"))
        );
        s.candidate = Some(8);
        assert!(matches!(
            run(&s, &policy(), None, 0).action,
            Action::Start { version: 8, .. }
        ));
    }

    #[test]
    fn healthy_moves_forward_only_after_the_step_interval() {
        let p = policy();
        let s = canary_at(1, 2, 0, 1000);
        assert!(
            matches!(run(&s, &p, Some(&healthy(1290)), 1290).action, Action::Hold(w) if w.contains("more at 10%"))
        );
        let d = run(&s, &p, Some(&healthy(1300)), 1300);
        assert_eq!(
            d.action,
            Action::Step {
                version: 2,
                step: 1,
                weight: 25.0
            }
        );
        assert_eq!(d.next.expect("writes").record.since, 1300);
        let not_enough = judgement(Verdict::NotEnoughData("3 of 100".into()), Some(1100));
        assert!(
            matches!(run(&s, &p, Some(&not_enough), 5000).action, Action::Hold(w) if w == "3 of 100")
        );
    }

    #[test]
    fn the_last_step_promotes() {
        let s = canary_at(1, 2, 2, 0);
        let d = run(&s, &policy(), Some(&healthy(500)), 500);
        assert_eq!(d.action, Action::Promote { version: 2 });
        let next = d.next.expect("writes");
        assert_eq!((next.stable, next.canary), (2, None));
    }

    #[test]
    fn a_new_candidate_replaces_the_running_canary() {
        let mut s = canary_at(1, 2, 1, 0);
        s.candidate = Some(3);
        let d = run(&s, &policy(), Some(&healthy(100)), 100);
        assert_eq!(
            d.action,
            Action::Start {
                version: 3,
                weight: 10.0
            }
        );
        assert_eq!(d.next.expect("writes").canary.map(|c| c.version), Some(3));
    }

    #[test]
    fn candidate_moved_back_to_stable_withdraws_the_canary() {
        let mut s = canary_at(1, 2, 1, 0);
        s.candidate = Some(1);
        assert!(matches!(
            run(&s, &policy(), Some(&healthy(100)), 100).action,
            Action::Rollback {
                to: 1,
                rejected: Some(2),
                ..
            }
        ));
    }

    #[test]
    fn long_silence_alerts_once_on_hold_and_rolls_back_on_rollback() {
        let mut p = policy();
        let s = canary_at(1, 2, 0, 0);
        let quiet = judgement(Verdict::NotEnoughData("0 of 100".into()), None);
        let at = p.no_data_timeout.as_secs() as i64;
        told_once(&s, &p, &quiet, at, ("", ""));
        p.on_no_data = OnNoData::Rollback;
        assert!(matches!(
            run(&s, &p, Some(&quiet), at).action,
            Action::Rollback { to: 1, .. }
        ));
    }

    /// A hold that outlasts its timeout at `at`: held a second before (the hold's reason starting
    /// with `says.0`), on-call told at `at` (the recorded decision saying `says.1`), and held
    /// quietly a minute later.
    fn told_once(s: &AliasState, p: &Policy, j: &Judgement, at: i64, says: (&str, &str)) {
        let d = run(s, p, Some(j), at - 1);
        assert!(
            matches!(&d.action, Action::Hold(w) if w.starts_with(says.0)),
            "{d:?}"
        );
        let d = run(s, p, Some(j), at);
        assert_eq!(d.action, Action::NoData);
        let told = d.next.expect("records the notice");
        let last = told.record.last.clone().unwrap_or_default();
        assert!(last.contains(says.1), "{last}");
        assert!(matches!(
            run(&told, p, Some(j), at + 60).action,
            Action::Hold(_)
        ));
    }

    #[test]
    fn a_trickle_of_canary_traffic_too_small_for_the_step_is_told_once() {
        let p = policy();
        let s = canary_at(1, 2, 0, 0);
        let at = p.no_data_timeout.as_secs() as i64;
        let mut trickle = judgement(Verdict::NotEnoughData("3 of 100".into()), Some(at - 30));
        trickle.canary_requests_at_step = 3.0;
        told_once(&s, &p, &trickle, at, ("", "3 of 100 canary requests"));
    }

    #[test]
    fn a_step_that_never_sees_latency_past_its_warm_up_is_told_once() {
        // Plenty of requests, but no period with a latency statistic past the warm-up (say, a
        // warm-up longer than anyone meant, or a handler that publishes no latency).
        let p = policy();
        let s = canary_at(1, 2, 0, 0);
        let at = p.no_data_timeout.as_secs() as i64;
        let why = crate::judge::LatencySeen::default().waiting(120);
        let mut blind = judgement(Verdict::NotEnoughData(why), Some(at - 30));
        blind.canary_requests_at_step = 5000.0;
        blind.latency_seen = crate::judge::LatencySeen::default();
        let says = (
            crate::judge::LATENCY_WAIT,
            "0 latency periods past the warm-up",
        );
        told_once(&s, &p, &blind, at, says);
        // Enough latency periods: the same hold is not stuck.
        blind.latency_seen = crate::judge::LatencySeen {
            at_step: 1,
            in_all: 2,
        };
        assert!(matches!(
            run(&s, &p, Some(&blind), at).action,
            Action::Hold(_)
        ));
    }

    #[test]
    fn a_canary_held_through_a_shared_outage_is_told_once_when_it_outlasts_the_timeout() {
        let p = policy();
        let s = canary_at(1, 2, 0, 0);
        let timeout = p.no_data_timeout.as_secs() as i64;
        // The outage began 10 minutes into the step; the canary has had plenty of requests.
        let since = 600;
        let mut held = judgement(
            Verdict::NotEnoughData(format!("{} (3% 5xx): holding", crate::judge::SHARED_OUTAGE)),
            Some(since + timeout),
        );
        held.canary_requests_at_step = 5000.0;
        held.outage_since = Some(since);
        // Past the step's own timeout but not the outage's: held, nobody paged; then told
        // once, and later ticks hold quietly.
        let says = (crate::judge::SHARED_OUTAGE, "failing too for 15m");
        told_once(&s, &p, &held, since + timeout, says);
    }

    #[test]
    fn pause_freezes_forward_moves_and_resume_releases_them() {
        let p = policy();
        let s = canary_at(1, 2, 0, 0);
        let paused = decide(&s, &p, None, Some(&Override::Pause), 10)
            .expect("pause")
            .next
            .expect("writes");
        assert!(paused.record.paused);
        assert!(
            matches!(run(&paused, &p, Some(&healthy(9999)), 9999).action, Action::Hold(w) if w.contains("paused"))
        );
        let resumed = decide(&paused, &p, None, Some(&Override::Resume), 20)
            .expect("resume")
            .next
            .expect("writes");
        assert!(matches!(
            run(&resumed, &p, Some(&healthy(9999)), 9999).action,
            Action::Step { .. }
        ));
        // A paused alias does not start new canaries either.
        let mut idle = live(1, Some(2));
        idle.record.paused = true;
        assert!(matches!(run(&idle, &p, None, 0).action, Action::Hold(_)));
    }

    #[test]
    fn manual_commands() {
        let p = policy();
        let s = canary_at(1, 2, 0, 0);
        let promote = decide(&s, &p, None, Some(&Override::Promote), 5).expect("promote");
        assert!(matches!(promote.action, Action::Step { step: 1, .. }));
        let full = decide(&s, &p, None, Some(&Override::PromoteFull), 5).expect("full");
        assert_eq!(full.action, Action::Promote { version: 2 });
        let back = decide(
            &s,
            &p,
            Some(&healthy(5)),
            Some(&Override::Rollback {
                to: None,
                reason: Some("customer report".into()),
            }),
            5,
        )
        .expect("rollback");
        assert!(
            matches!(&back.action, Action::Rollback { to: 1, rejected: Some(2), why } if why == "customer report")
        );

        // rollback --to an older version after a promotion: the newer one is rejected.
        let promoted = live(7, Some(7));
        let d = decide(
            &promoted,
            &p,
            None,
            Some(&Override::Rollback {
                to: Some(5),
                reason: None,
            }),
            5,
        )
        .expect("rollback --to");
        let next = d.next.expect("writes");
        assert_eq!((next.stable, next.record.rejected), (5, Some(7)));
        assert!(
            matches!(run(&next, &p, None, 10).action, Action::Hold(_)),
            "7 is not restarted"
        );

        // Explicit start of a rejected version is a person's decision.
        let d = decide(
            &next,
            &p,
            None,
            Some(&Override::Start { version: None }),
            20,
        )
        .expect("start");
        assert!(matches!(d.action, Action::Start { version: 7, .. }));
        assert_eq!(
            d.next.expect("writes").record.rejected,
            Some(7),
            "still the newest rolled-back version"
        );
    }

    #[test]
    fn manual_commands_that_do_not_apply_are_errors() {
        let p = policy();
        let idle = live(3, Some(3));
        for o in [
            Override::Promote,
            Override::PromoteFull,
            Override::Start { version: None },
        ] {
            assert!(decide(&idle, &p, None, Some(&o), 0).is_err(), "{o:?}");
        }
        let err = decide(
            &idle,
            &p,
            None,
            Some(&Override::Rollback {
                to: None,
                reason: None,
            }),
            0,
        )
        .expect_err("nothing to roll back");
        assert!(err.to_string().contains("on v3 with no canary"), "{err}");
    }

    #[test]
    fn a_canary_set_by_hand_is_adopted() {
        let p = policy();
        let s = AliasState {
            stable: 1,
            canary: Some(Routing {
                version: 2,
                weight: 30.0,
            }),
            candidate: Some(2),
            record: Record::default(),
        };
        let d = run(
            &s,
            &p,
            Some(&judgement(Verdict::NotEnoughData("x".into()), None)),
            50,
        );
        let next = d.next.expect("record catches up");
        assert_eq!(
            (next.record.canary, next.record.step, next.record.since),
            (Some(2), 1, 50)
        );
    }

    #[test]
    fn routing_removed_by_hand_is_a_rollback_the_agent_respects() {
        let p = policy();
        let mut s = canary_at(1, 2, 1, 0);
        s.canary = None; // someone cleared the weights in the console
        let d = run(&s, &p, None, 100);
        assert!(matches!(d.action, Action::Hold(_)), "{:?}", d.action);
        let next = d.next.expect("the record catches up");
        assert_eq!((next.record.canary, next.record.rejected), (None, Some(2)));
        assert!(
            matches!(run(&next, &p, None, 160).action, Action::Hold(_)),
            "v2 is not restarted"
        );
        // Promoted by hand instead: nothing is rejected.
        let mut promoted = canary_at(1, 2, 1, 0);
        promoted.canary = None;
        promoted.stable = 2;
        let next = run(&promoted, &p, None, 100)
            .next
            .expect("record catches up");
        assert_eq!(next.record.rejected, None);
    }

    #[derive(Debug, Clone)]
    enum Input {
        Verdict(u8),
        Override(Override),
        Wait(i64),
        Deploy,
        Traffic(bool),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => (0u8..3).prop_map(Input::Verdict),
            1 => prop_oneof![
                Just(Override::Promote),
                Just(Override::PromoteFull),
                Just(Override::Pause),
                Just(Override::Resume),
                Just(Override::Start { version: None }),
                Just(Override::Rollback { to: None, reason: None }),
                (1u64..4).prop_map(|v| Override::Rollback { to: Some(v), reason: None }),
            ]
            .prop_map(Input::Override),
            3 => (1i64..1200).prop_map(Input::Wait),
            1 => Just(Input::Deploy),
            1 => any::<bool>().prop_map(Input::Traffic),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_history(inputs in proptest::collection::vec(input(), 1..60)) {
            let p = policy();
            let mut s = live(1, Some(2));
            let mut now = 1_000_000;
            let mut traffic = true;
            let mut next_version = 3;
            for i in inputs {
                let (judgement, ovr) = match i {
                    Input::Wait(d) => { now += d; (None, None) }
                    Input::Deploy => { s.candidate = Some(next_version); next_version += 1; (None, None) }
                    Input::Traffic(t) => { traffic = t; (None, None) }
                    Input::Verdict(v) => {
                        let verdict = match v {
                            0 => Verdict::Healthy,
                            1 => Verdict::NotEnoughData("few".into()),
                            _ => Verdict::Regressed(vec!["bad".into()]),
                        };
                        (Some(judgement(verdict, traffic.then_some(now - 60))), None)
                    }
                    Input::Override(o) => (None, Some(o)),
                };
                let before = s.clone();
                let Ok(d) = decide(&s, &p, judgement.as_ref(), ovr.as_ref(), now) else { continue };
                if let Some(next) = d.next.clone() { s = next; }
                // Weights are always a policy step (100% is a promotion: no routing).
                if let Some(c) = s.canary {
                    prop_assert!(p.steps.iter().any(|&w| (w - c.weight).abs() < 1e-9 && w < 100.0), "{:?}", c);
                    prop_assert!(c.version != s.stable);
                }
                // The stable version changes only on promotion, a rollback --to, or a rollback
                // during a bake (to the version before it).
                let bake = baking(&before);
                if s.stable != before.stable {
                    let to_other = matches!(&ovr, Some(Override::Rollback { to: Some(_), .. }));
                    let unbaked = matches!(d.action, Action::Rollback { to, .. } if bake.is_some_and(|b| b.previous == to));
                    prop_assert!(matches!(d.action, Action::Promote { .. }) || to_other || unbaked, "{:?}", d.action);
                }
                // A bake is about the stable version, with no canary; only a person starts a
                // canary during one.
                if let Some(b) = s.record.bake {
                    prop_assert!(s.canary.is_none() && b.version == s.stable && b.previous != b.version, "{:?}", s);
                }
                if bake.is_some() && ovr.is_none() {
                    prop_assert!(!matches!(d.action, Action::Start { .. } | Action::Step { .. }), "{:?}", d.action);
                    // A regression during the bake, before its end, points the alias back.
                    if let (Some(Judgement { verdict: Verdict::Regressed(_), .. }), Some(b)) = (judgement.as_ref(), bake) {
                        if now < b.until && before.candidate != Some(b.previous) {
                            let back = matches!(d.action, Action::Rollback { to, rejected, .. } if to == b.previous && rejected == Some(b.version));
                            prop_assert!(back, "{:?}", d.action);
                        }
                    }
                }
                // A regression with a running canary and no person in the loop always rolls back.
                if ovr.is_none() && before.canary.is_some() && before.candidate.is_none_or(|c| c == before.canary.map_or(0, |r| r.version)) {
                    if let Some(Judgement { verdict: Verdict::Regressed(_), .. }) = judgement.as_ref() {
                        prop_assert!(matches!(d.action, Action::Rollback { .. }), "{:?}", d.action);
                        prop_assert!(s.canary.is_none());
                    }
                }
            }
        }
    }
}
