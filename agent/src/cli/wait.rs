//! `canary wait`: blocks until the version a deploy put on the candidate alias reaches an outcome,
//! printing one line each time where its canary stands changes. For CI after `sam deploy`.

use super::{now, CliError};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, Notifier};
use crate::rollout::wait::{finished, standing, Finished};
use crate::rollout::Version;
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
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let waited = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
            return Err(CliError::TimedOut(format!(
                "{name}: no outcome after {}; last: {last}",
                human_duration(waited)
            )));
        }
        tokio::time::sleep(interval.min(left)).await;
    }
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
    let mut say = |line: &str| println!("{} {line}", clock(now()));
    match wait_for(agent, policy, version, timeout, interval, &mut say).await? {
        Finished::Promoted => Ok(()),
        _ => Err(CliError::Failed(format!(
            "{}:{} did not promote the deploy",
            policy.function, policy.alias
        ))),
    }
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
    fn lines_are_stamped_with_the_utc_time_of_day() {
        assert_eq!(clock(1_795_428_020), "10:00:20Z");
        assert_eq!(clock(86_399), "23:59:59Z");
        assert_eq!(
            ending(Finished::Superseded(8), 7),
            "v7 replaced by v8 before it finished"
        );
    }
}
