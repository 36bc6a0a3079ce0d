//! Releases in a tick and in people's commands: each release's members are decided together
//! ([`crate::rollout::release::coordinate`]), written one after the other (the member owing
//! the release's announcement first), and announced once, after every member's write.

use super::{Agent, CommandError, Outcome, Seen, Written};
use crate::notify::{ReleaseNote, Trigger};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier};
use crate::rollout::release::{
    coordinate, member_line, under_way, write_order, Call, Member, Order,
};
use crate::rollout::{decide_in, judged, Override, OverrideError};
use std::collections::HashMap;

/// Each policy's part in its release this tick. A release with a member whose alias could not
/// be read moves no member forward (its rollbacks still happen).
pub(super) fn calls(policies: &[Policy], survey: &[Seen], now: i64) -> Vec<Call> {
    let readable: Vec<usize> = (0..policies.len())
        .filter(|&i| survey[i].snap.is_ok())
        .collect();
    let members: Vec<Member<'_>> = readable
        .iter()
        .filter_map(|&i| {
            let snap = survey[i].snap.as_ref().ok()?;
            Some(Member {
                policy: &policies[i],
                state: &snap.state,
                judgement: survey[i].judgement.as_ref(),
            })
        })
        .collect();
    let mut calls = vec![Call::alone(); policies.len()];
    for (k, call) in coordinate(&members, now).into_iter().enumerate() {
        calls[readable[k]] = call;
    }
    for (i, p) in policies.iter().enumerate() {
        let Some(name) = p.release.as_deref().filter(|_| survey[i].snap.is_err()) else {
            continue;
        };
        for (j, q) in policies.iter().enumerate() {
            if q.release.as_deref() == Some(name) && calls[j].order == Order::Go {
                calls[j].order = Order::Wait(format!(
                    "release {name}: cannot read {}:{}",
                    p.function, p.alias
                ));
            }
        }
    }
    calls
}

/// The tick's units of work, in policy order of their first member: each release's members in
/// their write order, and every other policy alone.
pub(super) fn units(policies: &[Policy], calls: &[Call]) -> Vec<Vec<usize>> {
    groups(policies)
        .into_iter()
        .map(|members| {
            if policies[members[0]].release.is_none() {
                return members;
            }
            let group_calls: Vec<Call> = members.iter().map(|&j| calls[j].clone()).collect();
            write_order(&group_calls)
                .into_iter()
                .map(|k| members[k])
                .collect()
        })
        .collect()
}

/// Policy indices grouped by release: a release's members together (in policy order), every
/// other policy alone; groups in the order of their first policy.
pub(super) fn groups(policies: &[Policy]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_release: HashMap<&str, usize> = HashMap::new();
    for (i, p) in policies.iter().enumerate() {
        match p.release.as_deref() {
            Some(r) => match by_release.get(r) {
                Some(&g) => groups[g].push(i),
                None => {
                    by_release.insert(r, groups.len());
                    groups.push(vec![i]);
                }
            },
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// What a release's members' written decisions were, for its one announcement; `None` for a
/// policy outside any release.
pub(super) fn note(
    policies: &[Policy],
    done: &[(usize, Outcome, Option<Written>, super::outages::Failure)],
) -> Option<ReleaseNote> {
    let name = done
        .first()
        .and_then(|(i, ..)| policies[*i].release.clone())?;
    let mut in_order: Vec<_> = done.iter().collect();
    in_order.sort_by_key(|(i, ..)| *i);
    let members = in_order
        .into_iter()
        .filter_map(|(i, _, w, _)| {
            let w = w.as_ref()?;
            let event = w.action.event()?;
            Some((
                event,
                member_line(&policies[*i].function, &w.before, &w.action),
            ))
        })
        .collect();
    Some(ReleaseNote { name, members })
}

/// The members of `policy`'s release among `policies` (itself included), in order.
#[must_use]
pub fn members_of<'a>(policies: &'a [Policy], name: &str) -> Vec<&'a Policy> {
    policies
        .iter()
        .filter(|p| p.release.as_deref() == Some(name))
        .collect()
}

/// The members a release command acts on: for a start, those with a new candidate; for a
/// promote or rollback, those under way; for pause and resume, all.
fn targets(
    name: &str,
    states: &[&crate::rollout::AliasState],
    ovr: &Override,
    pending: bool,
) -> Result<Vec<usize>, OverrideError> {
    let targets: Vec<usize> = (0..states.len())
        .filter(|&i| {
            let s = states[i];
            match ovr {
                Override::Start { .. } => s.candidate.is_some_and(|c| c != s.stable),
                Override::Promote | Override::PromoteFull | Override::Rollback { .. } => {
                    judged(s).is_some()
                }
                Override::Pause | Override::Resume => true,
            }
        })
        .collect();
    if targets.is_empty() {
        return Err(match ovr {
            Override::Start { .. } => OverrideError::NothingToStart(format!(
                "no member of release {name} has a new candidate"
            )),
            Override::Rollback { .. } => OverrideError::NothingToRollBack(format!(
                "no member of release {name} is under way"
            )),
            _ => OverrideError::NoCanary(format!("release {name}")),
        });
    }
    if pending && matches!(ovr, Override::Start { .. }) {
        return Err(OverrideError::NothingToStart(format!(
            "release {name} is being rolled back; let the agent finish it first"
        )));
    }
    Ok(targets)
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// A person's command on one member of a release: it acts on that member only, within its
    /// release: a start joins the release under way; a rollback marks the release rolled back,
    /// and the agent's next tick rolls back the other members.
    ///
    /// # Errors
    /// As [`Agent::command`]; a start while the release is being rolled back is rejected.
    pub async fn command_member(
        &self,
        members: &[Policy],
        target: usize,
        ovr: &Override,
        command_line: &str,
        now: i64,
    ) -> Result<Outcome, CommandError> {
        let policy = &members[target];
        let (id, pending) = self.release_under_way(members, now).await?;
        if pending && matches!(ovr, Override::Start { .. }) {
            return Err(OverrideError::NothingToStart(format!(
                "release {} is being rolled back; let the agent finish it (or run `canary rollback --release {}`) first",
                policy.release.as_deref().unwrap_or_default(),
                policy.release.as_deref().unwrap_or_default()
            ))
            .into());
        }
        let call = Call {
            id: Some(id.unwrap_or(now)),
            order: Order::Alone,
            announce: true,
        };
        self.command_with(policy, ovr, command_line, &call, now)
            .await
    }

    async fn release_under_way(
        &self,
        members: &[Policy],
        now: i64,
    ) -> Result<(Option<i64>, bool), CommandError> {
        let mut states = Vec::with_capacity(members.len());
        for p in members {
            states.push(self.read(p, now).await?.state);
        }
        let views: Vec<Member<'_>> = members
            .iter()
            .zip(&states)
            .map(|(policy, state)| Member {
                policy,
                state,
                judgement: None,
            })
            .collect();
        Ok(under_way(&views, now))
    }

    /// A person's command on every member of a release (`--release NAME`): start every member
    /// with a new candidate, promote or roll back every member under way, pause or resume all.
    /// Checked on every member before anything is written; announced once.
    ///
    /// # Errors
    /// The command applies to no member, or to some member not at all (nothing written); a
    /// start while the release is being rolled back; an alias changed or AWS failed while the
    /// members were written (the ones before it are written and announced).
    pub async fn command_release(
        &self,
        members: &[Policy],
        ovr: &Override,
        command_line: &str,
        now: i64,
    ) -> Result<Vec<Outcome>, CommandError> {
        let name = members
            .first()
            .and_then(|p| p.release.clone())
            .unwrap_or_default();
        let mut snaps = Vec::with_capacity(members.len());
        for p in members {
            snaps.push(self.read(p, now).await?);
        }
        let views: Vec<Member<'_>> = members
            .iter()
            .zip(&snaps)
            .map(|(policy, snap)| Member {
                policy,
                state: &snap.state,
                judgement: None,
            })
            .collect();
        let (id, pending) = under_way(&views, now);
        let states: Vec<&crate::rollout::AliasState> = snaps.iter().map(|s| &s.state).collect();
        let targets = targets(&name, &states, ovr, pending)?;
        let calls: Vec<Call> = (0..targets.len())
            .map(|k| Call {
                id: Some(id.unwrap_or(now)),
                order: Order::Go,
                announce: k == 0,
            })
            .collect();
        for (k, &i) in targets.iter().enumerate() {
            decide_in(
                &snaps[i].state,
                &members[i],
                None,
                Some(ovr),
                &calls[k],
                now,
            )?;
        }
        let trigger = Trigger::Manual {
            command: command_line.to_string(),
        };
        let mut done = Vec::with_capacity(targets.len());
        let mut error = None;
        for (k, &i) in targets.iter().enumerate() {
            let mut out = Outcome::new(&members[i]);
            let snap = snaps[i].clone();
            match self
                .write(&members[i], snap, Some(ovr), &calls[k], now, &mut out)
                .await
            {
                Ok(w) => done.push((i, out, w, None)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let note = note(members, &done);
        let mut outs = Vec::with_capacity(done.len());
        for (i, mut out, w, _) in done {
            if let Some(w) = w {
                self.announce(&members[i], w, &trigger, None, note.as_ref(), &mut out)
                    .await;
            }
            outs.push(out);
        }
        match error {
            Some(e) => Err(e),
            None => Ok(outs),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::policy::Policy;
    use crate::ports::Notification;
    use crate::record::EventKind;
    use crate::rollout::AliasState;
    use crate::rollout::Override;
    use crate::sim::traffic::{Build, Traffic};
    use crate::sim::{agent, block_on, Shared, SimAgent, SimFunction, World};
    use crate::tick::tests::WriteBudget;
    use crate::tick::{rolled_back, Outcome};
    use std::sync::atomic::Ordering;

    const T0: i64 = 1_795_428_020;

    fn release(functions: &[&str]) -> (Shared, Vec<Policy>) {
        release_seeded(functions, 11)
    }

    fn release_seeded(functions: &[&str], seed: u64) -> (Shared, Vec<Policy>) {
        release_among(functions, 0, seed)
    }

    /// A release of `functions` and `idle` other functions (`idle0`, …) that are no release's.
    fn release_among(functions: &[&str], idle: usize, seed: u64) -> (Shared, Vec<Policy>) {
        let mut w = World::new(T0 - 4000, Traffic::steady(10.0), 60, seed);
        let mut policies: Vec<Policy> = (0..idle)
            .map(|i| Policy::with_defaults(&format!("idle{i}")))
            .collect();
        for f in functions {
            let mut p = Policy::with_defaults(f);
            p.release = Some("api".to_string());
            p.step_interval = std::time::Duration::from_secs(120);
            p.notify = Some(crate::policy::Notify {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:alerts".into(),
            });
            policies.push(p);
        }
        w.serve_healthy(&policies, T0 - 4000);
        w.advance(T0);
        (Shared::new(w), policies)
    }

    fn run(
        a: &SimAgent,
        w: &Shared,
        ps: &[Policy],
        now: &mut i64,
        limit: usize,
        stop: impl Fn(&[Outcome]) -> bool,
    ) -> Vec<Outcome> {
        for _ in 0..limit {
            *now += 60;
            w.lock().advance(*now);
            let outs = block_on(a.tick(ps, *now));
            if stop(&outs) {
                return outs;
            }
        }
        panic!("not reached in {limit} ticks");
    }

    fn events(pages: &[(String, Notification)]) -> Vec<String> {
        pages
            .iter()
            .map(|(_, n)| {
                n.attributes
                    .iter()
                    .find(|(k, _)| k == "event")
                    .map_or(String::new(), |(_, v)| v.clone())
            })
            .collect()
    }

    #[test]
    fn a_release_with_one_failing_member_is_rolled_back_as_one_and_its_fix_ships_both() {
        let (w, ps) = release(&["create", "get"]);
        let a = agent(&w);
        {
            let mut w = w.lock();
            w.functions[0].deploy(Build::healthy());
            w.functions[1].deploy(Build {
                error_rate: 0.5,
                ..Build::healthy()
            });
        }
        let mut now = T0;
        run(&a, &w, &ps, &mut now, 1, |_| true);
        let pages = a.notifier.take();
        assert_eq!(
            events(&pages),
            ["started"],
            "one page for the release's start"
        );
        assert!(pages[0]
            .1
            .subject
            .contains("Release api: canary started (2 functions)"));
        let outs = run(&a, &w, &ps, &mut now, 10, |o| o.iter().any(rolled_back));
        assert!(
            outs.iter().all(rolled_back),
            "both in the same tick: {outs:?}"
        );
        {
            let w = w.lock();
            assert_eq!((w.functions[0].stable, w.functions[0].canary), (1, None));
            assert_eq!((w.functions[1].stable, w.functions[1].canary), (1, None));
        }
        let pages = a.notifier.take();
        assert_eq!(events(&pages), ["rolled_back"], "one page: {pages:?}");
        let page = &pages[0].1;
        assert!(
            page.subject
                .starts_with("ROLLED BACK release api: get v2 -> v1: 5xx"),
            "names the member and the numbers: {}",
            page.subject
        );
        assert!(
            page.body.contains("create v2 -> v1") && page.body.contains("get v2 -> v1"),
            "{}",
            page.body
        );
        assert!(page
            .attributes
            .contains(&("release".to_string(), "api".to_string())));
        // Nothing restarts on its own.
        for _ in 0..2 {
            now += 60;
            w.lock().advance(now);
            block_on(a.tick(&ps, now));
        }
        assert!(a.notifier.take().is_empty());
        // The fix of get alone: create's v2, rolled back only because of get, ships with it.
        w.lock().functions[1].deploy(Build::healthy());
        let outs = run(&a, &w, &ps, &mut now, 1, |_| true);
        let started: Vec<_> = outs
            .iter()
            .map(|o| o.decision.as_ref().map(|d| d.action.clone()))
            .collect();
        assert!(
            matches!(
                started.as_slice(),
                [
                    Some(crate::rollout::Action::Start { version: 2, .. }),
                    Some(crate::rollout::Action::Start { version: 3, .. })
                ]
            ),
            "{started:?}"
        );
        run(&a, &w, &ps, &mut now, 60, |_| {
            let w = w.lock();
            w.functions
                .iter()
                .all(|f| f.canary.is_none() && f.alias_state().record.bake.is_none())
        });
        let w = w.lock();
        assert_eq!((w.functions[0].stable, w.functions[1].stable), (2, 3));
        drop(w);
        let pages = a.notifier.take();
        let kinds = events(&pages);
        for e in ["started", "promoted", "baked"] {
            assert_eq!(
                kinds.iter().filter(|k| *k == e).count(),
                1,
                "one {e} page for the release: {kinds:?}"
            );
        }
        assert!(!kinds.contains(&EventKind::RolledBack.as_str().to_string()));
    }

    #[test]
    fn under_a_read_budget_a_rolled_back_release_takes_turns_and_its_fix_still_ships_whole() {
        let (w, ps) = release_among(&["create", "get"], 10, 11);
        let mut a = agent(&w);
        a.reads_per_tick = Some(4);
        let (create, get) = (10, 11);
        {
            let mut w = w.lock();
            w.functions[create].deploy(Build::healthy());
            w.functions[get].deploy(Build {
                error_rate: 0.5,
                ..Build::healthy()
            });
        }
        let mut now = T0;
        run(&a, &w, &ps, &mut now, 20, |o| {
            o[get]
                .decision
                .as_ref()
                .is_some_and(|d| matches!(d.action, crate::rollout::Action::Rollback { .. }))
        });
        // Once its page is out, the rolled-back release waits for a deploy like any idle alias:
        // it takes its turn instead of a read every tick (both members together or neither).
        let mut skipped = 0;
        for _ in 0..6 {
            let outs = run(&a, &w, &ps, &mut now, 1, |_| true);
            assert_eq!(outs[create].skipped, outs[get].skipped, "read whole");
            skipped += usize::from(outs[create].skipped);
        }
        assert!(skipped >= 2, "read {} of 6 ticks", 6 - skipped);
        let pages = a.notifier.take();
        assert_eq!(events(&pages), ["started", "rolled_back"], "{pages:?}");
        // The fix of get, noticed at the release's turn, ships create's held-back v2 with it.
        w.lock().functions[get].deploy(Build::healthy());
        run(&a, &w, &ps, &mut now, 60, |_| {
            let w = w.lock();
            [create, get].iter().all(|&i| {
                w.functions[i].stable > 1 && w.functions[i].alias_state().record.bake.is_none()
            })
        });
        let w = w.lock();
        assert_eq!(
            (w.functions[create].stable, w.functions[get].stable),
            (2, 3)
        );
        drop(w);
        let kinds = events(&a.notifier.take());
        for e in ["started", "promoted", "baked"] {
            assert_eq!(kinds.iter().filter(|k| *k == e).count(), 1, "{kinds:?}");
        }
    }

    #[test]
    fn a_person_rolling_back_one_member_and_the_agent_following_with_the_rest() {
        let (w, ps) = release(&["create", "get"]);
        let a = agent(&w);
        {
            let mut w = w.lock();
            w.functions[0].deploy(Build::healthy());
            w.functions[1].deploy(Build::healthy());
        }
        let mut now = T0;
        run(&a, &w, &ps, &mut now, 1, |_| true);
        a.notifier.take();
        let out = block_on(a.command_member(
            &ps,
            0,
            &Override::Rollback {
                to: None,
                reason: Some("bad notes".into()),
            },
            "canary rollback create --reason \"bad notes\"",
            now + 10,
        ))
        .unwrap();
        assert!(rolled_back(&out));
        assert!(
            w.lock().functions[1].canary.is_some(),
            "get is left to the next tick"
        );
        let outs = run(&a, &w, &ps, &mut now, 1, |_| true);
        assert!(rolled_back(&outs[1]), "{:?}", outs[1].line());
        let pages = a.notifier.take();
        assert_eq!(
            events(&pages),
            ["rolled_back", "rolled_back"],
            "the person's, then the agent's"
        );
        assert!(
            pages[1]
                .1
                .subject
                .starts_with("ROLLED BACK release api: get v2 -> v1"),
            "{}",
            pages[1].1.subject
        );
        assert!(
            pages[1].1.body.contains("create was rolled back"),
            "{}",
            pages[1].1.body
        );
        // A release command rolls nothing back twice: nothing is under way.
        let err = block_on(a.command_release(
            &ps,
            &Override::Rollback {
                to: None,
                reason: None,
            },
            "canary rollback --release api",
            now + 10,
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no member of release api is under way"),
            "{err}"
        );
    }

    #[test]
    fn release_commands_act_on_every_member_with_one_page() {
        let (w, ps) = release(&["create", "get", "list"]);
        let a = agent(&w);
        {
            let mut w = w.lock();
            w.functions[0].deploy(Build::healthy());
            w.functions[2].deploy(Build::healthy());
        }
        let now = T0 + 30;
        let outs = block_on(a.command_release(
            &ps,
            &Override::Start { version: None },
            "canary start --release api",
            now,
        ))
        .unwrap();
        assert_eq!(outs.len(), 2, "only the members with a new candidate");
        let pages = a.notifier.take();
        assert_eq!(events(&pages), ["started"]);
        assert!(
            pages[0].1.body.contains("create v2 at 10%; list v2 at 10%"),
            "{}",
            pages[0].1.body
        );
        let outs = block_on(a.command_release(
            &ps,
            &Override::PromoteFull,
            "canary promote --release api --full",
            now + 5,
        ))
        .unwrap();
        assert_eq!(outs.len(), 2);
        let w = w.lock();
        assert_eq!(
            w.functions.iter().map(|f| f.stable).collect::<Vec<_>>(),
            [2, 1, 2]
        );
        drop(w);
        let pages = a.notifier.take();
        assert_eq!(events(&pages), ["promoted"]);
        assert!(
            pages[0]
                .1
                .subject
                .contains("promoted to 100% (2 functions)"),
            "{}",
            pages[0].1.subject
        );
    }

    /// No release has a member rolled back while another finished in it; after a whole tick, no
    /// member of a rolled-back release is still under way.
    fn mixed(w: &Shared, whole_tick: bool) -> Option<String> {
        let states: Vec<AliasState> = w
            .lock()
            .functions
            .iter()
            .map(SimFunction::alias_state)
            .collect();
        for a in &states {
            let Some(m) = a.record.release.filter(|m| m.rolled_back) else {
                continue;
            };
            for b in &states {
                let same = b
                    .record
                    .release
                    .is_some_and(|n| n.id == m.id && !n.rolled_back);
                let under_way = crate::rollout::judged(b).is_some();
                if same && (!under_way || whole_tick) {
                    return Some(format!("{states:?}"));
                }
            }
        }
        None
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn no_mixed_release_is_left_behind_when_a_tick_stops_at_any_write(
            bad in 0usize..3,
            // Per tick: how many alias writes go through before the agent "crashes" (-1: none).
            budgets in proptest::collection::vec(-1i64..3, 40),
            seed in 0u64..1000,
        ) {
            let (w, ps) = release_seeded(&["create", "get"], seed);
            let base = agent(&w);
            let ports = WriteBudget::new(base.aliases.clone(), "the agent crashed");
            let budget = ports.budget.clone();
            let a = crate::tick::Agent::new(
                ports,
                base.metrics.clone(),
                base.notifier.clone(),
            );
            {
                let mut w = w.lock();
                for (i, f) in w.functions.iter_mut().enumerate() {
                    // bad == 2: both healthy.
                    let error_rate = if i == bad { 0.3 } else { 0.0 };
                    f.deploy(Build { error_rate, ..Build::healthy() });
                }
            }
            let mut now = T0;
            for (k, &b) in budgets.iter().enumerate() {
                now += 60;
                w.lock().advance(now);
                budget.store(b, Ordering::SeqCst);
                block_on(a.tick(&ps, now));
                let whole = b < 0;
                proptest::prop_assert!(mixed(&w, whole).is_none(), "tick {}: {:?}", k, mixed(&w, whole));
            }
            // Then no more crashes until the release is over.
            budget.store(-1, Ordering::SeqCst);
            for _ in 0..40 {
                now += 60;
                w.lock().advance(now);
                block_on(a.tick(&ps, now));
                proptest::prop_assert!(mixed(&w, true).is_none(), "{:?}", mixed(&w, true));
            }
            let w = w.lock();
            let stable: Vec<u64> = w.functions.iter().map(|f| f.stable).collect();
            proptest::prop_assert!(stable == [1, 1] || stable == [2, 2], "mixed at the end: {:?}", stable);
            if bad == 2 {
                proptest::prop_assert_eq!(stable, vec![2, 2]);
            }
        }
    }
}
