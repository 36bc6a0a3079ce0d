//! What one tick or command did to one policy: the outcome, its line and its log entry.

use crate::judge::Judgement;
use crate::policy::Policy;
use crate::rollout::{Action, AliasState, Decision};

/// What happened to one policy in a tick or command.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Function name.
    pub function: String,
    /// Alias name.
    pub alias: String,
    /// The alias as read (before any write).
    pub before: Option<AliasState>,
    /// The judge's view of the running canary, if there was one and metrics answered.
    pub judgement: Option<Judgement>,
    /// The decision (applied unless `dry_run` or `error`).
    pub decision: Option<Decision>,
    /// Whether the owed announcements were published: `None` if there was nothing to send,
    /// else the first failure (the announcement stays owed and is re-sent next tick).
    pub notified: Option<Result<(), String>>,
    /// What went wrong, if anything did.
    pub error: Option<String>,
    /// What was wrong with the alias record and was repaired.
    pub problems: Vec<String>,
    /// Whether the decision was written to the alias.
    pub wrote: bool,
    /// Not read this tick: idle, waiting for its turn ([`crate::cli::reads_per_tick`]).
    pub skipped: bool,
}

impl Outcome {
    pub(crate) fn new(policy: &Policy) -> Self {
        Self {
            function: policy.function.clone(),
            alias: policy.alias.clone(),
            before: None,
            judgement: None,
            decision: None,
            notified: None,
            error: None,
            problems: Vec::new(),
            wrote: false,
            skipped: false,
        }
    }

    /// Whether this policy failed in a way on-call or the scheduler should hear about: an
    /// error, or an announcement that could not be published.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.error.is_some() || matches!(self.notified, Some(Err(_)))
    }

    /// One line for logs and the terminal.
    #[must_use]
    pub fn line(&self) -> String {
        let what = match (&self.error, &self.decision) {
            (Some(e), Some(d)) => format!("{} (error: {e})", d.action),
            (Some(e), None) => format!("error: {e}"),
            (None, Some(d)) => d.action.to_string(),
            (None, None) if self.skipped => {
                "idle, not read this tick (idle aliases are read in turn, within the agent's Lambda request budget)".to_string()
            }
            (None, None) => "nothing decided".to_string(),
        };
        let numbers = self
            .judgement
            .as_ref()
            .map_or(String::new(), |j| format!(" [{}]", j.summary()));
        let page = match &self.notified {
            Some(Err(e)) => format!(" (page failed, re-sent next tick: {e})"),
            _ => String::new(),
        };
        let repaired = if self.problems.is_empty() {
            String::new()
        } else {
            format!(" (record repaired: {})", self.problems.join("; "))
        };
        format!(
            "{}:{} {what}{numbers}{page}{repaired}",
            self.function, self.alias
        )
    }
}

/// Logs one outcome: failures and repairs at ERROR (an alarm on the agent's log group sees
/// them), decisions at INFO.
pub(super) fn log(out: &Outcome, dry_run: bool) {
    let action = out
        .decision
        .as_ref()
        .map_or("none".to_string(), |d| d.action.to_string());
    let verdict = out
        .judgement
        .as_ref()
        .map_or("-".to_string(), |j| j.verdict.to_string());
    let numbers = out
        .judgement
        .as_ref()
        .map_or(String::new(), Judgement::summary);
    for p in &out.problems {
        tracing::error!(function = %out.function, alias = %out.alias, problem = %p, "alias record repaired");
    }
    if out.failed() {
        let error = out.error.clone().or_else(|| match &out.notified {
            Some(Err(e)) => Some(format!("publish failed: {e}")),
            _ => None,
        });
        tracing::error!(function = %out.function, alias = %out.alias, %action, %verdict, %numbers, error = error.as_deref().unwrap_or(""), dry_run, "policy failed");
    } else {
        tracing::info!(function = %out.function, alias = %out.alias, %action, %verdict, %numbers, dry_run, "decision");
    }
}

/// Whether an outcome moved traffic backwards (for exit codes and summaries).
#[must_use]
pub fn rolled_back(out: &Outcome) -> bool {
    matches!(
        out.decision.as_ref().map(|d| &d.action),
        Some(Action::Rollback { .. })
    )
}
