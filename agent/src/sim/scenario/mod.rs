//! Scenario files for `canary bench --scenarios FILE` (the contract is SCENARIOS.md).
//!
//! ```text
//! parse_scenarios(path, text) -> Result<Vec<Scenario>, ScenarioErrors>   every problem of the file
//! load(path)                  -> Result<Vec<Scenario>, ScenarioErrors>   the same, reading the file
//! ```
//!
//! Parsed like policy files: serde-saphyr with every value's location, unknown keys are errors,
//! durations as in policies (`90s`, `2m`, `1m30s`), and every problem names the file, the line
//! and the field: `production.yaml:12: scenarios[3].traffic.rate: must be greater than 0 ...`.
//!
//! Defaults: `minutes` 60; `traffic.noise` 0.1; `stable.errors` 0.001; `stable.latency`
//! median 80 ms, sigma 0.5; `error_bursts` 1; `latency_drift` sd 0, every 5m; no `slow`, no
//! `cold_start`, no changes, no outages. The candidate copies every key it omits from stable,
//! key by key (`candidate: {latency: {median_ms: 120}}` keeps stable's sigma); `slow` and
//! `cold_start` need every key unless stable has that block to copy from.
//!
//! Interpretations of SCENARIOS.md: `traffic.changes` set the rate to `rate × factor` from `at`
//! on (factors do not compound; `{at: 20m, factor: 1}` restores the rate) and are listed in time
//! order; `at` of changes and outages counts from the deploy and must fall inside the run;
//! `latency_drift` re-draws the version's log-level offset (normal, sd `sd`) every `every`,
//! so the drift is stationary; cold starts follow any growth of the version's share of traffic
//! (canary start, weight increase, promotion, rollback). Bounds are in [`limits`].

mod raw;
#[cfg(test)]
mod tests;
mod validate;

use std::path::Path;

pub use super::bench::Scenario;
use crate::policy::{PolicyErrors, PolicyProblem};

/// Bounds on scenario values (each a clear error when exceeded).
pub mod limits {
    /// Longest run, in minutes (a day).
    pub const MAX_MINUTES: i64 = 1440;
    /// Highest request rate to the alias, requests/s.
    pub const MAX_RATE: f64 = 100_000.0;
    /// Largest latency or added latency, ms (Lambda's 15-minute timeout).
    pub const MAX_MS: f64 = 900_000.0;
    /// Largest lognormal sigma of handler time.
    pub const MAX_SIGMA: f64 = 3.0;
    /// Largest log-scale sd (rate noise, latency drift).
    pub const MAX_SD: f64 = 2.0;
    /// Largest rate change factor.
    pub const MAX_FACTOR: f64 = 1000.0;
    /// Largest mean error cluster size.
    pub const MAX_CLUSTER: f64 = 1000.0;
    /// Longest `for` or `every`, seconds (a day).
    pub const MAX_SPAN_SECS: i64 = 86_400;
    /// Most scenarios in one file.
    pub const MAX_SCENARIOS: usize = 1000;
    /// Longest scenario name, characters.
    pub const MAX_NAME: usize = 200;
}

/// One thing wrong with a scenario file: file, line, field and message, as for policy files.
pub type ScenarioProblem = PolicyProblem;

/// Every problem of one scenario file (never empty when returned as an error).
pub type ScenarioErrors = PolicyErrors;

/// Parses and validates a scenario file. `path` is only used in messages.
///
/// # Errors
///
/// [`ScenarioErrors`] with every problem of the file: a YAML syntax or structure error (then the
/// only problem), an unknown key, an empty file, a missing required key or each invalid value.
pub fn parse_scenarios(path: &Path, text: &str) -> Result<Vec<Scenario>, ScenarioErrors> {
    let raw: Option<raw::RawFile> = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            return Err(PolicyErrors(vec![crate::policy::yaml_problem(
                path,
                text,
                &err,
                "a scenario file must be a mapping with `scenarios:` (a list of scenarios)",
            )]))
        }
    };
    let Some(raw) = raw else {
        return Err(PolicyErrors(vec![whole_file(
            path,
            "the file is empty; a scenario file needs `scenarios:` with at least one scenario",
        )]));
    };
    validate::build(path, raw).map_err(PolicyErrors)
}

/// Reads and parses the scenario file at `path`.
///
/// # Errors
///
/// As [`parse_scenarios`], or one problem when the file cannot be read.
pub fn load(path: &Path) -> Result<Vec<Scenario>, ScenarioErrors> {
    let text = crate::policy::read_policy_file(path)
        .map_err(|e| PolicyErrors(vec![whole_file(path, e)]))?;
    parse_scenarios(path, &text)
}

fn whole_file(path: &Path, message: impl Into<String>) -> ScenarioProblem {
    PolicyProblem {
        file: path.to_path_buf(),
        line: None,
        column: None,
        field: String::new(),
        message: message.into(),
    }
}
