//! The agent loop (`canary run`) and the scheduled Lambda's tick.

use super::{aws_agent, embedded_policies, now, report_problems, AwsAgent, CliError};
use crate::policy;
use crate::ports::{Aliases, Metrics, Notifier};
use crate::tick::{Agent, Outcome, DEFAULT_TICK_BUDGET};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The agent loop (and `--once`).
pub(super) async fn run_loop<A, M, N>(
    agent: &Agent<A, M, N>,
    dir: &Path,
    once: bool,
    interval: Duration,
) -> Result<(), CliError>
where
    A: Aliases + Sync,
    M: Metrics + Sync,
    N: Notifier + Sync,
{
    loop {
        // Policies are re-read every tick: an edit takes effect without a restart.
        let report = policy::load_dir(dir);
        report_problems(&report);
        let outs = agent
            .tick_within(&report.policies, now(), Some(DEFAULT_TICK_BUDGET))
            .await;
        for o in &outs {
            println!(
                "{}{}",
                if agent.dry_run { "[dry-run] " } else { "" },
                o.line()
            );
        }
        if once {
            let failed = outs.iter().filter(|o| o.failed()).count();
            if !report.problems.is_empty() {
                return Err(CliError::Usage(format!(
                    "{} policy problem(s) in {}; the {} valid policies were processed",
                    report.problems.len(),
                    dir.display(),
                    report.policies.len()
                )));
            }
            if failed > 0 {
                return Err(CliError::Failed(format!(
                    "{failed} of {} policies failed this tick (an error, or a page SNS did not accept; owed pages are re-sent next tick)",
                    outs.len()
                )));
            }
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

/// The scheduled Lambda's agent: built once per execution environment, so the AWS clients'
/// connections and what the agent remembers between ticks (aliases it could not write, see
/// [`crate::outage`]) outlive one invocation.
pub struct LambdaTicker {
    agent: AwsAgent,
    dir: Option<PathBuf>,
}

impl LambdaTicker {
    /// The ticker the deployed function runs: clients from the environment, the stack's topic
    /// (`CANARY_TOPIC_ARN`), and the compiled-in policies unless `CANARY_POLICIES_DIR` names a
    /// directory.
    ///
    /// # Errors
    /// When the AWS clients cannot be built.
    pub async fn from_env() -> Result<Self, CliError> {
        let topic = std::env::var("CANARY_TOPIC_ARN")
            .ok()
            .filter(|s| !s.is_empty());
        let dir = std::env::var("CANARY_POLICIES_DIR")
            .ok()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Self::new(None, topic, dir).await
    }

    /// A ticker with its configuration given: the AWS configuration (default: the
    /// environment's), the topic that overrides the policies' (the stack's), and a policy
    /// directory instead of the compiled-in policies.
    ///
    /// # Errors
    /// When the AWS clients cannot be built.
    pub async fn new(
        conf: Option<&aws_config::SdkConfig>,
        topic: Option<String>,
        dir: Option<PathBuf>,
    ) -> Result<Self, CliError> {
        let mut agent = aws_agent(conf).await?;
        agent.topic_override = topic;
        Ok(Self { agent, dir })
    }

    /// One tick within `budget`. The invocation fails (so Lambda's `Errors` metric and an alarm
    /// on it see it) when any policy failed or a page could not be sent; the error carries the
    /// same summary a successful invocation returns.
    ///
    /// # Errors
    /// [`CliError::Failed`] with the summary when any policy failed or a policy file is invalid.
    pub async fn tick(&self, budget: Duration) -> Result<serde_json::Value, CliError> {
        let report = match &self.dir {
            Some(dir) => policy::load_dir(dir),
            None => embedded_policies(),
        };
        report_problems(&report);
        let outs = self
            .agent
            .tick_within(&report.policies, now(), Some(budget))
            .await;
        let failed = outs.iter().filter(|o| o.failed()).count();
        let summary = serde_json::json!({
            "policies": report.policies.len(),
            "invalid": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "decisions": outs.iter().map(Outcome::line).collect::<Vec<_>>(),
            "errors": failed,
        });
        if failed > 0 || !report.problems.is_empty() {
            return Err(CliError::Failed(format!(
                "{failed} of {} policies failed and {} policy files are invalid: {summary}",
                outs.len(),
                report.problems.len()
            )));
        }
        Ok(summary)
    }
}

/// The time a scheduled tick may take: what the invocation has left (Lambda's deadline, epoch
/// milliseconds) minus a margin to report, at most [`DEFAULT_TICK_BUDGET`], at least 1 s.
#[must_use]
pub fn tick_budget(deadline_ms: u64, now_ms: u64) -> Duration {
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    left.saturating_sub(Duration::from_secs(5))
        .clamp(Duration::from_secs(1), DEFAULT_TICK_BUDGET)
}

/// One tick of a fresh [`LambdaTicker`] with its configuration given (see
/// [`LambdaTicker::new`]); it remembers nothing from earlier ticks.
///
/// # Errors
/// As [`LambdaTicker::tick`], or when the AWS clients cannot be built.
pub async fn lambda_tick_with(
    conf: Option<&aws_config::SdkConfig>,
    topic: Option<String>,
    dir: Option<&Path>,
) -> Result<serde_json::Value, CliError> {
    lambda_tick_within(conf, topic, dir, DEFAULT_TICK_BUDGET).await
}

/// [`lambda_tick_with`] within a time budget.
///
/// # Errors
/// As [`lambda_tick_with`].
pub async fn lambda_tick_within(
    conf: Option<&aws_config::SdkConfig>,
    topic: Option<String>,
    dir: Option<&Path>,
    budget: Duration,
) -> Result<serde_json::Value, CliError> {
    LambdaTicker::new(conf, topic, dir.map(Path::to_path_buf))
        .await?
        .tick(budget)
        .await
}
