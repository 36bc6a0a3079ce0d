//! Writing one alias's decision (one conditional update, re-read and re-decided on a
//! conflict, never overwritten) and then sending what it owes on-call.

use super::pages::Owes;
use super::{Agent, CommandError, Outcome, CONFLICT_ATTEMPTS};
use crate::notify::{Context, ReleaseNote, Trigger};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier, PortError, Snapshot};
use crate::rollout::release::Call;
use crate::rollout::{decide_in, Action, AliasState, Override};

/// The alias in words, for "what changed" messages.
fn describe(s: &AliasState) -> String {
    let canary = s.canary.map_or("no canary".to_string(), |c| {
        format!("v{} at {}%", c.version, c.weight)
    });
    format!(
        "stable v{}, {canary}{}",
        s.stable,
        if s.record.paused { ", paused" } else { "" }
    )
}

/// Whether two reads differ in what a person acts on (not just the agent's bookkeeping).
fn same_substance(a: &AliasState, b: &AliasState) -> bool {
    a.stable == b.stable && a.canary == b.canary && a.record.paused == b.record.paused
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// Decides and writes one alias, then sends what it owes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply(
        &self,
        policy: &Policy,
        snap: Snapshot,
        ovr: Option<&Override>,
        call: &Call,
        now: i64,
        trigger: &Trigger,
        out: &mut Outcome,
    ) -> Result<(), CommandError> {
        if let Some(w) = self.write(policy, snap, ovr, call, now, out).await? {
            self.announce(policy, w, trigger, None, None, out).await;
        }
        Ok(())
    }

    /// Sends what a written decision owes: its own announcement in full (with the release's
    /// members when `release` is given), and re-sends of owed ones it claimed.
    pub(super) async fn announce(
        &self,
        policy: &Policy,
        w: Written,
        trigger: &Trigger,
        problem: Option<&str>,
        release: Option<&ReleaseNote>,
        out: &mut Outcome,
    ) {
        let ctx = Context {
            before: &w.before,
            action: &w.action,
            judgement: out.judgement.as_ref(),
            trigger,
            problem,
            release,
            // `rollback` clears any recheck: one in the written record is this rollback's own.
            recheck: w
                .next
                .record
                .recheck
                .filter(|_| matches!(w.action, Action::Rollback { .. })),
        };
        out.notified = self
            .send_owed(policy, w.next, w.revision, &ctx, &w.owes)
            .await;
    }

    /// Decides and writes one alias with one conditional update, re-reading and re-deciding
    /// on a conflict. `None` when nothing was written (nothing changes, or a dry run).
    pub(super) async fn write(
        &self,
        policy: &Policy,
        mut snap: Snapshot,
        ovr: Option<&Override>,
        call: &Call,
        now: i64,
        out: &mut Outcome,
    ) -> Result<Option<Written>, CommandError> {
        out.before = Some(snap.state.clone());
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let decision = decide_in(&snap.state, policy, out.judgement.as_ref(), ovr, call, now)?;
            out.problems.clone_from(&decision.problems);
            out.decision = Some(decision.clone());
            if self.dry_run {
                return Ok(None);
            }
            let (next, owes) = self.plan(policy, &snap.state, &decision, now, ovr.is_none());
            let Some(next) = next else {
                return Ok(None);
            };
            match self.aliases.write(policy, &next, &snap.revision).await {
                Ok(revision) => {
                    out.wrote = true;
                    return Ok(Some(Written {
                        before: snap.state,
                        next,
                        revision,
                        action: decision.action,
                        owes,
                    }));
                }
                Err(PortError::Conflict) if attempt < CONFLICT_ATTEMPTS => {
                    tracing::warn!(function = %policy.function, attempt, "alias changed under us; re-reading");
                    let fresh = self.read(policy, now).await?;
                    if ovr.is_some() && !same_substance(&fresh.state, &snap.state) {
                        return Err(CommandError::LostRace(format!(
                            "{}:{} changed while the command ran (was {}, now {}{}); nothing was written: check `canary status {}` and run the command again if it still applies",
                            policy.function,
                            policy.alias,
                            describe(&snap.state),
                            describe(&fresh.state),
                            fresh.state.record.last.as_deref().map_or(String::new(), |l| format!("; last decision: {l}")),
                            policy.function
                        )));
                    }
                    // The judgement is about the versions read first; drop it if they moved.
                    let versions = |a: &AliasState| (a.stable, a.canary.map(|c| c.version));
                    if versions(&fresh.state) != versions(&snap.state) {
                        out.judgement = None;
                    }
                    out.before = Some(fresh.state.clone());
                    snap = fresh;
                }
                Err(PortError::Conflict) if ovr.is_some() => {
                    return Err(CommandError::LostRace(format!(
                        "{}:{} kept changing while the command ran; nothing was written: run it again",
                        policy.function, policy.alias
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PortError::Conflict.into())
    }
}

/// A decision written to its alias, and what it owes on-call.
pub(super) struct Written {
    /// The alias as read before the decision.
    pub(super) before: AliasState,
    /// The alias as written.
    pub(super) next: AliasState,
    /// Its revision after the write.
    pub(super) revision: String,
    /// The decision's action.
    pub(super) action: Action,
    /// What it owes on-call.
    pub(super) owes: Owes,
}
