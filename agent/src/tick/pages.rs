//! Sending what the alias record owes on-call: this tick's announcements in full, and re-sends
//! of owed ones no other process is sending (claimed first with a conditional write), then
//! clearing what SNS accepted: with a second write, or, when the notifier keeps a ledger
//! ([`Notifier::remembers`]), by recording it there and leaving it in the record until a write
//! the agent makes anyway drops it.

use super::Agent;
use crate::notify::{announcement, notice, Context};
use crate::policy::Policy;
use crate::ports::{
    Aliases, Metrics, Notification, Notifier, PortError, Snapshot, LEDGER_RETENTION_SECS,
};
use crate::record::{Owed, Record, LEASE_SECS};
use crate::rollout::{AliasState, Decision};
use std::collections::{HashMap, HashSet};

/// How many times clearing sent announcements is retried after a conflicting write.
const CLEAR_ATTEMPTS: usize = 3;

/// At most this many published announcements are remembered in memory; past it the oldest half
/// is forgotten (and asked of the ledger again if still found in a record).
const PUBLISHED_LIMIT: usize = 10_000;

/// What a written decision owes on-call.
pub(super) struct Owes {
    /// Announcements the decision added.
    pub(super) new_ids: HashSet<String>,
    /// Owed announcements claimed for a re-send.
    pub(super) claimed: HashSet<String>,
    /// When the decision was made (epoch seconds).
    pub(super) now: i64,
}

/// Announcements this process knows were published (it sent and recorded them, or the ledger
/// said so), so the ledger is asked about each at most once.
#[derive(Debug, Default)]
pub struct Published {
    /// Id → when it happened.
    ids: HashMap<String, i64>,
}

impl Published {
    fn add(&mut self, ids: impl IntoIterator<Item = (String, i64)>) {
        self.ids.extend(ids);
        if self.ids.len() > PUBLISHED_LIMIT {
            let mut ats: Vec<i64> = self.ids.values().copied().collect();
            let (_, &mut median, _) = ats.select_nth_unstable(PUBLISHED_LIMIT / 2);
            self.ids.retain(|_, at| *at > median);
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// Reads `policy`'s alias without the owed announcements known to be published: with a
    /// ledger, a sent announcement stays in the alias until a write the agent makes anyway, and
    /// is read here as sent.
    pub(super) async fn read(&self, policy: &Policy, now: i64) -> Result<Snapshot, PortError> {
        let mut snap = self.aliases.read(policy).await?;
        if self.notifier.remembers() {
            self.forget_published(policy, &mut snap.state.record, now)
                .await;
        }
        Ok(snap)
    }

    /// Takes the published announcements out of `record.owed`: the ones this process knows of,
    /// ones older than the ledger's retention, and due ones the ledger holds. When the ledger
    /// cannot be asked, the due ones are not re-sent this tick (a ledger outage must not page
    /// on-call again for everything it was already told).
    async fn forget_published(&self, policy: &Policy, record: &mut Record, now: i64) {
        let id = |o: &Owed| o.id(&policy.function, &policy.alias);
        let oldest = now.saturating_sub(LEDGER_RETENTION_SECS);
        let ask: Vec<String> = {
            let known = self.published();
            // Older than the ledger's memory: sent long ago (an idle alias keeps its last page
            // until its next deploy), or its sender failed and nobody with the ledger re-sent it
            // in a month; either way not one to page about now.
            record
                .owed
                .retain(|o| !known.contains(&id(o)) && o.at >= oldest);
            record.owed.iter().filter(|o| o.due(now)).map(id).collect()
        };
        if ask.is_empty() {
            return;
        }
        match self.notifier.published(&ask).await {
            Ok(found) => {
                let ats = record
                    .owed
                    .iter()
                    .filter(|o| found.contains(&id(o)))
                    .map(|o| (id(o), o.at));
                self.published().add(ats);
                record.owed.retain(|o| !found.contains(&id(o)));
            }
            Err(e) => {
                tracing::warn!(function = %policy.function, error = %e, "could not ask the ledger which announcements were sent; they are not re-sent this tick");
                for o in &mut record.owed {
                    if ask.contains(&id(o)) {
                        o.lease = now.saturating_add(1);
                    }
                }
            }
        }
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn topic(&self, policy: &Policy) -> Option<String> {
        self.topic_override
            .clone()
            .or_else(|| policy.notify.as_ref().map(|n| n.topic_arn.clone()))
    }

    /// What to write: the decision's state, with every owed announcement no process is sending
    /// claimed for this tick when `resend` (an agent's tick; a person's command sends only its
    /// own, since its process may not have the agent's ledger). Returns the state (if anything
    /// changes) and what it owes.
    pub(super) fn plan(
        &self,
        policy: &Policy,
        read: &AliasState,
        decision: &Decision,
        now: i64,
        resend: bool,
    ) -> (Option<AliasState>, Owes) {
        let id = |o: &Owed| o.id(&policy.function, &policy.alias);
        let old: HashSet<String> = read.record.owed.iter().map(id).collect();
        let mut next = decision.next.clone();
        let base = next.as_ref().unwrap_or(read);
        let new_ids: HashSet<String> = base
            .record
            .owed
            .iter()
            .map(id)
            .filter(|i| !old.contains(i))
            .collect();
        let claimed: HashSet<String> = base
            .record
            .owed
            .iter()
            .filter(|o| resend && o.due(now))
            .map(id)
            .filter(|i| !new_ids.contains(i))
            .collect();
        if !claimed.is_empty() {
            let state = next.get_or_insert_with(|| read.clone());
            for o in &mut state.record.owed {
                if claimed.contains(&id(o)) {
                    o.lease = now.saturating_add(LEASE_SECS);
                }
            }
        }
        (
            next,
            Owes {
                new_ids,
                claimed,
                now,
            },
        )
    }

    /// Publishes this tick's announcements (new ones in full, claimed ones as re-sends), then
    /// records the published ones in the ledger (if the notifier keeps one) or removes them from
    /// the record, and releases the failed ones for the next tick, with a conditional write only
    /// when the record must change. A failure to clear only means a later duplicate (same id).
    pub(super) async fn send_owed(
        &self,
        policy: &Policy,
        written: AliasState,
        revision: String,
        ctx: &Context<'_>,
        owes: &Owes,
    ) -> Option<Result<(), String>> {
        let Owes {
            new_ids,
            claimed,
            now,
        } = owes;
        let now = *now;
        let id = |o: &Owed| o.id(&policy.function, &policy.alias);
        let mine: Vec<Owed> = written
            .record
            .owed
            .iter()
            .filter(|o| new_ids.contains(&id(o)) || claimed.contains(&id(o)))
            .copied()
            .collect();
        if mine.is_empty() {
            return None;
        }
        let mut sent = HashSet::new();
        let mut failed = HashSet::new();
        let mut first_error = None;
        for o in &mine {
            let message = if claimed.contains(&id(o)) {
                notice(policy, o, written.record.last.as_deref(), true)
            } else if Some(o.event) == ctx.action.event() {
                announcement(policy, o, ctx)
            } else {
                notice(policy, o, written.record.last.as_deref(), false)
            };
            match self.send(policy, &message).await {
                Ok(()) => {
                    sent.insert(id(o));
                }
                Err(e) => {
                    failed.insert(id(o));
                    first_error.get_or_insert(e);
                }
            }
        }
        let cleared = if self.notifier.remembers() && !sent.is_empty() {
            let ids: Vec<String> = sent.iter().cloned().collect();
            match self.notifier.remember(&ids, now).await {
                Ok(()) => {
                    let ats = mine.iter().map(|o| (id(o), o.at));
                    self.published().add(ats.filter(|(i, _)| sent.contains(i)));
                    // Left in the record: the next write drops them, or a read finds them sent.
                    HashSet::new()
                }
                Err(e) => {
                    tracing::warn!(function = %policy.function, error = %e, "could not record sent announcements in the ledger; clearing them from the alias instead");
                    sent
                }
            }
        } else {
            sent
        };
        self.settle(policy, written, revision, &cleared, &failed)
            .await;
        Some(first_error.map_or(Ok(()), Err))
    }

    /// Removes `sent` from the record's owed list and makes `failed` due again, re-reading on a
    /// conflict (the entries are found by id in whatever the record holds now).
    async fn settle(
        &self,
        policy: &Policy,
        mut state: AliasState,
        mut revision: String,
        sent: &HashSet<String>,
        failed: &HashSet<String>,
    ) {
        let id = |o: &Owed| o.id(&policy.function, &policy.alias);
        for _ in 0..CLEAR_ATTEMPTS {
            let before = state.record.owed.len();
            state.record.owed.retain(|o| !sent.contains(&id(o)));
            let mut changed = state.record.owed.len() != before;
            for o in &mut state.record.owed {
                if failed.contains(&id(o)) && o.lease != 0 {
                    o.lease = 0;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
            match self.aliases.write(policy, &state, &revision).await {
                Ok(_) => return,
                Err(PortError::Conflict) => match self.aliases.read(policy).await {
                    Ok(fresh) => {
                        state = fresh.state;
                        revision = fresh.revision;
                    }
                    Err(e) => {
                        tracing::warn!(function = %policy.function, error = %e, "could not clear sent announcements; a later tick may send them again (same id)");
                        return;
                    }
                },
                Err(e) => {
                    tracing::warn!(function = %policy.function, error = %e, "could not clear sent announcements; a later tick may send them again (same id)");
                    return;
                }
            }
        }
    }

    pub(super) async fn send(&self, policy: &Policy, message: &Notification) -> Result<(), String> {
        let Some(topic) = self.topic(policy) else {
            return Ok(());
        };
        let r = self
            .notifier
            .publish(&topic, message)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &r {
            tracing::error!(function = %policy.function, topic = %topic, error = %e, subject = %message.subject, "publish failed; will re-send next tick");
        }
        r
    }
}
