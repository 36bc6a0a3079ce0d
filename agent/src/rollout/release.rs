//! Releases: the protected aliases whose policies share a `release` name, canaried as one.
//!
//! Pure. Each member keeps its own alias and record; [`coordinate`] looks at every member's
//! state and own decision and tells each one its part ([`Call`]), which [`super::decide_in`]
//! applies:
//!
//! - **Start.** A deploy that moves several members' candidates starts one release canary,
//!   whose id is the tick's time, written in each member's record ([`ReleaseMark`]). A member
//!   whose candidate moves while the release is under way (`sam deploy` updates functions one
//!   after the other; a start's write may fail) joins it at the first step, and the members
//!   ahead wait for it. Only while the release ends its bake or is rolled back does a new
//!   candidate wait for the release to finish.
//! - **Steps.** A member moves forward only from the lowest step any member is at, and only when
//!   every member at that step is ready: each step waits for the slowest member's evidence.
//! - **Rollback.** Any member rolling back (a regression, in its canary or its bake; a person's
//!   rollback) rolls back every member still under way, each to its stable version (the
//!   previous version, for a member baking). The first rollback marks its record; a tick that
//!   finds a member marked rolled back rolls back the others, so a rollback cut short by a crash
//!   is finished by the next tick, never undone. A member rolled back only because another was
//!   (a follower) is not judged bad: its version starts again with the release's next deploy.
//! - **One announcement per release decision.** When several members start, step, are promoted,
//!   finish their bake or are rolled back in one tick, one member's record owes the release's
//!   announcement and the others' owe none.

use super::{adopt, automatic, judged, Action, AliasState, Decision, Version};
use crate::judge::Judgement;
use crate::policy::Policy;
pub use crate::record::ReleaseMark;

/// One protected alias as the coordinator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Its policy.
    pub policy: &'a Policy,
    /// The alias as read.
    pub state: &'a AliasState,
    /// The judge's view of its canary or bake.
    pub judgement: Option<&'a Judgement>,
}

/// What the release asks of one member this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Decide alone: not a member of a release, or a person's command on one member (its
    /// rollback marks the release rolled back without announcing the release's rollback, which
    /// the next tick does as it rolls back the other members).
    Alone,
    /// Decide as usual; forward moves are allowed.
    Go,
    /// Decide as usual, but hold instead of any forward move (start, step, promote).
    Wait(String),
    /// Start the candidate `version` with the release: it was rolled back only because another
    /// member was.
    Restart(Version),
    /// Roll back with the release, because another member regressed or was rolled back.
    Follow(String),
    /// Hold back a new candidate not started yet with the release's rollback (it starts again
    /// with the release's next deploy). Written before the rollback itself, so that a tick cut
    /// short after it finishes the rollback next time rather than starting the candidate alone.
    HoldBack(String),
    /// End the bake now: another member of the release already ended its own.
    Finish,
}

/// A member's part in its release this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The release (its id) this member's canary or bake belongs to, written in its record.
    pub id: Option<i64>,
    /// What to do.
    pub order: Order,
    /// Whether this member's record owes the announcement of its decision; `false` when another
    /// member's announces the release's decision.
    pub announce: bool,
}

impl Call {
    /// Not in a release: decide and announce as a lone alias.
    #[must_use]
    pub fn alone() -> Self {
        Self {
            id: None,
            order: Order::Alone,
            announce: true,
        }
    }
}

/// Whether an action is a release-wide event announced once for all members.
fn shared_event(a: &Action) -> bool {
    matches!(
        a,
        Action::Start { .. }
            | Action::Step { .. }
            | Action::Promote { .. }
            | Action::Rollback { .. }
            | Action::Baked { .. }
    )
}

/// Whether an action moves a member forward (start, step, promote, the end of its bake).
pub(super) fn forward(a: &Action) -> bool {
    matches!(
        a,
        Action::Start { .. } | Action::Step { .. } | Action::Promote { .. } | Action::Baked { .. }
    )
}

/// One member's view, prepared once.
struct View<'a> {
    m: Member<'a>,
    adopted: AliasState,
    own: Decision,
    /// Its live mark's release id, while its canary or bake is under way.
    live: Option<i64>,
}

impl View<'_> {
    fn in_flight(&self) -> bool {
        judged(&self.adopted).is_some()
    }

    /// How far along it is: its step, or past the last one once at 100%.
    fn level(&self) -> usize {
        match self.adopted.canary {
            Some(_) => self.adopted.record.step,
            None => self.m.policy.steps.len(),
        }
    }

    /// A candidate it gave up only because another member was rolled back.
    fn restartable(&self) -> Option<Version> {
        let r = &self.adopted.record;
        let mark = r.release?;
        let v = self.adopted.candidate?;
        (mark.rolled_back
            && mark.follower
            && !r.paused
            && !self.in_flight()
            && r.rejected == Some(v)
            && v != self.adopted.stable)
            .then_some(v)
    }

    fn name(&self) -> &str {
        &self.m.policy.function
    }
}

/// Each member's part this tick, in the order given. Members without a `release` are
/// [`Call::alone`]; each release is coordinated on its own.
#[must_use]
pub fn coordinate(members: &[Member<'_>], now: i64) -> Vec<Call> {
    let mut calls = vec![Call::alone(); members.len()];
    let mut names: Vec<&str> = members
        .iter()
        .filter_map(|m| m.policy.release.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let idx: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].policy.release.as_deref() == Some(name))
            .collect();
        let views: Vec<View<'_>> = idx.iter().map(|&i| view(members[i], now)).collect();
        for (k, call) in release_calls(name, &views, now).into_iter().enumerate() {
            calls[idx[k]] = call;
        }
    }
    calls
}

fn view(m: Member<'_>, now: i64) -> View<'_> {
    let (adopted, _) = adopt(m.state, m.policy, now);
    let own = automatic(&adopted, m.policy, m.judgement, now);
    let live = adopted
        .record
        .release
        .filter(|mark| !mark.rolled_back)
        .map(|mark| mark.id)
        .filter(|_| judged(&adopted).is_some());
    View {
        m,
        adopted,
        own,
        live,
    }
}

/// The calls for one release's members.
fn release_calls(name: &str, views: &[View<'_>], now: i64) -> Vec<Call> {
    let marks: Vec<ReleaseMark> = views
        .iter()
        .filter_map(|v| v.adopted.record.release)
        .collect();
    let rolled_back = |id: i64| marks.iter().any(|m| m.id == id && m.rolled_back);
    let in_flight: Vec<usize> = (0..views.len()).filter(|&i| views[i].in_flight()).collect();
    // The release under way: the newest live mark among members under way, or a new one for
    // members under way without a mark (a canary set by hand).
    let id = in_flight
        .iter()
        .filter_map(|&i| views[i].live)
        .max()
        .or_else(|| (!in_flight.is_empty()).then_some(now));
    let causes: Vec<usize> = in_flight
        .iter()
        .copied()
        .filter(|&i| matches!(views[i].own.action, Action::Rollback { .. }))
        .collect();
    let pending = in_flight
        .iter()
        .any(|&i| views[i].live.is_some_and(rolled_back));
    // A member of the release under way that is no longer under way, not rolled back: the
    // release's bake ended (or its alias was moved by hand); the others end theirs too.
    let finishing = id.is_some_and(|id| {
        views.iter().any(|v| {
            !v.in_flight()
                && v.adopted
                    .record
                    .release
                    .is_some_and(|m| m.id == id && !m.rolled_back)
        })
    });
    let mut calls: Vec<Call> = (0..views.len())
        .map(|_| Call {
            id,
            order: Order::Go,
            announce: true,
        })
        .collect();
    if finishing {
        for (i, v) in views.iter().enumerate() {
            if v.in_flight() && v.adopted.canary.is_none() {
                calls[i].order = Order::Finish;
            } else if !v.in_flight() && forward(&v.own.action) {
                calls[i].order = Order::Wait(format!("release {name} is ending its bake"));
            }
        }
    } else if let (Some(id), true) = (id, !causes.is_empty() || pending) {
        rollback_calls(name, views, &in_flight, &causes, id, &marks, &mut calls);
    } else {
        forward_calls(name, views, &in_flight, id, now, &mut calls);
    }
    announce_once(views, &mut calls);
    calls
}

/// Every member under way rolls back: the causes with their own decisions, the others as
/// followers. The release's rollback is announced once, by the first cause (else the first
/// follower), unless a member's record already announced it.
fn rollback_calls(
    name: &str,
    views: &[View<'_>],
    in_flight: &[usize],
    causes: &[usize],
    id: i64,
    marks: &[ReleaseMark],
    calls: &mut [Call],
) {
    let why = match causes.first() {
        Some(&c) => {
            let v = &views[c];
            let version = judged(&v.adopted).unwrap_or(v.adopted.stable);
            match &v.own.action {
                Action::Rollback { why, .. } => format!("{} v{version}: {why}", v.name()),
                _ => format!("{} v{version} was rolled back", v.name()),
            }
        }
        None => {
            let back: Vec<&str> = views
                .iter()
                .filter(|v| {
                    v.adopted
                        .record
                        .release
                        .is_some_and(|m| m.id == id && m.rolled_back)
                })
                .map(View::name)
                .collect();
            format!("{} was rolled back", back.join(" and "))
        }
    };
    let announced = marks.iter().any(|m| m.id == id && m.announced);
    let announcer = causes.first().or(in_flight.first()).copied();
    // A member whose new candidate has not started yet (its start's write failed, or its
    // deploy came during the rollback) is held back with the release: it starts again with
    // the release's next deploy, never alone after the others were rolled back.
    for (i, v) in views.iter().enumerate() {
        if !v.in_flight() && matches!(v.own.action, Action::Start { .. }) {
            calls[i] = Call {
                id: Some(id),
                order: Order::HoldBack(format!("release {name}: {why}")),
                announce: false,
            };
        }
    }
    for &i in in_flight {
        calls[i] = Call {
            id: Some(id),
            order: if causes.contains(&i) {
                Order::Go
            } else {
                Order::Follow(format!("release {name}: {why}"))
            },
            announce: !announced && Some(i) == announcer,
        };
    }
}

/// Nothing under way: a deploy that moved some candidates starts a new release (its id is
/// `now`), which takes the members rolled back only because another member was with it.
fn new_release(views: &[View<'_>], now: i64, calls: &mut [Call]) {
    let starts = views
        .iter()
        .any(|v| matches!(v.own.action, Action::Start { .. }));
    for (i, v) in views.iter().enumerate() {
        calls[i].id = Some(now);
        if let (true, Some(version)) = (starts, v.restartable()) {
            calls[i].order = Order::Restart(version);
        }
    }
}

/// The members not under way that join the release under way at the first step: a candidate
/// that moved (a deploy that updates the functions one after the other, or a start whose write
/// failed), or a version rolled back only because of another member (restarted).
fn joiners<'v>(views: &'v [View<'_>], calls: &mut [Call]) -> Vec<&'v str> {
    let mut joiners = Vec::new();
    for (i, v) in views.iter().enumerate() {
        if v.in_flight() {
            continue;
        }
        if let Some(version) = v.restartable() {
            calls[i].order = Order::Restart(version);
            joiners.push(v.name());
        } else if matches!(v.own.action, Action::Start { .. }) {
            joiners.push(v.name());
        }
    }
    joiners
}

/// Start, join and step together: forward moves only from the lowest step, once every member
/// there is ready.
fn forward_calls(
    name: &str,
    views: &[View<'_>],
    in_flight: &[usize],
    id: Option<i64>,
    now: i64,
    calls: &mut [Call],
) {
    if id.is_none() {
        new_release(views, now, calls);
        return;
    }
    let joiners = joiners(views, calls);
    let lowest = if joiners.is_empty() {
        in_flight
            .iter()
            .map(|&i| views[i].level())
            .min()
            .unwrap_or(0)
    } else {
        0
    };
    let blockers: Vec<usize> = in_flight
        .iter()
        .copied()
        .filter(|&i| views[i].level() == lowest && !forward(&views[i].own.action))
        .collect();
    for (i, v) in views.iter().enumerate() {
        if !v.in_flight() {
            continue;
        }
        if !joiners.is_empty()
            && forward(&v.own.action)
            && !matches!(v.own.action, Action::Start { .. })
        {
            calls[i].order = Order::Wait(format!(
                "release {name}: waiting for {} to join at the first step",
                joiners.join(", ")
            ));
            continue;
        }
        if !forward(&v.own.action) || matches!(v.own.action, Action::Start { .. }) {
            continue;
        }
        if v.level() > lowest {
            let behind: Vec<&str> = in_flight
                .iter()
                .filter(|&&j| views[j].level() == lowest)
                .map(|&j| views[j].name())
                .collect();
            calls[i].order = Order::Wait(format!(
                "release {name}: waiting for {} to catch up",
                behind.join(", ")
            ));
        } else if let Some(&b) = blockers.first() {
            let reason = match &views[b].own.action {
                Action::Hold(why) => why.clone(),
                other => other.to_string(),
            };
            calls[i].order = Order::Wait(format!(
                "release {name}: waiting for {}: {reason}",
                views[b].name()
            ));
        }
    }
}

/// For each release-wide event, only the first member taking part in it owes the
/// announcement.
fn announce_once(views: &[View<'_>], calls: &mut [Call]) {
    let mut seen: Vec<std::mem::Discriminant<Action>> = Vec::new();
    for (i, v) in views.iter().enumerate() {
        let action = match &calls[i].order {
            Order::Follow(_) | Order::HoldBack(_) => continue, // decided by rollback_calls
            Order::Wait(_) if forward(&v.own.action) => continue,
            Order::Restart(_) => Action::Start {
                version: 0,
                weight: 0.0,
            },
            Order::Finish => Action::Baked { version: 0 },
            _ => v.own.action.clone(),
        };
        if matches!(action, Action::Rollback { .. }) || !shared_event(&action) {
            continue;
        }
        let kind = std::mem::discriminant(&action);
        if seen.contains(&kind) {
            calls[i].announce = false;
        } else {
            seen.push(kind);
        }
    }
}

/// The release under way among `members` (all of one release): its id, if any member's canary
/// or bake is under way, and whether its rollback is under way (a member is marked rolled back
/// while another is still under way).
#[must_use]
pub fn under_way(members: &[Member<'_>], now: i64) -> (Option<i64>, bool) {
    let views: Vec<View<'_>> = members.iter().map(|&m| view(m, now)).collect();
    let id = views.iter().filter_map(|v| v.live).max();
    let pending = id.is_some_and(|id| {
        views.iter().any(|v| {
            v.adopted
                .record
                .release
                .is_some_and(|m| m.id == id && m.rolled_back)
        })
    });
    (id, pending)
}

/// A member's line in its release's announcement: its function and what happened to it
/// (`notes-get v7 -> v6`).
#[must_use]
pub fn member_line(function: &str, before: &AliasState, action: &Action) -> String {
    match action {
        Action::Start { version, weight } => format!("{function} v{version} at {weight}%"),
        Action::Step {
            version, weight, ..
        } => format!("{function} v{version} to {weight}%"),
        Action::Promote { version } => {
            format!("{function} v{version} at 100% (was v{})", before.stable)
        }
        Action::Rollback { to, rejected, .. } => match rejected {
            Some(r) => format!("{function} v{r} -> v{to}"),
            None => format!("{function} -> v{to}"),
        },
        Action::Baked { version } => format!("{function} v{version}"),
        other => format!("{function}: {other}"),
    }
}

/// The order to write a release's members in: new candidates held back with a rollback first,
/// then those that owe the release's announcement (a rollback cut short after them is finished
/// by the next tick, and announced), then the others, each in the order given.
#[must_use]
pub fn write_order(calls: &[Call]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..calls.len()).collect();
    order.sort_by_key(|&i| {
        (
            !matches!(calls[i].order, Order::HoldBack(_)),
            !(calls[i].announce && calls[i].id.is_some()),
        )
    });
    order
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::judge::Verdict;
    use crate::rollout::{decide_in, EventKind, Record};
    use proptest::prelude::*;
    use std::time::Duration;

    const T0: i64 = 1_795_428_000;

    fn policies(n: usize) -> Vec<Policy> {
        (0..n)
            .map(|i| {
                let mut p = Policy::with_defaults(&format!("f{i}"));
                p.release = Some("api".to_string());
                p.step_interval = Duration::from_secs(60);
                p.bake = Duration::from_secs(180);
                p
            })
            .collect()
    }

    fn live(stable: Version) -> AliasState {
        AliasState {
            stable,
            canary: None,
            candidate: Some(stable),
            record: Record::default(),
        }
    }

    fn judgement(verdict: Verdict, now: i64) -> Judgement {
        Judgement {
            canary_requests_at_step: 1000.0,
            threshold: 400.0,
            ..Judgement::fixture(verdict, Some(now - 60))
        }
    }

    fn healthy(now: i64) -> Judgement {
        judgement(Verdict::Healthy, now)
    }

    fn regressed(now: i64) -> Judgement {
        judgement(Verdict::Regressed(vec!["5xx 5% > 1%".to_string()]), now)
    }

    /// What one tick did: each member's decision (in member order) and whether its record owes
    /// an announcement of it.
    struct Ticked {
        actions: Vec<Option<Action>>,
        announced: Vec<bool>,
        writes: usize,
    }

    /// One tick over the release, writing members in [`write_order`]; `crash` stops it after
    /// that many writes.
    fn tick(
        ps: &[Policy],
        states: &mut [AliasState],
        js: &[Option<Judgement>],
        now: i64,
        crash: Option<usize>,
    ) -> Ticked {
        let members: Vec<Member<'_>> = ps
            .iter()
            .zip(states.iter())
            .zip(js)
            .map(|((policy, state), j)| Member {
                policy,
                state,
                judgement: j.as_ref(),
            })
            .collect();
        let calls = coordinate(&members, now);
        let mut t = Ticked {
            actions: vec![None; ps.len()],
            announced: vec![false; ps.len()],
            writes: 0,
        };
        for i in write_order(&calls) {
            let d = decide_in(&states[i], &ps[i], js[i].as_ref(), None, &calls[i], now)
                .expect("automatic decisions never fail");
            if let Some(next) = d.next {
                if crash == Some(t.writes) {
                    return t;
                }
                t.announced[i] = next.record.owed.len() > states[i].record.owed.len();
                states[i] = next;
                t.writes += 1;
            }
            t.actions[i] = Some(d.action);
        }
        t
    }

    fn deploy(states: &mut [AliasState], which: &[usize]) {
        for &i in which {
            let newest = [
                Some(states[i].stable),
                states[i].candidate,
                states[i].record.rejected,
                states[i].canary.map(|c| c.version),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(1);
            states[i].candidate = Some(newest + 1);
        }
    }

    /// Why member `i` held this tick; panics if it did anything else.
    fn hold_reason(t: &Ticked, i: usize) -> &str {
        match &t.actions[i] {
            Some(Action::Hold(why)) => why,
            other => panic!("f{i} must hold, got {other:?}"),
        }
    }

    fn kinds(t: &Ticked) -> Vec<Option<EventKind>> {
        t.actions
            .iter()
            .map(|a| a.as_ref().and_then(Action::event))
            .collect()
    }

    #[test]
    fn a_deploy_of_two_members_starts_one_release_announced_once() {
        let ps = policies(3);
        let mut s = vec![live(4), live(6), live(2)];
        deploy(&mut s, &[0, 1]);
        let t = tick(&ps, &mut s, &[None, None, None], T0, None);
        assert_eq!(
            kinds(&t),
            [Some(EventKind::Started), Some(EventKind::Started), None]
        );
        assert_eq!(t.announced, [true, false, false], "one announcement");
        let ids: Vec<_> = s.iter().map(|s| s.record.release.map(|m| m.id)).collect();
        assert_eq!(ids, [Some(T0), Some(T0), None]);
    }

    #[test]
    fn each_step_waits_for_the_slowest_member_and_then_all_move_together() {
        let ps = policies(2);
        let mut s = vec![live(4), live(6)];
        deploy(&mut s, &[0, 1]);
        tick(&ps, &mut s, &[None, None], T0, None);
        let now = T0 + 120;
        let waiting = judgement(
            Verdict::NotEnoughData("waiting for canary requests".into()),
            now,
        );
        let t = tick(&ps, &mut s, &[Some(healthy(now)), Some(waiting)], now, None);
        let why = hold_reason(&t, 0);
        assert!(
            why.contains("waiting for f1: waiting for canary requests"),
            "{why}"
        );
        let t = tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(healthy(now))],
            now,
            None,
        );
        assert_eq!(
            kinds(&t),
            [Some(EventKind::Stepped), Some(EventKind::Stepped)]
        );
        assert_eq!(t.announced, [true, false]);
        assert!(s.iter().all(|s| s.canary.is_some_and(|c| c.weight == 25.0)));
    }

    #[test]
    fn one_member_regressing_rolls_back_every_member_with_one_announcement() {
        let ps = policies(3);
        let mut s = vec![live(4), live(6), live(2)];
        deploy(&mut s, &[0, 1, 2]);
        tick(&ps, &mut s, &[None, None, None], T0, None);
        let now = T0 + 60;
        let js = [Some(healthy(now)), Some(regressed(now)), Some(healthy(now))];
        let t = tick(&ps, &mut s, &js, now, None);
        assert_eq!(t.announced, [false, true, false], "the cause announces");
        assert_eq!(
            s.iter().map(|s| (s.stable, s.canary)).collect::<Vec<_>>(),
            [(4, None), (6, None), (2, None)]
        );
        match &t.actions[0] {
            Some(Action::Rollback { why, .. }) => {
                assert!(why.contains("release api: f1 v7: 5xx 5% > 1%"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let marks: Vec<_> = s.iter().map(|s| s.record.release.unwrap()).collect();
        assert!(marks.iter().all(|m| m.rolled_back && m.id == T0));
        assert_eq!(
            marks
                .iter()
                .map(|m| (m.follower, m.announced))
                .collect::<Vec<_>>(),
            [(true, false), (false, true), (true, false)]
        );
    }

    #[test]
    fn a_rollback_cut_short_is_finished_next_tick_without_a_second_announcement() {
        let ps = policies(2);
        let mut s = vec![live(4), live(6)];
        deploy(&mut s, &[0, 1]);
        tick(&ps, &mut s, &[None, None], T0, None);
        let now = T0 + 60;
        let t = tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(regressed(now))],
            now,
            Some(1),
        );
        assert_eq!(t.writes, 1);
        assert_eq!((s[1].stable, s[1].canary), (6, None), "the cause first");
        assert!(s[0].canary.is_some(), "the crash left f0 on its canary");
        // Next tick f0 looks healthy: it rolls back all the same, silently.
        let now = now + 60;
        let t = tick(&ps, &mut s, &[Some(healthy(now)), None], now, None);
        assert_eq!(kinds(&t)[0], Some(EventKind::RolledBack));
        assert_eq!(t.announced, [false, false]);
        assert_eq!(s[0].canary, None);
        assert_eq!(s[0].record.rejected, Some(5));
    }

    #[test]
    fn the_fixed_release_restarts_the_members_rolled_back_only_because_of_another() {
        let ps = policies(2);
        let mut s = vec![live(4), live(6)];
        deploy(&mut s, &[0, 1]);
        tick(&ps, &mut s, &[None, None], T0, None);
        let now = T0 + 60;
        tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(regressed(now))],
            now,
            None,
        );
        // Alone, f0's v5 (rolled back) is not started again.
        let t = tick(&ps, &mut s, &[None, None], now + 60, None);
        assert!(t.actions.iter().all(|a| matches!(a, Some(Action::Hold(_)))));
        // The fix of f1 only: both start, as one release.
        deploy(&mut s, &[1]);
        let now = now + 120;
        let t = tick(&ps, &mut s, &[None, None], now, None);
        assert_eq!(
            kinds(&t),
            [Some(EventKind::Started), Some(EventKind::Started)]
        );
        assert_eq!(
            s.iter()
                .map(|s| s.canary.map(|c| c.version))
                .collect::<Vec<_>>(),
            [Some(5), Some(8)]
        );
        assert_eq!(t.announced.iter().filter(|&&a| a).count(), 1);
    }

    #[test]
    fn a_member_deployed_later_joins_the_release_and_the_members_ahead_wait_for_it() {
        let ps = policies(3);
        let mut s = vec![live(4), live(6), live(2)];
        deploy(&mut s, &[0]);
        tick(&ps, &mut s, &[None, None, None], T0, None);
        deploy(&mut s, &[1]);
        let now = T0 + 90;
        let waiting = judgement(Verdict::NotEnoughData("few".into()), now);
        let t = tick(&ps, &mut s, &[Some(waiting.clone()), None, None], now, None);
        assert_eq!(kinds(&t)[1], Some(EventKind::Started));
        assert_eq!(s[1].record.release.map(|m| m.id), Some(T0), "joined");
        // f0 and f1 reach the second step; then f2's candidate moves: it joins at the first
        // step, and the others wait for it there.
        let now = T0 + 300;
        tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(healthy(now)), None],
            now,
            None,
        );
        assert!(s[..2].iter().all(|a| a.record.step == 1), "{s:?}");
        deploy(&mut s, &[2]);
        let now = T0 + 3600;
        let t = tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(healthy(now)), None],
            now,
            None,
        );
        assert_eq!(kinds(&t)[2], Some(EventKind::Started));
        assert_eq!(
            s[2].record.release.map(|m| m.id),
            Some(T0),
            "joined an hour later"
        );
        let why = hold_reason(&t, 0);
        assert!(why.contains("waiting for f2 to join"), "{why}");
        let now = now + 120;
        let t = tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(healthy(now)), Some(healthy(now))],
            now,
            None,
        );
        let why = hold_reason(&t, 0);
        assert!(why.contains("waiting for f2 to catch up"), "{why}");
        assert_eq!(kinds(&t)[2], Some(EventKind::Stepped));
    }

    #[test]
    fn a_regression_during_the_bake_takes_every_baking_member_back_to_its_previous_version() {
        let mut ps = policies(2);
        for p in &mut ps {
            p.steps = vec![100.0];
        }
        let mut s = vec![live(4), live(6)];
        deploy(&mut s, &[0, 1]);
        let t = tick(&ps, &mut s, &[None, None], T0, None);
        assert_eq!(
            kinds(&t),
            [Some(EventKind::Promoted), Some(EventKind::Promoted)]
        );
        let now = T0 + 60;
        let t = tick(
            &ps,
            &mut s,
            &[Some(regressed(now)), Some(healthy(now))],
            now,
            None,
        );
        assert_eq!(
            kinds(&t),
            [Some(EventKind::RolledBack), Some(EventKind::RolledBack)]
        );
        assert_eq!((s[0].stable, s[1].stable), (4, 6));
    }

    #[test]
    fn members_end_their_bake_together_and_one_ended_by_hand_ends_the_release_bake() {
        let mut ps = policies(2);
        for p in &mut ps {
            p.steps = vec![100.0];
        }
        let mut s = vec![live(4), live(6)];
        deploy(&mut s, &[0, 1]);
        tick(&ps, &mut s, &[None, None], T0, None);
        // f0's bake is over, f1's not: f0 keeps baking until f1's is.
        s[1].record.bake.as_mut().unwrap().until += 120;
        let now = T0 + 200;
        let t = tick(
            &ps,
            &mut s,
            &[Some(healthy(now)), Some(healthy(now))],
            now,
            None,
        );
        let why = hold_reason(&t, 0);
        assert!(why.contains("waiting for f1"), "{why}");
        // A person ends f0's bake (`canary promote f0`); then f1 looks regressed: the
        // release's bake is over, and f1 ends its own rather than rolling back alone (which
        // would leave f0 on its new version: a mixed release).
        let now = T0 + 240;
        let d = decide_in(
            &s[0],
            &ps[0],
            None,
            Some(&crate::rollout::Override::Promote),
            &Call::alone(),
            now,
        )
        .unwrap();
        s[0] = d.next.unwrap();
        assert!(crate::rollout::baking(&s[0]).is_none());
        let now = now + 30;
        let t = tick(&ps, &mut s, &[None, Some(regressed(now))], now, None);
        assert_eq!(kinds(&t)[1], Some(EventKind::Baked));
        assert_eq!((s[0].stable, s[1].stable), (5, 7));
        no_mixed_release(&s).unwrap();
    }

    /// Invariant of a release at every write: no member of it is rolled back while another has
    /// finished (ended its bake) in it.
    fn no_mixed_release(s: &[AliasState]) -> Result<(), String> {
        for a in s {
            let Some(m) = a.record.release.filter(|m| m.rolled_back) else {
                continue;
            };
            for b in s {
                let finished = crate::rollout::judged(b).is_none()
                    && b.record
                        .release
                        .is_some_and(|n| n.id == m.id && !n.rolled_back);
                if finished {
                    return Err(format!("release {} is mixed: {s:?}", m.id));
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn no_mixed_release_is_left_behind_across_crashes_at_every_write(
            n in 2usize..4,
            ticks in proptest::collection::vec(
                (0u8..8, proptest::collection::vec(0u8..6, 3), proptest::option::of(0usize..3)),
                10..60,
            ),
        ) {
            let ps = policies(n);
            let mut s: Vec<AliasState> = (0..n).map(|i| live(10 * (i as u64 + 1))).collect();
            for (k, (deploys, verdicts, crash)) in ticks.iter().enumerate() {
                let now = T0 + 60 * k as i64;
                let which: Vec<usize> = (0..n).filter(|i| deploys & (1 << i) != 0).collect();
                if k % 7 == 0 {
                    deploy(&mut s, &which);
                }
                let js: Vec<Option<Judgement>> = (0..n)
                    .map(|i| match verdicts[i] {
                        0 => Some(regressed(now)),
                        1 => None,
                        2 => Some(judgement(Verdict::NotEnoughData("few".into()), now)),
                        _ => Some(healthy(now)),
                    })
                    .collect();
                let lowest = s.iter().filter_map(|a| a.canary.map(|_| a.record.step)).min();
                let before = s.clone();
                let t = tick(&ps, &mut s, &js, now, *crash);
                // A member steps forward only from the lowest step of the release.
                for (i, a) in t.actions.iter().enumerate() {
                    if matches!(a, Some(Action::Step { .. })) {
                        prop_assert_eq!(Some(before[i].record.step), lowest, "{:?}", before);
                    }
                }
                no_mixed_release(&s).map_err(TestCaseError::fail)?;
                if crash.is_none() {
                    // After a whole tick, no member of a rolled-back release is still under way.
                    for a in &s {
                        if let Some(m) = a.record.release.filter(|m| m.rolled_back) {
                            for b in &s {
                                let under_way = crate::rollout::judged(b).is_some()
                                    && b.record.release.is_some_and(|n| n.id == m.id && !n.rolled_back);
                                prop_assert!(!under_way, "{:?}", s);
                            }
                        }
                    }
                }
            }
        }
    }
}
