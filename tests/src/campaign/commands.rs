//! The person's side of a campaign: which command they run in a faulted step, and how it ended.

use canary_agent::ports::PortError;
use canary_agent::rollout::Override;
use canary_agent::tick::{CommandError, Outcome};

use super::lab::AliasView;
use super::{Campaign, Guarded, Rng, FUNCTION};

/// A person's command, with the command line they typed.
#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) ovr: Override,
    pub(super) line: String,
}

impl Command {
    fn new(line: String, ovr: Override) -> Self {
        Self { ovr, line }
    }
}

/// A reason a person gives for a rollback: short, with a newline, or long.
fn reason(rng: &mut Rng) -> String {
    match rng.between(0, 5) {
        0 => "latency spike\nsee INC-1234".to_string(),
        1 => format!("rolling back: {}", "customers report failures ".repeat(5)),
        _ => "errors in the dashboard".to_string(),
    }
}

impl Campaign<'_> {
    /// A person's command, drawn: rollback (25%), rollback --to (20%), pause (15%), resume
    /// (10%), promote (10%), promote --full (5%), start --version (15%).
    pub(super) fn choose_command(&mut self, live: &AliasView, candidate: u64) -> Command {
        let f = FUNCTION;
        let roll = self.rng.unit();
        if roll < 0.25 {
            let why = reason(&mut self.rng);
            Command::new(
                format!("canary rollback {f} --reason {why:?}"),
                Override::Rollback {
                    to: None,
                    reason: Some(why),
                },
            )
        } else if roll < 0.45 {
            let to = self.rollback_target(live);
            Command::new(
                format!("canary rollback {f} --to {to}"),
                Override::Rollback {
                    to: Some(to),
                    reason: None,
                },
            )
        } else if roll < 0.60 {
            Command::new(format!("canary pause {f}"), Override::Pause)
        } else if roll < 0.70 {
            Command::new(format!("canary resume {f}"), Override::Resume)
        } else if roll < 0.80 {
            Command::new(format!("canary promote {f}"), Override::Promote)
        } else if roll < 0.85 {
            Command::new(format!("canary promote {f} --full"), Override::PromoteFull)
        } else {
            let version = self.start_version(candidate);
            Command::new(
                format!("canary start {f} --version {version}"),
                Override::Start {
                    version: Some(version),
                },
            )
        }
    }

    /// Where `rollback --to` points: the stable version while a canary runs (half the time),
    /// else a known-good version, one of the three below the stable one.
    fn rollback_target(&mut self, live: &AliasView) -> u64 {
        let stable = live.stable;
        if !live.routed().is_empty() && self.rng.chance(0.5) {
            stable
        } else {
            self.rng.between(
                stable.saturating_sub(3).max(1),
                stable.saturating_sub(1).max(1),
            )
        }
    }

    /// What `start --version` starts: mostly a recently rolled-back version (a person
    /// overriding the agent), else one of the last few deployed.
    fn start_version(&mut self, candidate: u64) -> u64 {
        let rolled: Vec<u64> = self
            .replay
            .ever_rolled_back
            .iter()
            .copied()
            .filter(|&x| x + 3 >= candidate)
            .collect();
        if !rolled.is_empty() && self.rng.chance(0.6) {
            rolled[self.rng.between(0, rolled.len() as u64 - 1) as usize]
        } else {
            self.rng
                .between(candidate.saturating_sub(3).max(1), candidate)
        }
    }

    /// Counts how a command ended (by kind), with an example of every failure, panic and hang.
    pub(super) fn command_result(
        &mut self,
        round: usize,
        command: &Command,
        result: Guarded<Result<Outcome, CommandError>>,
    ) {
        let key = match result {
            Guarded::Done(Ok(out)) => {
                if matches!(out.notified, Some(Err(_))) {
                    self.report.publish_failures += 1;
                }
                "ok"
            }
            Guarded::Done(Err(CommandError::Rejected(_))) => "does not apply",
            Guarded::Done(Err(CommandError::NoSuchVersion { .. })) => "no such version",
            Guarded::Done(Err(
                CommandError::Port(PortError::Conflict) | CommandError::LostRace(_),
            )) => "lost race",
            Guarded::Done(Err(CommandError::Port(e))) => {
                if e.to_string().contains("changed since it was read") {
                    "lost race"
                } else {
                    self.report
                        .example(format!("round {round}: `{}` failed: {e}", command.line));
                    "failed"
                }
            }
            Guarded::Panicked(why) => {
                self.report.panics += 1;
                self.report
                    .example(format!("round {round}: `{}` panicked: {why}", command.line));
                "panicked"
            }
            Guarded::Hung => {
                self.report.hangs += 1;
                self.report.example(format!(
                    "round {round}: `{}` did not finish within {:?}",
                    command.line, self.config.hang_after
                ));
                "hung"
            }
        };
        *self.report.commands.entry(key.to_string()).or_default() += 1;
    }
}
