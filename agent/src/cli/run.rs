//! The agent loop (`canary run`) and the scheduled Lambda's tick.

use super::deployed::{policy_files, request_of, Request};
use super::{aws_agent, emf, now, report_problems, AwsAgent, CliError};
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
            say!(
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

/// Where the deployed agent reads its policy files when `CANARY_POLICIES_DIR` is not set: the
/// policies layer's files (agent/template.yaml).
pub const LAYER_POLICIES_DIR: &str = "/opt/policies";

/// The scheduled Lambda's agent: built once per execution environment, so the AWS clients'
/// connections and what the agent remembers between ticks (aliases it could not write, see
/// [`crate::outage`]) outlive one invocation.
pub struct LambdaTicker {
    agent: AwsAgent,
    dir: PathBuf,
}

impl LambdaTicker {
    /// The ticker the deployed function runs: clients from the environment, the stack's topic
    /// (`CANARY_TOPIC_ARN`), and the policy files of `CANARY_POLICIES_DIR` (default
    /// `LAYER_POLICIES_DIR`).
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
            .map_or_else(|| PathBuf::from(LAYER_POLICIES_DIR), PathBuf::from);
        Self::new(None, topic, dir).await
    }

    /// A ticker with its configuration given: the AWS configuration (default: the
    /// environment's), the topic that overrides the policies' (the stack's), and the policy
    /// directory.
    ///
    /// # Errors
    /// When the AWS clients cannot be built.
    pub async fn new(
        conf: Option<&aws_config::SdkConfig>,
        topic: Option<String>,
        dir: PathBuf,
    ) -> Result<Self, CliError> {
        let mut agent = aws_agent(conf).await?;
        agent.topic_override = topic;
        Ok(Self { agent, dir })
    }

    /// Answers one invocation: a tick within `budget`, or (for `{"canary": "policies"}`) the
    /// policy files this agent runs.
    ///
    /// # Errors
    /// As [`Self::tick`]; [`CliError::Usage`] for an event with an unknown `canary` request.
    pub async fn handle(
        &self,
        event: &serde_json::Value,
        budget: Duration,
    ) -> Result<serde_json::Value, CliError> {
        match request_of(event).map_err(CliError::Usage)? {
            Request::Policies => Ok(serde_json::json!(policy_files(&self.dir))),
            Request::Tick => self.tick(budget).await,
        }
    }

    /// One tick within `budget`. The invocation fails (so Lambda's `Errors` metric and an alarm
    /// on it see it) when any policy failed or a page could not be sent; the error carries the
    /// same summary a successful invocation returns. Each policy's outcome is also printed as
    /// an EMF line ([`emf::lines`]) for the agent's metrics.
    ///
    /// # Errors
    /// [`CliError::Failed`] with the summary when any policy failed or a policy file is invalid
    /// (or there is none).
    pub async fn tick(&self, budget: Duration) -> Result<serde_json::Value, CliError> {
        let report = policy::load_dir(&self.dir);
        report_problems(&report);
        let outs = self
            .agent
            .tick_within(&report.policies, now(), Some(budget))
            .await;
        let now_ms = crate::clock::now_millis();
        for line in emf::lines(&outs, now_ms) {
            say!("{line}");
        }
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
    dir: &Path,
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
    dir: &Path,
    budget: Duration,
) -> Result<serde_json::Value, CliError> {
    LambdaTicker::new(conf, topic, dir.to_path_buf())
        .await?
        .tick(budget)
        .await
}
