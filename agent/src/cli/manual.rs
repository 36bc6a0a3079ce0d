//! People's commands (start, promote, rollback, pause, resume) on one function or, with
//! `--release NAME`, on every member of a release.

use super::{aws_agent, find_policy, now, CliError, Command, Subject};
use crate::policy::{self, Policy};
use crate::rollout::Override;
use crate::tick::{members_of, CommandError, Outcome};
use std::path::{Path, PathBuf};

/// What a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// One function (or FUNCTION:ALIAS).
    Function(String),
    /// Every member of a release.
    Release(String),
}

/// A parsed manual command.
pub(super) struct Manual {
    target: Target,
    dir: PathBuf,
    ovr: Override,
    /// The command line, for on-call.
    line: String,
}

impl Subject {
    /// The one function or release named (clap already refuses both and neither; this says so
    /// again for a `Command` built by hand).
    pub(super) fn target(self) -> Result<Target, CliError> {
        match (self.function, self.release) {
            (Some(f), None) => Ok(Target::Function(f)),
            (None, Some(r)) => Ok(Target::Release(r)),
            _ => Err(CliError::Usage(
                "name a FUNCTION or --release NAME (one of them)".to_string(),
            )),
        }
    }
}

fn shown(t: &Target) -> String {
    match t {
        Target::Function(f) => f.clone(),
        Target::Release(r) => format!("--release {r}"),
    }
}

/// A manual command as its target, policy directory, override and command line.
pub(super) fn override_of(command: Command) -> Result<Manual, CliError> {
    let (subject, dir, ovr, extra) = match command {
        Command::Start {
            subject,
            version,
            policies,
        } => (
            subject,
            policies.dir,
            Override::Start { version },
            version.map_or(String::new(), |v| format!(" --version {v}")),
        ),
        Command::Promote {
            subject,
            full,
            policies,
        } => (
            subject,
            policies.dir,
            if full {
                Override::PromoteFull
            } else {
                Override::Promote
            },
            if full { " --full" } else { "" }.to_string(),
        ),
        Command::Rollback {
            subject,
            to,
            reason,
            policies,
        } => {
            let extra = format!(
                "{}{}",
                to.map_or(String::new(), |v| format!(" --to {v}")),
                reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" --reason {r:?}"))
            );
            let ovr = Override::Rollback { to, reason };
            (subject, policies.dir, ovr, extra)
        }
        Command::Pause { subject, policies } => {
            (subject, policies.dir, Override::Pause, String::new())
        }
        Command::Resume { subject, policies } => {
            (subject, policies.dir, Override::Resume, String::new())
        }
        _ => return Err(CliError::Usage("not a manual command".to_string())),
    };
    let verb = match ovr {
        Override::Start { .. } => "start",
        Override::Promote | Override::PromoteFull => "promote",
        Override::Rollback { .. } => "rollback",
        Override::Pause => "pause",
        Override::Resume => "resume",
    };
    let target = subject.target()?;
    let line = format!("canary {verb} {}{extra}", shown(&target));
    Ok(Manual {
        target,
        dir,
        ovr,
        line,
    })
}

/// The valid policies of release `name` in `dir`, or a usage error naming the releases there.
pub(super) fn release_policies(dir: &Path, name: &str) -> Result<Vec<Policy>, CliError> {
    let report = policy::load_dir(dir);
    let members: Vec<Policy> = members_of(&report.policies, name)
        .into_iter()
        .cloned()
        .collect();
    if members.is_empty() {
        let mut known: Vec<&str> = report
            .policies
            .iter()
            .filter_map(|p| p.release.as_deref())
            .collect();
        known.sort_unstable();
        known.dedup();
        return Err(CliError::Usage(format!(
            "no policy in {} names release {name}; releases there: {}",
            dir.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    if !report.problems.is_empty() {
        eprintln!(
            "warning: {} invalid policy file(s) in {}; a member among them is not part of the release (run `canary policy check`)",
            report.problems.len(),
            dir.display()
        );
    }
    Ok(members)
}

fn print(out: &Outcome) {
    say!("{}", out.line());
    if let Some(Err(e)) = &out.notified {
        eprintln!("warning: on-call was not told ({e}); the agent re-sends on its next tick");
    }
}

fn failed(line: &str, e: CommandError) -> CliError {
    match e {
        CommandError::Rejected(e) => CliError::Usage(e.to_string()),
        CommandError::NoSuchVersion { function, version } => {
            CliError::Usage(format!("{function} has no version {version}"))
        }
        CommandError::LostRace(what) => CliError::Usage(what),
        e => CliError::Failed(format!("failed to {line}: {e}")),
    }
}

/// Carries out a manual command and prints what it did.
pub(super) async fn run(conf: Option<&aws_config::SdkConfig>, m: Manual) -> Result<(), CliError> {
    match &m.target {
        Target::Release(name) => {
            let members = release_policies(&m.dir, name)?;
            let agent = aws_agent(conf).await?;
            let outs = agent
                .command_release(&members, &m.ovr, &m.line, now())
                .await
                .map_err(|e| failed(&m.line, e))?;
            outs.iter().for_each(print);
        }
        Target::Function(function) => {
            let policy = find_policy(&m.dir, function)?;
            let agent = aws_agent(conf).await?;
            let out = match policy.release.as_deref() {
                None => agent.command(&policy, &m.ovr, &m.line, now()).await,
                Some(name) => {
                    let members = release_policies(&m.dir, name)?;
                    let at = members
                        .iter()
                        .position(|p| p.function == policy.function && p.alias == policy.alias)
                        .unwrap_or(0);
                    let out = agent
                        .command_member(&members, at, &m.ovr, &m.line, now())
                        .await;
                    if matches!(m.ovr, Override::Rollback { .. }) && members.len() > 1 {
                        eprintln!(
                            "note: {function} is a member of release {name}: the agent rolls back its other members on its next tick (`canary rollback --release {name}` does it now)"
                        );
                    }
                    out
                }
            };
            print(&out.map_err(|e| failed(&m.line, e))?);
        }
    }
    Ok(())
}
