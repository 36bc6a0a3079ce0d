//! A person's commands (start, promote, rollback, pause, resume) as decisions on the alias.

use super::{baking, end_bake, forward, promote, rollback, start, AliasState, Decision, Version};
use crate::policy::Policy;
use crate::rollout::Action;
use crate::text::one_line;

/// The longest `--reason` kept (characters); the rest is cut.
pub const REASON_LIMIT: usize = 200;

/// A person's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// Begin a canary of `version` (default: the candidate's version).
    Start {
        /// The version to canary.
        version: Option<Version>,
    },
    /// Move to the next step now (during a bake: end the bake).
    Promote,
    /// Go straight to 100% (during a bake with no newer candidate: end the bake).
    PromoteFull,
    /// Point the alias back at the stable version (during a bake: at the version before it),
    /// or at `to`.
    Rollback {
        /// Target version (default: the stable version).
        to: Option<Version>,
        /// Why, in the person's words.
        reason: Option<String>,
    },
    /// Freeze forward moves.
    Pause,
    /// Unfreeze forward moves.
    Resume,
}

/// Why a person's command cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// There is no canary to act on.
    #[error("no canary in progress on {0}")]
    NoCanary(String),
    /// There is no version to start.
    #[error("nothing to start: {0}")]
    NothingToStart(String),
    /// The alias is already where the command would put it.
    #[error("nothing to roll back: {0}")]
    NothingToRollBack(String),
}

pub(super) fn manual(
    state: &AliasState,
    policy: &Policy,
    ovr: &Override,
    now: i64,
) -> Result<Decision, OverrideError> {
    let name = format!("{}:{}", policy.function, policy.alias);
    Ok(match ovr {
        Override::Start { version } => {
            let v = version.or(state.candidate).ok_or_else(|| {
                OverrideError::NothingToStart(format!(
                    "no {} alias; pass --version",
                    policy.candidate_alias
                ))
            })?;
            if v == state.stable {
                return Err(OverrideError::NothingToStart(format!(
                    "v{v} is already the stable version of {name}"
                )));
            }
            // A person may start a rolled-back version; the record still remembers the newest
            // rolled-back version, so the agent will not start older candidates on its own.
            let mut s = state.clone();
            s.record.paused = false;
            start(&s, policy, v, now)
        }
        Override::Promote | Override::PromoteFull => {
            let full = *ovr == Override::PromoteFull;
            let newer = state.candidate.filter(|&v| v != state.stable);
            match (state.canary, baking(state)) {
                (Some(c), _) => forward(state, policy, c.version, full, now),
                (None, Some(b)) if !(full && newer.is_some()) => {
                    end_bake(state, b.version, "ended by hand".to_string())
                }
                (None, _) => match newer {
                    Some(v) if full => promote(state, policy, v, now),
                    _ => return Err(OverrideError::NoCanary(name)),
                },
            }
        }
        Override::Rollback { to, reason } => {
            let target = to
                .or(baking(state).map(|b| b.previous))
                .unwrap_or(state.stable);
            if state.canary.is_none() && target == state.stable {
                return Err(OverrideError::NothingToRollBack(format!(
                    "{name} is on v{target} with no canary"
                )));
            }
            let rejected = state
                .canary
                .map(|c| c.version)
                .or((target != state.stable).then_some(state.stable))
                .filter(|&r| r != target);
            let why = reason
                .as_deref()
                .map(|r| one_line(r, REASON_LIMIT))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "manual rollback".to_string());
            rollback(state, target, rejected, why)
        }
        Override::Pause => {
            let mut next = state.clone();
            next.record.paused = true;
            next.record.last = Some("paused by hand".to_string());
            Decision::new(Action::Pause, Some(next))
        }
        Override::Resume => {
            let mut next = state.clone();
            next.record.paused = false;
            next.record.last = Some("resumed by hand".to_string());
            Decision::new(Action::Resume, Some(next))
        }
    })
}
