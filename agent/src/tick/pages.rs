//! Sending what the alias record owes on-call: this tick's announcements in full, and re-sends
//! of owed ones no other process is sending (claimed first with a conditional write), then
//! clearing what SNS accepted.

use super::Agent;
use crate::notify::{announcement, notice, Context};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notification, Notifier, PortError};
use crate::record::{Owed, LEASE_SECS};
use crate::rollout::{AliasState, Decision};
use std::collections::HashSet;

/// How many times clearing sent announcements is retried after a conflicting write.
const CLEAR_ATTEMPTS: usize = 3;

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    pub(super) fn topic(&self, policy: &Policy) -> Option<String> {
        self.topic_override
            .clone()
            .or_else(|| policy.notify.as_ref().map(|n| n.topic_arn.clone()))
    }

    /// What to write: the decision's state, with every owed announcement no process is sending
    /// claimed for this tick. Returns the state (if anything changes), the ids this decision
    /// added, and the ids claimed for a re-send.
    pub(super) fn plan(
        &self,
        policy: &Policy,
        read: &AliasState,
        decision: &Decision,
        now: i64,
    ) -> (Option<AliasState>, HashSet<String>, HashSet<String>) {
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
            .filter(|o| o.due(now))
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
        (next, new_ids, claimed)
    }

    /// Publishes this tick's announcements (`new_ids` in full, `claimed` as re-sends), then
    /// removes the published ones from the record and releases the failed ones for the next
    /// tick, with a conditional write. A failure to clear only means a later duplicate (same id).
    pub(super) async fn send_owed(
        &self,
        policy: &Policy,
        written: AliasState,
        revision: String,
        ctx: &Context<'_>,
        new_ids: &HashSet<String>,
        claimed: &HashSet<String>,
    ) -> Option<Result<(), String>> {
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
        self.settle(policy, written, revision, &sent, &failed).await;
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
