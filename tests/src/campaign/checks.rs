//! What a campaign checks after every step and round: the alias's routing against its record,
//! the `UpdateAlias` log replayed for restarted rollbacks, and every rollback's page.

use std::collections::{BTreeMap, BTreeSet};

use canary_agent::rollout::Record;

use super::lab::routed;
use super::report::ViolationKind;
use super::{Campaign, FUNCTION, PERSON};
use crate::proxy::AliasWrite;
use crate::Delivered;

/// What the replay of the `UpdateAlias` log knows.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// The alias before the next write: stable and routed version.
    pub(super) stable: u64,
    pub(super) routed: Option<u64>,
    /// Rolled-back versions an agent must not start (cleared by a person's start of that
    /// version or a newer deploy), with where they were rolled back.
    pub(super) blocked: BTreeMap<u64, u64>,
    /// Versions rolled back in this round.
    pub(super) round_rollbacks: BTreeSet<u64>,
    /// Every version rolled back so far (for the person's `start --version`).
    pub(super) ever_rolled_back: BTreeSet<u64>,
    /// Log position to read from.
    pub(super) cursor: usize,
    /// The version whose rollback in the bake a recheck lifted, as the last write's record had
    /// it.
    pub(super) lifted: Option<u64>,
    /// Rolled-back versions whose rollback a person made (a recheck never lifts those).
    pub(super) by_person: BTreeSet<u64>,
}

impl Campaign<'_> {
    /// The alias's routing and its record agree.
    pub(super) async fn check_alias(&mut self, round: usize, when: &str) {
        self.report.alias_checks += 1;
        let live = self.lab.alias(FUNCTION, "live").await;
        let record = Record::decode(&live.description);
        let routed = live.routed();
        let problem = match routed.as_slice() {
            [] => record
                .canary
                .map(|c| format!("no routing, but the record has canary v{c}")),
            [(v, w)] => {
                let step_weight = self.policy.steps.get(record.step).copied();
                if record.canary != Some(*v) {
                    Some(format!(
                        "v{v} routed at {}%, but the record's canary is {:?}",
                        w * 100.0,
                        record.canary
                    ))
                } else if step_weight.is_none_or(|s| (s - w * 100.0).abs() > 1e-6) {
                    Some(format!(
                        "v{v} routed at {}%, but the record is at step {} ({step_weight:?}%)",
                        w * 100.0,
                        record.step
                    ))
                } else {
                    None
                }
            }
            many => Some(format!("{} versions routed: {many:?}", many.len())),
        };
        if let Some(p) = problem {
            self.report.violation(
                ViolationKind::HalfApplied,
                format!(
                    "round {round}, after {when}: {p} (description {:?})",
                    live.description
                ),
            );
        }
    }

    /// Replays the `UpdateAlias` writes of this round: starts, rollbacks, restarted rollbacks.
    ///
    /// A write is a rollback of `c` when `c` was the routed canary and the write leaves no
    /// routing and a stable version other than `c`, or, with no canary before, when it points the
    /// alias at an older version than the stable `c` (`rollback --to` an older version). A write
    /// that routes a version that was not routed before is a start, by a person when the
    /// caller's application name is [`PERSON`], else by an agent.
    pub(super) fn replay_log(&mut self, round: usize) {
        let writes = self.proxy.alias_writes_since(self.replay.cursor);
        self.replay.cursor += writes.len();
        for w in writes
            .iter()
            .filter(|w| w.function == FUNCTION && w.alias == "live")
        {
            let stable: u64 = w.function_version.parse().unwrap_or(0);
            let routed_now = routed(&w.weights);
            let next_routed = routed_now.first().map(|(c, _)| *c);
            let r = &mut self.replay;
            // Rollbacks: the canary taken off without becoming stable, or (with no canary) the
            // stable version replaced by an older one.
            let rolled_back = match r.routed {
                Some(c) if next_routed.is_none() && stable != c => Some(c),
                None if next_routed.is_none() && stable < r.stable => Some(r.stable),
                _ => None,
            };
            // A recheck lifting an agent's rollback in the bake (the version before failed
            // alike) unblocks that version: the record names it in the write that lifts it.
            let lifted = Record::decode(&w.description).lifted;
            if let Some(c) = lifted.filter(|&c| r.lifted != Some(c) && !r.by_person.contains(&c)) {
                r.blocked.remove(&c);
            }
            r.lifted = lifted;
            if let Some(c) = rolled_back {
                if w.caller.as_deref() == Some(PERSON) {
                    r.by_person.insert(c);
                }
                r.blocked.insert(c, w.seq);
                r.round_rollbacks.insert(c);
                r.ever_rolled_back.insert(c);
                self.report.rollbacks += 1;
            }
            // Starts: a version routed that was not before.
            if let Some(c) = next_routed.filter(|&c| r.routed != Some(c)) {
                let by_person = w.caller.as_deref() == Some(PERSON);
                if by_person {
                    self.report.person_starts += 1;
                    r.blocked.remove(&c);
                    r.by_person.remove(&c);
                } else {
                    self.report.agent_starts += 1;
                    if let Some(&at) = r.blocked.get(&c) {
                        let history: Vec<String> = writes
                            .iter()
                            .filter(|h| (at..=w.seq).contains(&h.seq))
                            .map(describe)
                            .collect();
                        self.report.violation(
                            ViolationKind::RestartedRollback,
                            format!(
                                "round {round}: v{c} rolled back by write #{at} and started again \
                                 by write #{}; writes: {}",
                                w.seq,
                                history.join("; ")
                            ),
                        );
                    }
                }
            }
            let r = &mut self.replay;
            r.stable = stable;
            r.routed = next_routed;
        }
    }

    /// Every rollback of the round has its page in both queues; counts pages and duplicates.
    pub(super) async fn check_pages(&mut self, round: usize) {
        let all = self.inbox.drain().await;
        let filtered = self.filtered.drain().await;
        self.report.pages += all.len() as u64;
        self.report.pages_filtered += filtered.len() as u64;
        let mut paged: [BTreeSet<u64>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for (i, messages) in [&all, &filtered].into_iter().enumerate() {
            for m in messages {
                let attr = |name: &str| m.attributes.get(name).map(String::as_str);
                if attr("event") == Some("retry") || attr("resend") == Some("true") {
                    self.report.resent_pages += 1;
                }
                match attr("id") {
                    Some(id) => {
                        if !self.seen_ids[i].insert(id.to_string()) {
                            self.report.duplicates += 1;
                        }
                    }
                    None => self.report.pages_without_id += 1,
                }
                if let Some(c) = rollback_page(m) {
                    paged[i].insert(c);
                }
            }
        }
        let rollbacks: Vec<u64> = self.replay.round_rollbacks.iter().copied().collect();
        for c in rollbacks {
            if !paged[0].contains(&c) {
                self.report.pages_lost += 1;
                let needle = format!("rolled back v{c} ");
                if all.iter().any(|m| {
                    m.attributes.get("event").map(String::as_str) == Some("retry")
                        && m.subject.contains(&needle)
                }) {
                    self.report.lost_as_retry += 1;
                }
                let seen: Vec<String> = all.iter().map(|m| m.subject.clone()).collect();
                self.report.example(format!(
                    "round {round}: rollback of v{c} never paged (unfiltered queue got {seen:?})"
                ));
            }
            if !paged[1].contains(&c) {
                self.report.pages_lost_filtered += 1;
            }
        }
    }
}

/// One write in a line: who, the alias after it, and the record's main fields.
fn describe(w: &AliasWrite) -> String {
    let record = Record::decode(&w.description);
    let routing: String = routed(&w.weights)
        .iter()
        .map(|(v, weight)| format!(" + v{v}@{}%", weight * 100.0))
        .collect();
    format!(
        "#{} {}: v{}{routing} (record: canary {:?}, rejected {:?}, paused {}, {:?}){}",
        w.seq,
        w.caller.as_deref().unwrap_or("?"),
        w.function_version,
        record.canary,
        record.rejected,
        record.paused,
        record.last.unwrap_or_default(),
        w.answer_fault
            .map_or(String::new(), |f| format!(" [answer: {}]", f.name()))
    )
}

/// The rolled-back version a message announces, if it is a rollback page of [`FUNCTION`].
fn rollback_page(m: &Delivered) -> Option<u64> {
    let attr = |name: &str| m.attributes.get(name).map(String::as_str);
    if attr("event") != Some("rolled_back") || attr("function") != Some(FUNCTION) {
        return None;
    }
    attr("canary_version")?.parse().ok()
}
