//! What `canary status` shows and a person's commands: judged like a tick, applied at once.

use super::judging::{judge_series, window};
use super::{release, Agent, Outcome};
use crate::notify::Trigger;
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier, PortError};
use crate::rollout::release::Call;
use crate::rollout::{decide_in, Override, OverrideError};

/// Why a person's command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command does not apply to the alias's state.
    #[error(transparent)]
    Rejected(#[from] OverrideError),
    /// The version does not exist.
    #[error("{function} has no version {version}")]
    NoSuchVersion {
        /// Function name.
        function: String,
        /// The missing version.
        version: u64,
    },
    /// Someone (the agent or another person) changed the alias while the command ran; nothing
    /// was written. The text says what changed.
    #[error("{0}")]
    LostRace(String),
    /// AWS failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// Judges without deciding or writing: what `canary status` shows.
    pub async fn status(&self, policies: &[Policy], now: i64) -> Vec<Outcome> {
        let survey = self.survey(policies, now, None).await;
        let calls = release::calls(policies, &survey, now);
        policies
            .iter()
            .zip(survey)
            .zip(&calls)
            .map(|((policy, seen), call)| {
                let mut out = Outcome::new(policy);
                match seen.snap {
                    Err(e) => out.error = Some(e.to_string()),
                    Ok(snap) => {
                        out.decision = decide_in(
                            &snap.state,
                            policy,
                            seen.judgement.as_ref(),
                            None,
                            call,
                            now,
                        )
                        .ok();
                        let mut state = snap.state;
                        out.problems = state.record.sanitize(policy.steps.len(), now);
                        out.before = Some(state);
                        out.judgement = seen.judgement;
                        out.error = seen.metrics_error;
                    }
                }
                out
            })
            .collect()
    }

    /// Carries out a person's command at once and announces it.
    ///
    /// # Errors
    /// The command does not apply, the version does not exist, someone changed the alias while
    /// it ran ([`CommandError::LostRace`]: nothing written), or AWS failed.
    pub async fn command(
        &self,
        policy: &Policy,
        ovr: &Override,
        command_line: &str,
        now: i64,
    ) -> Result<Outcome, CommandError> {
        self.command_with(policy, ovr, command_line, &Call::alone(), now)
            .await
    }

    /// [`Agent::command`] with the policy's part in its release.
    pub(super) async fn command_with(
        &self,
        policy: &Policy,
        ovr: &Override,
        command_line: &str,
        call: &Call,
        now: i64,
    ) -> Result<Outcome, CommandError> {
        let target = match ovr {
            Override::Start { version: Some(v) } | Override::Rollback { to: Some(v), .. } => {
                Some(*v)
            }
            _ => None,
        };
        if let Some(version) = target {
            if !self.aliases.version_exists(policy, version).await? {
                return Err(CommandError::NoSuchVersion {
                    function: policy.function.clone(),
                    version,
                });
            }
        }
        let snap = self.read(policy, now).await?;
        // Fail before writing if the command does not apply.
        decide_in(&snap.state, policy, None, Some(ovr), call, now)?;
        let mut out = Outcome::new(policy);
        let trigger = Trigger::Manual {
            command: command_line.to_string(),
        };
        out.judgement = match window(policy, &snap, now) {
            Some(q) => self
                .metrics
                .fetch(&[q])
                .await
                .pop()
                .and_then(Result::ok)
                .map(|series| judge_series(policy, &snap.state, series, now)),
            None => None,
        };
        self.apply(policy, snap, Some(ovr), call, now, &trigger, &mut out)
            .await?;
        Ok(out)
    }
}
