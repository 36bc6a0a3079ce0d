//! Paging about aliases this process cannot read or write ([`crate::outage`]): after each
//! policy's tick, the failure (or success) is recorded, and the page that falls due is sent.

use super::{until, Agent, Outcome};
use crate::notify;
use crate::outage::{Outage, Reach};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier};
use tokio::time::Instant;

/// What the tick could not do with an alias: `None` when it read it and, if it had anything to
/// write, wrote it.
pub(super) type Failure = Option<(Reach, String)>;

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// Records how reaching `policy`'s alias went this tick and sends the page that is due: on-call
    /// hears once when the alias has been out of reach for `unprotected_after`, and again when
    /// the agent writes it (or finds nothing to protect). A page SNS refuses is tried again on
    /// the next tick and fails this one (`out.notified`).
    pub(super) async fn watch_reach(
        &self,
        policy: &Policy,
        out: &mut Outcome,
        failure: Failure,
        now: i64,
        deadline: Option<Instant>,
    ) {
        if self.dry_run {
            return;
        }
        let key = format!("{}:{}", policy.function, policy.alias);
        let nothing_at_risk = out.before.as_ref().is_some_and(|b| b.canary.is_none());
        let (due, back): (Option<Outage>, bool) = {
            let mut outages = self
                .outages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &failure {
                Some((reach, error)) => (
                    outages.failed(
                        &key,
                        now,
                        *reach,
                        error,
                        out.before.as_ref(),
                        policy.unprotected_after_secs(),
                    ),
                    false,
                ),
                None if out.wrote || nothing_at_risk => (outages.recovered(&key), true),
                None => (None, false),
            }
        };
        let Some(outage) = due else { return };
        let message = notify::outage(policy, &outage, now, back);
        let sent = until(deadline, self.send(policy, &message))
            .await
            .unwrap_or_else(|| Err("did not finish before the tick's deadline".to_string()));
        match sent {
            Ok(()) => {
                let mut outages = self
                    .outages
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if back {
                    outages.cleared(&key);
                    tracing::info!(function = %policy.function, alias = %policy.alias, "paged: the agent writes the alias again");
                } else {
                    outages.paged(&key);
                    tracing::error!(function = %policy.function, alias = %policy.alias, since = outage.since, error = %outage.error, "paged: the agent cannot {} the alias", outage.reach.verb());
                }
            }
            Err(e) => {
                if !matches!(out.notified, Some(Err(_))) {
                    out.notified = Some(Err(e));
                }
            }
        }
    }
}
