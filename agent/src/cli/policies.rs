//! `canary policy check` and `canary policy show`: what the policy files say, and what the
//! running agent uses.

use super::{deployed, CliError, Output};
use crate::policy::{self, Policy, StepBound};
use crate::text::human_duration;
use std::path::Path;
use std::time::Duration;

/// `canary policy check`: one line per valid policy (and its step estimate at `rate`), one per
/// problem as `FILE:LINE: FIELD: MESSAGE`; or the same as one JSON object.
pub(super) fn policy_check(dir: &Path, rate: Option<f64>, output: Output) -> Result<(), CliError> {
    let report = policy::load_dir(dir);
    let steps = |p: &Policy| {
        p.steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match output {
        Output::Text => {
            for p in &report.policies {
                say!(
                    "ok  {}  ({}:{}, steps {}%)",
                    p.source.display(),
                    p.function,
                    p.alias,
                    steps(p)
                );
                if let Some(rps) = rate {
                    say!("    {}", step_estimate(p, rps));
                }
            }
            for p in &report.problems {
                say!("{p}");
            }
            if report.is_ok() {
                say!("{} policies valid", report.policies.len());
            }
        }
        Output::Json => {
            let policies: Vec<serde_json::Value> = report
                .policies
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.source.display().to_string(),
                        "function": p.function,
                        "alias": p.alias,
                        "release": p.release,
                        "steps": p.steps,
                        "estimate": rate.map(|rps| step_estimate(p, rps)),
                    })
                })
                .collect();
            let problems: Vec<serde_json::Value> = report
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file.display().to_string(),
                        "line": p.line,
                        "column": p.column,
                        "field": p.field,
                        "message": p.message,
                    })
                })
                .collect();
            say!(
                "{}",
                serde_json::json!({"valid": report.is_ok(), "policies": policies, "problems": problems})
            );
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{} problem(s) in {}",
            report.problems.len(),
            dir.display()
        )))
    }
}

/// `canary policy show [--deployed]`.
pub(super) async fn policy_show(
    conf: Option<&aws_config::SdkConfig>,
    dir: &Path,
    agent: Option<&str>,
    output: Output,
) -> Result<(), CliError> {
    let Some(agent) = agent else {
        return deployed::print_show(dir, None, output);
    };
    let loaded = match conf {
        Some(c) => c.clone(),
        None => crate::aws::sdk_config(None, None)
            .await
            .map_err(|e| CliError::Failed(format!("failed to set up AWS clients: {e}")))?,
    };
    let client = crate::aws::deployed::lambda_client(&loaded);
    let answer = crate::aws::deployed::ask_agent(&client, agent, Duration::from_secs(3))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    deployed::print_show(dir, Some((agent, &answer)), output)
}

/// One line: how long each step of `policy` takes at `rps`, and the total to 100%.
pub(super) fn step_estimate(policy: &Policy, rps: f64) -> String {
    let steps = policy.step_seconds(rps);
    let total = steps.iter().fold(0_i64, |t, s| t.saturating_add(s.1));
    // A step's estimate is capped at MAX_DURATION: one that reaches it never finishes in
    // practice, and a total made of capped terms would be a number nobody should believe.
    let capped = |secs: i64| secs >= crate::policy::MAX_DURATION_SECS;
    let each: Vec<String> = steps
        .iter()
        .map(|&(w, secs, bound)| {
            let why = match bound {
                StepBound::Interval => "",
                StepBound::MinRequests => " (min_requests)",
                StepBound::LatencyWarmup => " (latency warm-up)",
            };
            if capped(secs) {
                format!("{w}% more than a week{why}")
            } else {
                format!("{w}% {}{why}", human_duration(secs))
            }
        })
        .collect();
    let end = if steps.iter().any(|s| capped(s.1)) {
        "such a step never finishes in practice".to_string()
    } else {
        format!("about {} to 100% when healthy", human_duration(total))
    };
    format!("at {rps} req/s: {}; {end}", each.join(", "))
}
