//! Raw policy -> validated [`Policy`], collecting every problem of the file.

use std::num::IntErrorKind;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::duration::{format_duration, parse_duration};
use super::raw::{Leaf, RawPolicy};
mod sections;

#[cfg(test)]
pub(crate) use sections::check_sns_arn;

use super::{
    MetricsSource, OnNoData, Policy, PolicyProblem, MAX_DURATION, MAX_LATENCY_MS, MAX_MIN_REQUESTS,
};

/// CloudWatch periods (seconds) valid for high-resolution metrics below one minute, plus 60.
pub(crate) const EMF_PERIODS: [u64; 6] = [1, 5, 10, 20, 30, 60];

/// Upper bound of the latency limits in milliseconds, with its reason.
const LATENCY_CAP: (f64, &str) = (
    MAX_LATENCY_MS,
    " (15 minutes, the longest a Lambda invocation runs)",
);

/// Default CloudWatch namespace of the notes handlers' EMF metrics.
pub(crate) const DEFAULT_NAMESPACE: &str = "NotesApi";

/// Line and column of a location, `None` when unknown (serde-saphyr reports 0).
pub(crate) fn line_col(location: Location) -> (Option<u32>, Option<u32>) {
    let known = |n: u64| u32::try_from(n).ok().filter(|n| *n > 0);
    (known(location.line()), known(location.column()))
}

/// Collects problems for one file (policy and scenario files alike).
pub(crate) struct Checker<'a> {
    file: &'a Path,
    problems: Vec<PolicyProblem>,
}

impl<'a> Checker<'a> {
    /// A checker for `file` with no problems yet.
    pub(crate) fn new(file: &'a Path) -> Self {
        Self {
            file,
            problems: Vec::new(),
        }
    }

    /// The problems found, sorted by position (problems without a line first).
    pub(crate) fn into_problems(mut self) -> Vec<PolicyProblem> {
        self.problems.sort_by_key(|p| (p.line, p.column));
        self.problems
    }

    /// Records a problem at `at` (its line and column, when known) in `field`.
    pub(crate) fn problem(
        &mut self,
        at: Option<Location>,
        field: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = at.map_or((None, None), line_col);
        self.problems.push(PolicyProblem {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A number `ok` accepts, or the default (after recording a problem) when absent/invalid.
    pub(crate) fn number(
        &mut self,
        leaf: &Leaf,
        field: &str,
        default: f64,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> f64 {
        let Some(v) = leaf else { return default };
        match v.value.parse::<f64>() {
            Ok(n) if n.is_finite() && ok(n) => n,
            Ok(n) if n.is_finite() => {
                self.problem(
                    Some(v.referenced),
                    field,
                    format!("must be {expected}, got {}", v.value),
                );
                default
            }
            _ => {
                self.problem(
                    Some(v.referenced),
                    field,
                    format!("must be a number {expected}, got {:?}", v.value),
                );
                default
            }
        }
    }

    /// [`Self::number`] with an upper bound `cap` (value, and why it is the bound): a finite number
    /// above it is a problem too.
    fn capped_number(
        &mut self,
        leaf: &Leaf,
        field: &str,
        default: f64,
        ok: impl Fn(f64) -> bool,
        expected: &str,
        (cap, why): (f64, &str),
    ) -> f64 {
        let n = self.number(leaf, field, default, ok, expected);
        match leaf {
            Some(v) if n > cap => {
                self.problem(
                    Some(v.referenced),
                    field,
                    format!("must be at most {cap}{why}, got {}", v.value),
                );
                default
            }
            _ => n,
        }
    }

    /// A duration in (0, [`MAX_DURATION`]], or the default (after recording a problem) when
    /// absent/invalid.
    /// A duration that may be `0s` (at most [`MAX_DURATION`]); 0 when invalid (after a problem).
    fn duration_or_zero(&mut self, leaf: &Leaf, field: &str) -> Duration {
        let Some(v) = leaf else {
            return Duration::ZERO;
        };
        if parse_duration(&v.value).is_ok_and(|d| d.is_zero()) {
            return Duration::ZERO;
        }
        self.duration(leaf, field, Duration::ZERO)
    }

    fn duration(&mut self, leaf: &Leaf, field: &str, default: Duration) -> Duration {
        let Some(v) = leaf else { return default };
        match parse_duration(&v.value) {
            Ok(d) if d > Duration::ZERO && d <= MAX_DURATION => d,
            Ok(d) if d > Duration::ZERO => {
                self.problem(
                    Some(v.referenced),
                    field,
                    format!(
                        "must be at most {} (7 days), got {}",
                        format_duration(MAX_DURATION),
                        v.value
                    ),
                );
                default
            }
            Ok(_) => {
                self.problem(
                    Some(v.referenced),
                    field,
                    format!("must be longer than 0s, got {}", v.value),
                );
                default
            }
            Err(e) => {
                self.problem(Some(v.referenced), field, e.to_string());
                default
            }
        }
    }

    /// `alias` and `candidate_alias`, which must differ.
    fn aliases(&mut self, raw: &RawPolicy, defaults: &Policy) -> (String, String) {
        let alias = self.alias(&raw.alias, "alias", &defaults.alias);
        let candidate_alias = self.alias(
            &raw.candidate_alias,
            "candidate_alias",
            &defaults.candidate_alias,
        );
        if alias == candidate_alias {
            let at = raw
                .candidate_alias
                .as_ref()
                .or(raw.alias.as_ref())
                .map(|v| v.referenced);
            self.problem(
                at,
                "candidate_alias",
                format!("must differ from alias (both are {alias:?})"),
            );
        }
        (alias, candidate_alias)
    }

    /// `min_requests`: a whole number from 1 to [`MAX_MIN_REQUESTS`].
    fn min_requests(&mut self, leaf: &Leaf, default: u64) -> u64 {
        let Some(v) = leaf else {
            return default;
        };
        let parsed = v.value.parse::<u64>();
        if let Ok(n) = parsed.as_ref().copied() {
            if (1..=MAX_MIN_REQUESTS).contains(&n) {
                return n;
            }
        }
        let too_large = parsed.as_ref().is_ok_and(|n| *n > MAX_MIN_REQUESTS)
            || parsed
                .as_ref()
                .is_err_and(|e| *e.kind() == IntErrorKind::PosOverflow);
        let message = if too_large {
            format!("must be at most {MAX_MIN_REQUESTS}, got {}", v.value)
        } else {
            format!("must be a whole number of at least 1, got {}", v.value)
        };
        self.problem(Some(v.referenced), "min_requests", message);
        default
    }

    /// `on_no_data`: `hold` or `rollback`.
    fn on_no_data(&mut self, leaf: &Leaf, default: OnNoData) -> OnNoData {
        match leaf {
            None => default,
            Some(v) if v.value == "hold" => OnNoData::Hold,
            Some(v) if v.value == "rollback" => OnNoData::Rollback,
            Some(v) => {
                self.problem(
                    Some(v.referenced),
                    "on_no_data",
                    format!("must be hold or rollback, got {:?}", v.value),
                );
                default
            }
        }
    }

    /// A valid `step_interval` given in the file must be at least the metrics period, or a step
    /// could pass without a single datapoint.
    fn step_interval_fits(
        &mut self,
        leaf: &Leaf,
        step_interval: Duration,
        metrics: &MetricsSource,
    ) {
        let Some(v) = leaf else {
            return;
        };
        let period = metrics.period();
        let valid = parse_duration(&v.value).is_ok_and(|d| d > Duration::ZERO && d <= MAX_DURATION);
        if valid && step_interval < period {
            self.problem(
                Some(v.referenced),
                "step_interval",
                format!(
                    "must be at least the metrics period ({}), or a step could pass without a \
                     single datapoint, got {}",
                    format_duration(period),
                    v.value
                ),
            );
        }
    }

    fn alias(&mut self, leaf: &Leaf, field: &str, default: &str) -> String {
        let Some(v) = leaf else {
            return default.to_string();
        };
        let name = v.value.as_str();
        let charset_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if name.is_empty() || name.len() > 128 || !charset_ok {
            self.problem(
                Some(v.referenced),
                field,
                format!("must be an alias name of 1-128 letters, digits, '-' or '_', got {name:?}"),
            );
        } else if name.bytes().all(|b| b.is_ascii_digit()) {
            self.problem(
                Some(v.referenced),
                field,
                format!("must not be all digits (that is a version number), got {name:?}"),
            );
        }
        name.to_string()
    }

    fn release(&mut self, leaf: &Leaf) -> Option<String> {
        let v = leaf.as_ref()?;
        let name = v.value.as_str();
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.problem(
                Some(v.referenced),
                "release",
                format!(
                    "must be a release name of 1-64 letters, digits, '-', '_' or '.', got {name:?}"
                ),
            );
        }
        Some(name.to_string())
    }

    fn function(&mut self, leaf: &Leaf) -> String {
        let Some(v) = leaf else {
            self.problem(
                None,
                "function",
                "is required: the name of the Lambda function to protect",
            );
            return String::new();
        };
        let name = v.value.as_str();
        let charset_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if name.starts_with("arn:") {
            self.problem(
                Some(v.referenced),
                "function",
                format!(
                    "must be the function name, not an ARN (the agent works in the account and \
                     region of its AWS configuration), got {name:?}"
                ),
            );
        } else if name.is_empty() || name.len() > 64 || !charset_ok {
            self.problem(
                Some(v.referenced),
                "function",
                format!("must be a Lambda function name of 1-64 letters, digits, '-' or '_', got {name:?}"),
            );
        }
        name.to_string()
    }

    fn steps(&mut self, steps: Option<&Spanned<Vec<Spanned<String>>>>) -> Vec<f64> {
        let Some(list) = steps else {
            return Policy::with_defaults("").steps;
        };
        if list.value.is_empty() {
            self.problem(
                Some(list.referenced),
                "steps",
                "must list at least one step, ending at 100 (e.g. [10, 50, 100])",
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(list.value.len());
        let mut previous: Option<f64> = None;
        let mut all_ok = true;
        for (i, step) in list.value.iter().enumerate() {
            let field = format!("steps[{i}]");
            let at = Some(step.referenced);
            let Ok(percent) = step.value.parse::<f64>() else {
                self.problem(
                    at,
                    &field,
                    format!("must be a percent of traffic, got {:?}", step.value),
                );
                all_ok = false;
                continue;
            };
            if !(percent.is_finite() && percent > 0.0 && percent <= 100.0) {
                self.problem(
                    at,
                    &field,
                    format!("must be greater than 0 and at most 100, got {}", step.value),
                );
                all_ok = false;
                continue;
            }
            if let Some(prev) = previous {
                if percent <= prev {
                    self.problem(
                        at,
                        &field,
                        format!(
                            "must be greater than the previous step ({prev}), got {}; steps are strictly increasing",
                            step.value
                        ),
                    );
                    all_ok = false;
                }
            }
            previous = Some(percent);
            out.push(percent);
        }
        if all_ok {
            if let (Some(last), Some(spanned)) = (out.last(), list.value.last()) {
                if (*last - 100.0).abs() > f64::EPSILON {
                    let i = list.value.len() - 1;
                    self.problem(
                        Some(spanned.referenced),
                        &format!("steps[{i}]"),
                        format!(
                            "the last step must be 100, got {} (100 is the full rollout)",
                            spanned.value
                        ),
                    );
                }
            }
        }
        out
    }
}

/// Where a policy's keys that other files are checked against are (1-based lines).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lines {
    /// The `function` key.
    pub function: Option<u32>,
    /// The `release` key.
    pub release: Option<u32>,
}

/// Converts a raw policy; `Err` holds every problem found. On success also returns the line of
/// `function` (for duplicate reports across files).
pub(crate) fn build(file: &Path, raw: RawPolicy) -> Result<(Policy, Lines), Vec<PolicyProblem>> {
    let mut c = Checker::new(file);
    let function = c.function(&raw.function);
    let defaults = Policy::with_defaults(&function);
    let (alias, candidate_alias) = c.aliases(&raw, &defaults);
    let steps = c.steps(raw.steps.as_ref());
    let step_interval = c.duration(&raw.step_interval, "step_interval", defaults.step_interval);
    let min_requests = c.min_requests(&raw.min_requests, defaults.min_requests);
    let errors = c.errors(raw.errors.as_ref().map(|s| &s.value), defaults.errors);
    let latency = c.latency(raw.latency.as_ref().map(|s| &s.value), defaults.latency);
    let confidence = c.number(
        &raw.confidence,
        "confidence",
        defaults.confidence,
        |n| n > 0.5 && n < 1.0,
        "greater than 0.5 and less than 1",
    );
    let on_no_data = c.on_no_data(&raw.on_no_data, defaults.on_no_data);
    let no_data_timeout = c.duration(
        &raw.no_data_timeout,
        "no_data_timeout",
        defaults.no_data_timeout,
    );
    let unprotected_after = c.duration(
        &raw.unprotected_after,
        "unprotected_after",
        defaults.unprotected_after,
    );
    let bake = match &raw.bake {
        None => defaults.bake,
        Some(_) => c.duration_or_zero(&raw.bake, "bake"),
    };
    let release = c.release(&raw.release);
    let metrics = c.metrics(raw.metrics.as_ref().map(|s| &s.value));
    c.step_interval_fits(&raw.step_interval, step_interval, &metrics);
    let notify = c.notify(raw.notify.as_ref());
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let line_of = |leaf: &Leaf| leaf.as_ref().and_then(|v| line_col(v.referenced).0);
    let lines = Lines {
        function: line_of(&raw.function),
        release: line_of(&raw.release),
    };
    let policy = Policy {
        source: file.to_path_buf(),
        function,
        alias,
        candidate_alias,
        steps,
        step_interval,
        min_requests,
        errors,
        latency,
        confidence,
        on_no_data,
        no_data_timeout,
        unprotected_after,
        bake,
        release,
        metrics,
        notify,
    };
    Ok((policy, lines))
}

/// Best-effort dotted key path (`errors.max_rate`, `scenarios[2].candidate.errors`) of the
/// block-style YAML node at `line`/`column` (1-based), for deserialization errors that carry a
/// location but no path. Inside a list of mappings the item's index is counted.
pub(crate) fn yaml_path_at(text: &str, line: u32, column: u32) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(current) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| lines.get(..=l))
    else {
        return String::new();
    };
    let Some((&here, above)) = current.split_last() else {
        return String::new();
    };
    let mut keys = Vec::new();
    let (indent, is_item, key) = line_shape(here);
    let mut limit = indent;
    let mut item = is_item;
    // Inside a mapping that is a list item: (the item's dash column, items counted so far).
    let mut in_item = (is_item && key.is_some()).then_some((indent, 1));
    if let Some((start, key)) = key {
        if u32::try_from(start).is_ok_and(|s| s < column) {
            keys.push(key.to_string());
        }
    }
    for &text_line in above.iter().rev() {
        if limit == 0 && !item {
            break;
        }
        let (indent, is_item, key) = line_shape(text_line);
        if let Some((dash, count)) = &mut in_item {
            if is_item && indent == *dash {
                *count += 1;
                continue;
            }
        }
        let Some((start, key)) = key else { continue };
        if is_item && !item && start == limit {
            // `- key: ...` whose mapping holds the node: the node is in this list item.
            in_item = Some((indent, 1));
            limit = indent;
            item = true;
            continue;
        }
        // A parent has less indentation; a sequence's entries may sit at its key's indentation.
        if indent < limit || (item && !is_item && indent == limit) {
            match in_item.take() {
                Some((_, count)) => keys.push(format!("{key}[{}]", count - 1)),
                None => keys.push(key.to_string()),
            }
            limit = indent;
            item = is_item;
        }
    }
    keys.reverse();
    keys.join(".")
}

/// (indentation, starts with "- ", Some((column of key, key))) of one line; comments and blank
/// lines have no key.
fn line_shape(line: &str) -> (usize, bool, Option<(usize, &str)>) {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[indent..];
    let mut start = indent;
    let is_item = rest.starts_with("- ");
    if is_item {
        let trimmed = rest[2..].trim_start_matches(' ');
        start += rest.len() - trimmed.len();
        rest = trimmed;
    }
    let key_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        .count();
    let after = &rest[key_len..];
    let is_key =
        key_len > 0 && (after == ":" || after.starts_with(": ") || after.starts_with(":\t"));
    (indent, is_item, is_key.then(|| (start, &rest[..key_len])))
}
