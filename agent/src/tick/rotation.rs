//! Which policies a tick reads when Lambda's control-plane quota does not allow reading them all
//! every minute (15 requests a second per account and region, shared with deploys and people):
//! every alias with something under way is read every tick; idle ones take turns in the capacity
//! left. A new deploy on an idle alias is therefore noticed a few ticks late at worst, which costs
//! only time: `candidate` serves no production traffic until the agent starts the canary.

use super::Outcome;
use crate::policy::Policy;
use std::collections::HashSet;

/// What the agent remembers between ticks to choose what to read.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Where the idle aliases' turn starts next tick.
    cursor: usize,
    /// `function:alias` of every alias the last read found not idle (or could not read). After
    /// a cold start nothing is known: every alias takes its turn once, and what it shows sorts
    /// it.
    busy: HashSet<String>,
}

fn key(p: &Policy) -> String {
    format!("{}:{}", p.function, p.alias)
}

/// Whether an alias needs nothing from the agent until someone deploys: read, nothing running,
/// baking, rechecking or owed, and the decision was to hold without writing. A release member's mark does
/// not keep it busy: a release that ended or was rolled back waits for a deploy like any alias
/// (a follower's held-back version is recorded rejected until then), and the release is read
/// whole when any member is.
#[must_use]
pub fn idle(o: &Outcome) -> bool {
    let quiet = o.before.as_ref().is_some_and(|s| {
        s.canary.is_none()
            && s.record.bake.is_none()
            && s.record.recheck.is_none()
            && s.record.owed.is_empty()
            && s.candidate
                .is_none_or(|c| c == s.stable || !crate::rollout::startable(&s.record, c))
    });
    quiet
        && o.error.is_none()
        && !o.wrote
        && o.decision
            .as_ref()
            .is_some_and(|d| matches!(d.action, crate::rollout::Action::Hold(_)))
}

impl Rotation {
    /// Indices of the policies to read this tick, in policy order: all of them when `capacity`
    /// is `None` or enough; else every busy alias (however many), then idle ones from the
    /// cursor on until `capacity` reads (at least one idle group a tick). A release is read
    /// whole or not at all, so its members are always decided together.
    pub fn choose(&mut self, policies: &[Policy], capacity: Option<usize>) -> Vec<usize> {
        let n = policies.len();
        let Some(capacity) = capacity.filter(|&c| c < n) else {
            return (0..n).collect();
        };
        let groups = super::release::groups(policies);
        let busy = |g: &Vec<usize>| g.iter().any(|&i| self.busy.contains(&key(&policies[i])));
        let mut chosen = vec![false; n];
        let mut count = 0;
        for g in groups.iter().filter(|g| busy(g)) {
            for &i in g {
                chosen[i] = true;
                count += 1;
            }
        }
        // Idle groups take turns from the cursor (a group index, kept in range).
        let start = self.cursor % groups.len().max(1);
        let mut next = start;
        let mut added = false;
        for step in 0..groups.len() {
            let g = (start + step) % groups.len();
            if chosen[groups[g][0]] {
                continue;
            }
            // The first idle group in line is read even past the budget (a release larger than
            // what is left, or more busy aliases than the budget): every alias gets its turn.
            if count + groups[g].len() > capacity && added {
                break;
            }
            added = true;
            for &i in &groups[g] {
                chosen[i] = true;
            }
            count += groups[g].len();
            next = (g + 1) % groups.len();
        }
        self.cursor = next;
        (0..n).filter(|&i| chosen[i]).collect()
    }

    /// Learns from a tick's outcomes (`outs[k]` is the outcome of `policies[read[k]]`) which
    /// aliases are busy; an alias not read keeps what was known of it.
    pub fn learn(&mut self, policies: &[Policy], read: &[usize], outs: &[Outcome]) {
        let keys: HashSet<String> = policies.iter().map(key).collect();
        self.busy.retain(|k| keys.contains(k));
        for (&i, o) in read.iter().zip(outs) {
            let k = key(&policies[i]);
            if idle(o) {
                self.busy.remove(&k);
            } else {
                self.busy.insert(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Action, AliasState, Decision, Record, Routing};

    fn policies(n: usize) -> Vec<Policy> {
        (0..n)
            .map(|i| Policy::with_defaults(&format!("f{i}")))
            .collect()
    }

    fn outcome(p: &Policy, canary: bool) -> Outcome {
        let mut o = Outcome::new(p);
        o.before = Some(AliasState {
            stable: 1,
            canary: canary.then_some(Routing {
                version: 2,
                weight: 5.0,
            }),
            candidate: Some(if canary { 2 } else { 1 }),
            record: Record::default(),
        });
        o.decision = Some(Decision {
            action: Action::Hold("nothing to do".into()),
            next: None,
            problems: Vec::new(),
        });
        o
    }

    #[test]
    fn without_a_budget_or_with_enough_every_alias_is_read() {
        let ps = policies(5);
        let mut r = Rotation::default();
        assert_eq!(r.choose(&ps, None), [0, 1, 2, 3, 4]);
        assert_eq!(r.choose(&ps, Some(5)), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn idle_aliases_take_turns_and_busy_ones_are_read_every_tick() {
        let ps = policies(10);
        let mut r = Rotation::default();
        let mut seen = vec![0; 10];
        // Cold start: nothing known, turns of 4; f7 turns out to run a canary.
        for _ in 0..3 {
            let read = r.choose(&ps, Some(4));
            assert!(read.len() <= 4 || read.contains(&7), "{read:?}");
            let outs: Vec<Outcome> = read.iter().map(|&i| outcome(&ps[i], i == 7)).collect();
            r.learn(&ps, &read, &outs);
            for i in read {
                seen[i] += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n >= 1),
            "every alias read within ceil(10/4) ticks: {seen:?}"
        );
        // From now on f7 is read every tick, beside 3 idle ones.
        for _ in 0..5 {
            let read = r.choose(&ps, Some(4));
            assert!(read.contains(&7), "{read:?}");
            assert_eq!(read.len(), 4, "{read:?}");
            let outs: Vec<Outcome> = read.iter().map(|&i| outcome(&ps[i], i == 7)).collect();
            r.learn(&ps, &read, &outs);
        }
        // A busy alias is read even past the budget, and one idle alias still gets its turn.
        let read = r.choose(&ps, Some(0));
        assert!(read.len() == 2 && read.contains(&7), "{read:?}");
    }

    #[test]
    fn an_alias_that_could_not_be_read_or_has_a_new_candidate_stays_busy() {
        let p = Policy::with_defaults("f");
        let mut failed = outcome(&p, false);
        failed.error = Some("throttled".into());
        assert!(!idle(&failed));
        let mut deployed = outcome(&p, false);
        if let Some(s) = deployed.before.as_mut() {
            s.candidate = Some(2);
        }
        assert!(
            !idle(&deployed),
            "a candidate newer than stable waits to start"
        );
        if let Some(s) = deployed.before.as_mut() {
            s.record.rejected = Some(2);
        }
        assert!(idle(&deployed), "a rejected candidate needs nothing");
        // A release member held back with its release (a follower): nothing to do until the
        // release's next deploy, like any rejected candidate; with a page owed it stays busy.
        if let Some(s) = deployed.before.as_mut() {
            s.record.release = Some(crate::record::ReleaseMark {
                id: 1_700_000_000,
                rolled_back: true,
                follower: true,
                announced: false,
            });
        }
        assert!(idle(&deployed), "a held-back follower waits for a deploy");
        let mut promoted = outcome(&p, false);
        if let Some(s) = promoted.before.as_mut() {
            s.record.release = Some(crate::record::ReleaseMark::live(1_700_000_000));
        }
        assert!(idle(&promoted), "a release that ended needs nothing");
        if let Some(s) = deployed.before.as_mut() {
            s.record.owed.push(crate::record::Owed {
                event: crate::record::EventKind::RolledBack,
                version: Some(2),
                stable: 1,
                at: 1_700_000_000,
                manual: false,
                lease: 1_700_000_120,
            });
        }
        assert!(!idle(&deployed), "a page owed is read every tick");
        assert!(idle(&outcome(&p, false)));
        assert!(!idle(&outcome(&p, true)));
    }

    #[test]
    fn a_release_is_read_whole_or_not_at_all() {
        let mut ps = policies(6);
        for i in [1, 4] {
            ps[i].release = Some("api".into());
        }
        let mut r = Rotation::default();
        for _ in 0..6 {
            let read = r.choose(&ps, Some(2));
            assert_eq!(read.contains(&1), read.contains(&4), "{read:?}");
            assert!(read.len() <= 2, "{read:?}");
            let outs: Vec<Outcome> = read.iter().map(|&i| outcome(&ps[i], false)).collect();
            r.learn(&ps, &read, &outs);
        }
    }
}
