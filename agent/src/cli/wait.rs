//! `canary wait`: blocks until the version a deploy put on the candidate alias reaches an outcome,
//! printing one line each time where its canary stands changes. For CI after `sam deploy`.

use super::{now, CliError};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier};
use crate::rollout::wait::{finished, standing, Finished};
use crate::rollout::{judged, Version};
use crate::text::{clock, human_duration};
use crate::tick::Agent;
use std::time::Duration;
use tokio::time::Instant;

/// Looks at the alias every `interval` until `version` (default: the candidate alias's version
/// at the first look) is promoted, rolled back or superseded, or `timeout` passes. Every change
/// of where it stands goes to `say`, once. Reading errors are reported (once each) and retried
/// until the timeout: a CI job outlives a throttled call.
///
/// # Errors
/// [`CliError::TimedOut`] when `timeout` passes first; [`CliError::Usage`] when there is no
/// version to wait for.
pub async fn wait_for<A, M, N>(
    agent: &Agent<A, M, N>,
    policy: &Policy,
    version: Option<Version>,
    timeout: Duration,
    interval: Duration,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Finished, CliError>
where
    A: Aliases + Sync,
    M: Metrics + Sync,
    N: Notifier + Sync,
{
    let name = format!("{}:{}", policy.function, policy.alias);
    let deadline = Instant::now() + timeout;
    let mut target = version;
    let mut last = String::new();
    loop {
        let out = agent
            .status(std::slice::from_ref(policy), now())
            .await
            .pop();
        let line = match out.as_ref().and_then(|o| o.before.as_ref()) {
            None => {
                let error = out
                    .and_then(|o| o.error)
                    .unwrap_or_else(|| "no answer".to_string());
                format!("cannot read {name} yet: {error}")
            }
            Some(state) => {
                let Some(v) = target.or(state.candidate) else {
                    return Err(CliError::Usage(format!(
                        "{name}: the {} alias points at no version; deploy first or pass --version",
                        policy.candidate_alias
                    )));
                };
                target = Some(v);
                if let Some(done) = finished(state, v) {
                    say(&format!("{name}: {}", ending(done, v)));
                    return Ok(done);
                }
                let judgement = out.as_ref().and_then(|o| o.judgement.as_ref());
                format!("{name}: {}", standing(state, v, judgement))
            }
        };
        if line != last {
            say(&line);
            last = line;
        }
        pause(
            deadline,
            timeout,
            interval,
            &name,
            &format!("; last: {last}"),
        )
        .await?;
    }
}

/// Sleeps until the next look, or fails with [`CliError::TimedOut`] ("`who`: no outcome after
/// 30m`then`") once the deadline has passed.
async fn pause(
    deadline: Instant,
    timeout: Duration,
    interval: Duration,
    who: &str,
    then: &str,
) -> Result<(), CliError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        let waited = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        return Err(CliError::TimedOut(format!(
            "{who}: no outcome after {}{then}",
            human_duration(waited)
        )));
    }
    tokio::time::sleep(interval.min(left)).await;
    Ok(())
}

/// `canary wait` on the terminal: each line stamped with the time of day, and the outcome as an
/// exit code (0 promoted; 1 rolled back or replaced; 3 timeout).
///
/// # Errors
/// As [`wait_for`], and [`CliError::Failed`] when the version was not promoted.
pub(super) async fn run<A, M, N>(
    agent: &Agent<A, M, N>,
    policy: &Policy,
    version: Option<Version>,
    timeout: Duration,
    interval: Duration,
) -> Result<(), CliError>
where
    A: Aliases + Sync,
    M: Metrics + Sync,
    N: Notifier + Sync,
{
    let done = wait_for(agent, policy, version, timeout, interval, &mut stamped).await?;
    promoted(done, &format!("{}:{}", policy.function, policy.alias))
}

/// Prints a line stamped with the UTC time of day.
fn stamped(line: &str) {
    say!("{} {line}", clock(now()));
}

/// The exit of a wait on the terminal: ok when promoted, [`CliError::Failed`] (exit 1) else.
fn promoted(done: Finished, who: &str) -> Result<(), CliError> {
    match done {
        Finished::Promoted => Ok(()),
        _ => Err(CliError::Failed(format!(
            "{who} did not promote the deploy"
        ))),
    }
}

/// [`wait_for`] for every member of a release: the versions it waits for are, at the first
/// look, each member's canary or bake under way, or its new candidate (members with neither are
/// not part of the deploy). It ends when every one has an outcome: promoted when all are
/// (and baked), rolled back when any is.
///
/// # Errors
/// As [`wait_for`]; [`CliError::Usage`] when no member has anything to wait for.
pub async fn wait_release_for<A, M, N>(
    agent: &Agent<A, M, N>,
    name: &str,
    members: &[Policy],
    timeout: Duration,
    interval: Duration,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Finished, CliError>
where
    A: Aliases + Sync,
    M: Metrics + Sync,
    N: Notifier + Sync,
{
    let deadline = Instant::now() + timeout;
    let mut targets: Option<Vec<Option<Version>>> = None;
    let mut last = vec![String::new(); members.len()];
    loop {
        let outs = agent.status(members, now()).await;
        if targets.is_none() && outs.iter().all(|o| o.before.is_some()) {
            let t: Vec<Option<Version>> = outs
                .iter()
                .filter_map(|o| o.before.as_ref())
                .map(|s| judged(s).or(s.candidate.filter(|&c| c != s.stable)))
                .collect();
            let list: Vec<String> = members
                .iter()
                .zip(&t)
                .filter_map(|(p, v)| v.map(|v| format!("{} v{v}", p.function)))
                .collect();
            if list.is_empty() {
                return Err(CliError::Usage(format!(
                    "release {name}: no member has a new candidate or a canary under way; deploy first"
                )));
            }
            say(&format!("release {name}: waiting for {}", list.join(", ")));
            targets = Some(t);
        }
        let mut results: Vec<Option<Finished>> = vec![None; members.len()];
        for (i, (p, o)) in members.iter().zip(&outs).enumerate() {
            let who = format!("{}:{}", p.function, p.alias);
            let wanted = targets.as_ref().and_then(|t| t[i]);
            let line = match (&o.before, wanted) {
                (None, _) => format!(
                    "cannot read {who} yet: {}",
                    o.error.as_deref().unwrap_or("no answer")
                ),
                (Some(state), Some(v)) => match finished(state, v) {
                    Some(done) => {
                        results[i] = Some(done);
                        format!("{who}: {}", ending(done, v))
                    }
                    None => format!("{who}: {}", standing(state, v, o.judgement.as_ref())),
                },
                (Some(_), None) => continue,
            };
            if line != last[i] {
                say(&line);
                last[i] = line;
            }
        }
        if let Some(outcome) = targets.as_ref().and_then(|t| release_outcome(t, &results)) {
            say(&format!(
                "release {name}: {}",
                match outcome {
                    Finished::Promoted => "promoted and baked, every member",
                    Finished::RolledBack => "rolled back",
                    Finished::Superseded(_) => "replaced by a newer deploy before it finished",
                }
            ));
            return Ok(outcome);
        }
        pause(deadline, timeout, interval, &format!("release {name}"), "").await?;
    }
}

/// The release's outcome once every version waited for has one: promoted when all are, rolled
/// back when any is, else superseded.
fn release_outcome(targets: &[Option<Version>], results: &[Option<Finished>]) -> Option<Finished> {
    let done: Vec<Finished> = targets
        .iter()
        .zip(results)
        .filter(|(v, _)| v.is_some())
        .filter_map(|(_, r)| *r)
        .collect();
    if done.len() < targets.iter().flatten().count() {
        return None;
    }
    Some(if done.iter().all(|d| *d == Finished::Promoted) {
        Finished::Promoted
    } else if done.contains(&Finished::RolledBack) {
        Finished::RolledBack
    } else {
        done.into_iter()
            .find(|d| *d != Finished::Promoted)
            .unwrap_or(Finished::RolledBack)
    })
}

/// `canary wait --release NAME` on the terminal, as [`run`].
///
/// # Errors
/// As [`wait_release_for`], and [`CliError::Failed`] when the release was not promoted.
pub(super) async fn run_release<A, M, N>(
    agent: &Agent<A, M, N>,
    name: &str,
    members: &[Policy],
    timeout: Duration,
    interval: Duration,
) -> Result<(), CliError>
where
    A: Aliases + Sync,
    M: Metrics + Sync,
    N: Notifier + Sync,
{
    let done = wait_release_for(agent, name, members, timeout, interval, &mut stamped).await?;
    promoted(done, &format!("release {name}"))
}

/// The last line of a wait.
fn ending(done: Finished, v: Version) -> String {
    match done {
        Finished::Promoted => {
            format!("v{v} promoted: it serves all traffic (and its bake, if any, is over)")
        }
        Finished::RolledBack => format!("v{v} rolled back"),
        Finished::Superseded(w) => format!("v{v} replaced by v{w} before it finished"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_promoted_when_every_member_is_and_rolled_back_when_any_is() {
        use Finished::{Promoted, RolledBack, Superseded};
        let t = [Some(5), None, Some(7)];
        assert_eq!(release_outcome(&t, &[Some(Promoted), None, None]), None);
        assert_eq!(
            release_outcome(&t, &[Some(Promoted), None, Some(Promoted)]),
            Some(Promoted)
        );
        assert_eq!(
            release_outcome(&t, &[Some(RolledBack), None, Some(Promoted)]),
            Some(RolledBack)
        );
        assert_eq!(
            release_outcome(&t, &[Some(Superseded(6)), None, Some(RolledBack)]),
            Some(RolledBack)
        );
        assert_eq!(
            release_outcome(&t, &[Some(Superseded(6)), None, Some(Promoted)]),
            Some(Superseded(6))
        );
    }

    #[test]
    fn lines_are_stamped_with_the_utc_time_of_day() {
        assert_eq!(clock(1_795_428_020), "10:00:20Z");
        assert_eq!(clock(86_399), "23:59:59Z");
        assert_eq!(
            ending(Finished::Superseded(8), 7),
            "v7 replaced by v8 before it finished"
        );
    }
}
