//! Policy files: raw YAML -> validated [`Policy`].
//!
//! The team keeps one YAML file per protected alias in `policies/`. Parsing happens once, here;
//! everything downstream (judge, rollout, adapters) works with the validated [`Policy`].

//!
//! ```text
//! parse_policy(path, text) -> Result<Policy, PolicyErrors>   one file; every problem of the file
//! load_dir(dir)            -> DirReport                      every *.yaml/*.yml, duplicates across files
//! json_schema()            -> serde_json::Value              for editors (policies/schema.json)
//! ```
//!
//! Every problem names the file, the line (when known) and the field:
//! `policies/notes-create.yaml:12: errors.max_rate: must be between 0 and 1, got 1.5`.

mod duration;
mod raw;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{format_duration, parse_duration, DurationError};

/// The longest duration any policy key accepts (`step_interval`, `no_data_timeout`,
/// `metrics.period`): 7 days (`168h`); longer values are policy errors. A step that must wait a
/// week is already a paused rollout, and the bound keeps every duration far inside the agent's
/// `i64` epoch-second arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_SECS.unsigned_abs());

/// [`MAX_DURATION`] in seconds.
pub const MAX_DURATION_SECS: i64 = 7 * 24 * 60 * 60;

/// The largest `min_requests` a policy accepts (one billion canary requests at one step).
pub const MAX_MIN_REQUESTS: u64 = 1_000_000_000;

/// The default `latency.max_slow_increase`: one request in two hundred.
pub const DEFAULT_MAX_SLOW_INCREASE: f64 = 0.005;
/// The default `bake`: long enough for a 1% 5xx build that slipped through at 10 req/s to
/// show (9,000 requests at 100%), short enough that the next deploy rarely waits on it.
pub const DEFAULT_BAKE: Duration = Duration::from_secs(15 * 60);
/// The default `latency.warmup` with `source: lambda`.
pub const LAMBDA_WARMUP: Duration = Duration::from_secs(120);

/// Periods with a latency statistic past the warm-up a step needs at its own weight before it
/// moves on.
pub const LATENCY_PERIODS_AT_STEP: usize = 1;
/// Periods with a latency statistic past the warm-up a canary needs in all before its first
/// move: as many as the latency test needs to be able to reject (when each has the 20 canary
/// requests it pools periods to).
pub const LATENCY_PERIODS_IN_ALL: usize = 2;

/// What sets how long a step takes in [`Policy::step_seconds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepBound {
    /// `step_interval`.
    Interval,
    /// The time `min_requests` takes to arrive at the step's weight.
    MinRequests,
    /// The latency warm-up and the warm periods the step needs after it.
    LatencyWarmup,
}

/// The largest `latency.max_ms` and `latency.min_increase_ms` a policy accepts: 900 000 ms, the
/// longest a Lambda invocation can run (15 minutes).
pub const MAX_LATENCY_MS: f64 = 900_000.0;

/// The largest `latency.max_ratio` a policy accepts.
pub const MAX_LATENCY_RATIO: f64 = 1_000.0;

/// Whole seconds of `duration` as `i64`, clamped to [`MAX_DURATION`]: never negative and never
/// large enough to overflow the agent's epoch-second arithmetic, even for a [`Policy`] built in
/// code rather than parsed.
fn bounded_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).map_or(MAX_DURATION_SECS, |secs| secs.min(MAX_DURATION_SECS))
}

/// A validated canary policy for one function alias.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file this policy was read from (for messages).
    pub source: PathBuf,
    /// Lambda function name.
    pub function: String,
    /// Alias that serves production (default `live`).
    pub alias: String,
    /// Alias a deploy points at the new build (default `candidate`).
    pub candidate_alias: String,
    /// Percent of traffic to the new version at each step; strictly increasing, in (0, 100], ends at 100.
    pub steps: Vec<f64>,
    /// Minimum time at a step before moving on.
    pub step_interval: Duration,
    /// Canary requests needed at a step before moving on.
    pub min_requests: u64,
    /// 5xx rules.
    pub errors: ErrorRule,
    /// Latency rules.
    pub latency: LatencyRule,
    /// How sure the judge must be before it rolls back, in (0.5, 1).
    pub confidence: f64,
    /// What to do when a step sees no canary traffic for `no_data_timeout`.
    pub on_no_data: OnNoData,
    /// How long a step may see no canary traffic before `on_no_data` applies.
    pub no_data_timeout: Duration,
    /// How long a running canary may go unjudged, or its alias unwritten, before on-call is told
    /// it is unprotected.
    pub unprotected_after: Duration,
    /// How long after 100% the new version is still judged, against the previous version's
    /// numbers from before the canary; zero turns the bake off.
    pub bake: Duration,
    /// The release this alias belongs to: the aliases that share a release name are canaried,
    /// stepped, promoted and rolled back together ([`crate::rollout::release`]).
    pub release: Option<String>,
    /// Where the request, 5xx and latency numbers come from.
    pub metrics: MetricsSource,
    /// Where on-call is told.
    pub notify: Option<Notify>,
}

/// 5xx thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorRule {
    /// Ceiling on the canary's 5xx rate, in [0, 1].
    pub max_rate: f64,
    /// Allowed absolute increase over the baseline's 5xx rate, in [0, 1].
    pub max_increase: f64,
}

/// Latency thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRule {
    /// Which per-minute statistic is compared.
    pub stat: LatencyStat,
    /// Ceiling on the canary's statistic, in milliseconds.
    pub max_ms: f64,
    /// Canary statistic at most this multiple of the baseline's (≥ 1).
    pub max_ratio: f64,
    /// A relative regression must also be at least this many milliseconds slower (absolute floor).
    pub min_increase_ms: f64,
    /// Requests slower than this many milliseconds are slow for the tail test (two-sample, like
    /// 5xx); `None`: the stable version's p99 over the hour before the canary.
    pub slow_ms: Option<f64>,
    /// The tail test rolls back only if the canary's share of slow requests is more than this
    /// above the baseline's (0 to 1).
    pub max_slow_increase: f64,
    /// Latency periods that start within this long of a weight increase (new execution
    /// environments warming up) are not judged; `None`: 2 minutes with `source: lambda`, 0 with
    /// `source: emf` (whose `Latency` is warm invocations only).
    pub warmup: Option<Duration>,
}

/// The latency statistic a policy compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyStat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Mean.
    Average,
    /// Maximum.
    Maximum,
}

impl LatencyStat {
    /// The CloudWatch statistic name (`p99`, `Average`, ...).
    #[must_use]
    pub fn cloudwatch_name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::P999 => "p99.9",
            Self::Average => "Average",
            Self::Maximum => "Maximum",
        }
    }

    /// The quantile this statistic estimates (`None` for Average and Maximum).
    #[must_use]
    pub fn quantile(self) -> Option<f64> {
        match self {
            Self::P50 => Some(0.5),
            Self::P90 => Some(0.9),
            Self::P95 => Some(0.95),
            Self::P99 => Some(0.99),
            Self::P999 => Some(0.999),
            Self::Average | Self::Maximum => None,
        }
    }
}

/// What a step does after a long time without canary traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNoData {
    /// Stay at the step and tell on-call once.
    Hold,
    /// Roll the canary back.
    Rollback,
}

/// Where per-version numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsSource {
    /// `AWS/Lambda` Invocations, Errors (a Lambda error counts as a 5xx) and Duration, 60 s periods.
    Lambda {
        /// Also read Lambda Insights' `init_duration` (namespace `LambdaInsights`, dimensions
        /// `function_name` and `version`) for the cold-start test: `metrics.insights: true`, for
        /// functions that run the Lambda Insights extension.
        insights: bool,
    },
    /// The handler's own Embedded Metric Format metrics (`Requests`, `5xx`, `Latency`) in `namespace`,
    /// with dimensions `FunctionName` and `Version`, read at `period` (high resolution allows 1–30 s),
    /// plus `AWS/Lambda` Errors (a crashed invocation never writes its own 5xx).
    Emf {
        /// CloudWatch namespace of the handler's metrics.
        namespace: String,
        /// Period the metrics are read at.
        period: Duration,
    },
}

impl MetricsSource {
    /// `AWS/Lambda` metrics without Lambda Insights: the default.
    pub const LAMBDA: Self = Self::Lambda { insights: false };

    /// Whether the judge sees cold starts on their own (the cold-start test runs): EMF's
    /// `ColdLatency`, or Lambda Insights' `init_duration` next to `AWS/Lambda` metrics.
    #[must_use]
    pub fn judges_cold_starts(&self) -> bool {
        matches!(self, Self::Emf { .. } | Self::Lambda { insights: true })
    }

    /// The period of one datapoint.
    #[must_use]
    pub fn period(&self) -> Duration {
        match self {
            Self::Lambda { .. } => Duration::from_secs(60),
            Self::Emf { period, .. } => *period,
        }
    }

    /// [`Self::period`] in whole seconds, at least 1 and at most [`MAX_DURATION`]: safe to divide
    /// and multiply epoch seconds by.
    #[must_use]
    pub fn period_secs(&self) -> i64 {
        bounded_secs(self.period()).max(1)
    }
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// SNS topic ARN.
    pub topic_arn: String,
}

impl Policy {
    /// The false-rollback budget `1 - confidence`.
    #[must_use]
    pub fn alpha(&self) -> f64 {
        1.0 - self.confidence
    }

    /// `step_interval` in whole seconds, clamped to [`MAX_DURATION`] (never negative). Use this,
    /// not a cast, wherever the interval meets epoch seconds.
    #[must_use]
    pub fn step_interval_secs(&self) -> i64 {
        bounded_secs(self.step_interval)
    }

    /// How long each step before 100% takes at `rps` requests a second to the alias, from the
    /// policy alone (the metrics' own delay aside): the step interval, or longer when
    /// `min_requests` at that step's weight takes longer to arrive, or when the latency
    /// warm-up and the warm periods after it do ([`LATENCY_PERIODS_AT_STEP`], and
    /// [`LATENCY_PERIODS_IN_ALL`] at the first step, whose first period counts from its end).
    /// Triples of (weight %, seconds, what set them); seconds are capped at [`MAX_DURATION`] (a
    /// step that would take longer never finishes in practice).
    #[must_use]
    pub fn step_seconds(&self, rps: f64) -> Vec<(f64, i64, StepBound)> {
        let cap = bounded_secs(MAX_DURATION) as f64;
        let warmup = self.warmup_secs() as f64;
        let period = self.metrics.period_secs().max(1) as f64;
        self.steps
            .iter()
            .filter(|&&w| w < 100.0)
            .enumerate()
            .map(|(i, &w)| {
                let per_second = rps * w / 100.0;
                let live = per_second > 0.0 && per_second.is_finite();
                let requests = if live {
                    self.min_requests as f64 / per_second
                } else {
                    cap
                };
                // A period counts once it has a request: at low rates, one request's wait.
                let each = if live {
                    period.max(1.0 / per_second)
                } else {
                    cap
                };
                let (periods, partial) = if i == 0 {
                    (
                        LATENCY_PERIODS_IN_ALL,
                        if warmup > 0.0 { period } else { 0.0 },
                    )
                } else {
                    (LATENCY_PERIODS_AT_STEP, 0.0)
                };
                let latency = warmup + partial + periods as f64 * each;
                let interval = self.step_interval_secs() as f64;
                let (secs, bound) = [
                    (requests, StepBound::MinRequests),
                    (latency, StepBound::LatencyWarmup),
                ]
                .into_iter()
                .fold((interval, StepBound::Interval), |best, (s, b)| {
                    if s.ceil() > best.0 {
                        (s.ceil(), b)
                    } else {
                        best
                    }
                });
                (w, secs.min(cap) as i64, bound)
            })
            .collect()
    }

    /// `no_data_timeout` in whole seconds, clamped to [`MAX_DURATION`] (never negative).
    #[must_use]
    pub fn no_data_timeout_secs(&self) -> i64 {
        bounded_secs(self.no_data_timeout)
    }

    /// How long after a weight increase latency is not judged, in whole seconds: `latency.warmup`,
    /// or [`LAMBDA_WARMUP`] with `source: lambda` (Duration cannot tell a cold invocation from a
    /// slow one) and 0 with `source: emf` (its `Latency` counts warm invocations only).
    #[must_use]
    pub fn warmup_secs(&self) -> i64 {
        match (self.latency.warmup, &self.metrics) {
            (Some(d), _) => bounded_secs(d),
            (None, MetricsSource::Lambda { .. }) => bounded_secs(LAMBDA_WARMUP),
            (None, MetricsSource::Emf { .. }) => 0,
        }
    }

    /// `unprotected_after` in whole seconds, clamped to [`MAX_DURATION`] (never negative).
    #[must_use]
    pub fn unprotected_after_secs(&self) -> i64 {
        bounded_secs(self.unprotected_after)
    }

    /// `bake` in whole seconds, clamped to [`MAX_DURATION`] (0: no bake).
    #[must_use]
    pub fn bake_secs(&self) -> i64 {
        bounded_secs(self.bake)
    }

    /// A policy with the documented defaults for `function`, for tests and the simulator.
    #[must_use]
    pub fn with_defaults(function: &str) -> Self {
        Self {
            source: PathBuf::from(format!("{function}.yaml")),
            function: function.to_string(),
            alias: "live".to_string(),
            candidate_alias: "candidate".to_string(),
            steps: vec![10.0, 25.0, 50.0, 100.0],
            step_interval: Duration::from_secs(300),
            min_requests: 100,
            errors: ErrorRule {
                max_rate: 0.01,
                max_increase: 0.001,
            },
            latency: LatencyRule {
                stat: LatencyStat::P99,
                max_ms: 1500.0,
                max_ratio: 1.3,
                min_increase_ms: 25.0,
                slow_ms: None,
                max_slow_increase: DEFAULT_MAX_SLOW_INCREASE,
                warmup: None,
            },
            confidence: 0.99,
            on_no_data: OnNoData::Hold,
            no_data_timeout: Duration::from_secs(15 * 60),
            unprotected_after: Duration::from_secs(5 * 60),
            bake: DEFAULT_BAKE,
            release: None,
            metrics: MetricsSource::LAMBDA,
            notify: None,
        }
    }
}

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", ProblemDisplay(self))]
pub struct PolicyProblem {
    /// The file (or directory, for directory-level problems).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Field path such as `errors.max_rate` or `steps[2]`; empty for whole-file problems.
    pub field: String,
    /// What is wrong, for a person ("must be between 0 and 1, got 1.5").
    pub message: String,
}

struct ProblemDisplay<'a>(&'a PolicyProblem);

impl fmt::Display for ProblemDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(f, "{}", p.file.display())?;
        if let Some(line) = p.line {
            write!(f, ":{line}")?;
        }
        if !p.field.is_empty() {
            write!(f, ": {}", p.field)?;
        }
        write!(f, ": {}", p.message)
    }
}

impl PolicyProblem {
    fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: String::new(),
            message: message.into(),
        }
    }
}

/// Every problem found in one policy file (never empty when returned as an error). Displays one
/// problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", ErrorsDisplay(&self.0))]
pub struct PolicyErrors(pub Vec<PolicyProblem>);

struct ErrorsDisplay<'a>(&'a [PolicyProblem]);

impl fmt::Display for ErrorsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl PolicyErrors {
    /// The problems, in file order (problems without a line first).
    #[must_use]
    pub fn problems(&self) -> &[PolicyProblem] {
        &self.0
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyProblem;
    type IntoIter = std::vec::IntoIter<PolicyProblem>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Parses and validates one policy file. `path` is only used in messages and [`Policy::source`].
///
/// # Errors
///
/// [`PolicyErrors`] with every problem of the file: a YAML syntax or structure error (which stops
/// the file, so it is then the only problem), an unknown key, an empty file, or each invalid value.
pub fn parse_policy(path: &Path, text: &str) -> Result<Policy, PolicyErrors> {
    parse_with_line(path, text).map(|(policy, _)| policy)
}

/// [`parse_policy`], also returning the line of `function`.
fn parse_with_line(path: &Path, text: &str) -> Result<(Policy, validate::Lines), PolicyErrors> {
    let raw: Option<raw::RawPolicy> = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            return Err(PolicyErrors(vec![yaml_problem(
                path,
                text,
                &err,
                "a policy file must be a mapping of keys (function: ..., steps: ...)",
            )]))
        }
    };
    let Some(raw) = raw else {
        return Err(PolicyErrors(vec![PolicyProblem::whole_file(
            path,
            "the file is empty; a policy needs at least `function: <name>`",
        )]));
    };
    validate::build(path, raw).map_err(|mut problems| {
        problems.sort_by_key(|p| (p.line, p.column));
        PolicyErrors(problems)
    })
}

/// Turns a serde-saphyr error into a problem with line, column, best-effort field path and a
/// plain message; `top_level` is the message when the document is not a mapping.
pub(crate) fn yaml_problem(
    path: &Path,
    text: &str,
    err: &serde_saphyr::Error,
    top_level: &str,
) -> PolicyProblem {
    use serde_saphyr::MessageFormatter as _;

    let err = err.without_snippet();
    let (line, column) = err.location().map_or((None, None), validate::line_col);
    let field = match (line, column) {
        (Some(l), Some(c)) => validate::yaml_path_at(text, l, c),
        _ => String::new(),
    };
    let message = match err {
        serde_saphyr::Error::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => format!(
            "unknown key `{key}`; expected one of: {}",
            expected.join(", ")
        ),
        _ => {
            let text = serde_saphyr::UserMessageFormatter
                .format_message(err)
                .into_owned();
            match text.as_str() {
                "expected sequence start" => "must be a list, e.g. [10, 50, 100]".to_string(),
                "expected mapping start" if field.is_empty() => top_level.to_string(),
                "expected mapping start" => "must be a mapping of keys".to_string(),
                "expected string scalar" => {
                    "must be a single value, not a list or mapping".to_string()
                }
                _ => text,
            }
        }
    };
    PolicyProblem {
        file: path.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

/// What [`load_dir`] found: the valid policies and every problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirReport {
    /// Valid policies, in file-name order. Returned even when other files are broken, so the agent
    /// keeps protecting them.
    pub policies: Vec<Policy>,
    /// Every problem, file by file.
    pub problems: Vec<PolicyProblem>,
}

impl DirReport {
    /// True when every file is valid.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Loads every `*.yaml` / `*.yml` entry of `dir` (sorted by file name; `schema.json` and other
/// files are ignored). A missing or unreadable directory, a directory without policy files, an
/// unreadable entry, a `*.yaml` entry that is not a readable file (a dangling symbolic link, a
/// directory), and a second policy for the same `function` + `alias` (the later file) are
/// problems too: a policy file that silently disappears leaves its function unprotected.
#[must_use]
pub fn load_dir(dir: &Path) -> DirReport {
    let (texts, report) = read_dir(dir);
    load_texts(texts, report)
}

/// One policy file: its path, and its contents or why it cannot be read.
pub type PolicyText = (PathBuf, Result<String, String>);

/// The policy files of a directory (`*.yaml`, `*.yml`, any case), in name order, each with its
/// contents or why it cannot be read, and the directory's own problems (cannot be listed, no
/// policy file). What [`load_dir`] parses; read once by anyone who also needs the texts.
#[must_use]
pub fn read_dir(dir: &Path) -> (Vec<PolicyText>, DirReport) {
    let mut report = DirReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report.problems.push(PolicyProblem::whole_file(
                dir,
                format!("cannot read policy directory: {e}"),
            ));
            return (Vec::new(), report);
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let is_policy = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                });
                if is_policy {
                    files.push(path);
                }
            }
            Err(e) => report.problems.push(PolicyProblem::whole_file(
                dir,
                format!("cannot list policy directory: {e}"),
            )),
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        report.problems.push(PolicyProblem::whole_file(
            dir,
            format!(
                "no policy files in {} (expected *.yaml or *.yml)",
                dir.display()
            ),
        ));
        return (Vec::new(), report);
    }
    let texts = files
        .into_iter()
        .map(|file| {
            let text = read_policy_file(&file);
            (file, text)
        })
        .collect();
    (texts, report)
}

/// The largest policy or scenario file read: either is a few kilobytes, and a larger one is a
/// mistake (a log, a device, a generated file) that would otherwise be read whole into memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The contents of one policy file, or why it cannot be read. Symbolic links are followed; a
/// dangling one, a directory and any other non-regular file are problems (never silently
/// skipped), and so is a file over [`MAX_FILE_BYTES`].
pub(crate) fn read_policy_file(file: &Path) -> Result<String, String> {
    match std::fs::metadata(file) {
        Err(e) => {
            let link = std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
            if link {
                let target = std::fs::read_link(file)
                    .map_or_else(|_| "?".to_string(), |t| t.display().to_string());
                Err(format!(
                    "is a symbolic link to {target}, which cannot be read ({e}); fix or remove \
                     the link"
                ))
            } else {
                Err(format!("cannot read file: {e}"))
            }
        }
        Ok(meta) if meta.is_dir() => Err(
            "is a directory, not a policy file (rename it or move it out of the policies directory)"
                .to_string(),
        ),
        // A FIFO or device would block the tick or never end; only regular files are policies.
        Ok(meta) if !meta.is_file() => Err("is not a regular file".to_string()),
        Ok(_) => read_bounded(file),
    }
}

/// The text of a regular file, at most [`MAX_FILE_BYTES`] of it (the file may grow while read).
fn read_bounded(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "is larger than {} KiB; a policy or scenario file is a few kilobytes",
            MAX_FILE_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("line {line}: not UTF-8 text (byte {at} is not valid UTF-8)")
    })
}

/// Parses policy files given as (path, contents or read error), in order, into `report`: the
/// valid policies, and every problem, a second policy for the same `function` + `alias` (the
/// later file) included. [`load_dir`] reads a directory into it.
#[must_use]
pub fn load_texts(files: impl IntoIterator<Item = PolicyText>, mut report: DirReport) -> DirReport {
    let mut seen: HashMap<(String, String), PathBuf> = HashMap::new();
    let mut releases: HashMap<String, (PathBuf, Vec<f64>)> = HashMap::new();
    for (file, text) in files {
        let text = match text {
            Ok(text) => text,
            Err(message) => {
                report
                    .problems
                    .push(PolicyProblem::whole_file(&file, message));
                continue;
            }
        };
        match parse_with_line(&file, &text) {
            Ok((policy, lines)) => {
                let key = (policy.function.clone(), policy.alias.clone());
                if let Some(problem) = release_mismatch(&mut releases, &policy, &file, lines) {
                    report.problems.push(problem);
                } else if let Some(first) = seen.get(&key) {
                    report.problems.push(PolicyProblem {
                        file: file.clone(),
                        line: lines.function,
                        column: None,
                        field: "function".to_string(),
                        message: format!(
                            "{} alias {} is already protected by {}; keep one policy per alias",
                            policy.function,
                            policy.alias,
                            first.display()
                        ),
                    });
                } else {
                    seen.insert(key, file);
                    report.policies.push(policy);
                }
            }
            Err(errors) => report.problems.extend(errors),
        }
    }
    report
}

/// A release member whose `steps` differ from the release's first member's (members step
/// together, so they need the same steps); records the first member of each release.
fn release_mismatch(
    releases: &mut HashMap<String, (PathBuf, Vec<f64>)>,
    policy: &Policy,
    file: &Path,
    lines: validate::Lines,
) -> Option<PolicyProblem> {
    let name = policy.release.as_ref()?;
    let Some((first, steps)) = releases.get(name) else {
        releases.insert(name.clone(), (file.to_path_buf(), policy.steps.clone()));
        return None;
    };
    (*steps != policy.steps).then(|| PolicyProblem {
        file: file.to_path_buf(),
        line: lines.release,
        column: None,
        field: "release".to_string(),
        message: format!(
            "the members of release {name} step together and need the same steps: {} has {:?}, this file has {:?}",
            first.display(),
            steps,
            policy.steps
        ),
    })
}

/// JSON Schema (draft-07, which editors' YAML plugins understand) of a policy file, generated
/// from the raw serde types. `policies/schema.json` is this value, pretty-printed.
#[must_use]
pub fn json_schema() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<raw::RawPolicy>()
        .into()
}
