//! The policy file as written: serde types that keep every value's source location.
//!
//! Leaf values are read as strings (`Spanned<String>`) and converted in `validate`, so that a
//! wrong value ("1%", "p98", "120") becomes one collected problem with its line instead of a
//! deserialization error that hides every other problem in the file. The JSON Schema is derived
//! from these types, with the types a person should write (`number`, enums, patterns) declared
//! through `#[schemars(with = ...)]`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// An optional scalar with its location in the file.
pub(crate) type Leaf = Option<Spanned<String>>;

/// A lambda-canary policy: how one Lambda alias is protected while a new version is rolled out.
///
/// One file per protected alias in the policies directory. Unknown keys are errors. Durations are
/// written like `90s`, `2m`, `1h`, `1m30s`, and are at most `168h` (7 days).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lambda-canary policy")]
pub(crate) struct RawPolicy {
    /// Lambda function name (not an ARN): 1-64 letters, digits, `-` or `_`. Required.
    #[schemars(with = "String", extend("pattern" = "^[A-Za-z0-9_-]{1,64}$"))]
    pub function: Leaf,

    /// Alias that serves production. 1-128 letters, digits, `-` or `_`, not all digits.
    #[schemars(
        with = "Option<String>",
        extend("default" = "live", "pattern" = "^(?![0-9]+$)[A-Za-z0-9_-]{1,128}$")
    )]
    pub alias: Leaf,

    /// Alias a deploy points at the new build; must differ from `alias`.
    #[schemars(
        with = "Option<String>",
        extend("default" = "candidate", "pattern" = "^(?![0-9]+$)[A-Za-z0-9_-]{1,128}$")
    )]
    pub candidate_alias: Leaf,

    /// Percent of traffic sent to the new version at each step: strictly increasing, each in
    /// (0, 100], the last one 100. Fractional percents are allowed (e.g. `[0.5, 5, 100]`).
    #[schemars(
        with = "Option<Vec<StepPercent>>",
        extend("default" = [10, 25, 50, 100], "minItems" = 1)
    )]
    pub steps: Option<Spanned<Vec<Spanned<String>>>>,

    /// Minimum time at a step before moving on (e.g. `2m`). Must be positive, at least the
    /// metrics period and at most `168h` (7 days).
    #[schemars(
        with = "Option<String>",
        extend("default" = "5m", "pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub step_interval: Leaf,

    /// Canary requests needed at a step before moving on; 1 to 1000000000.
    #[schemars(
        with = "Option<u64>",
        extend("default" = 100, "minimum" = 1, "maximum" = 1_000_000_000)
    )]
    pub min_requests: Leaf,

    /// 5xx rules.
    #[schemars(with = "Option<RawErrors>")]
    pub errors: Option<Spanned<RawErrors>>,

    /// Latency rules.
    #[schemars(with = "Option<RawLatency>")]
    pub latency: Option<Spanned<RawLatency>>,

    /// How sure the judge must be before it rolls back, in (0.5, 1). The false-rollback budget
    /// per judgement is `1 - confidence`.
    #[schemars(
        with = "Option<f64>",
        extend("default" = 0.99, "exclusiveMinimum" = 0.5, "exclusiveMaximum" = 1)
    )]
    pub confidence: Leaf,

    /// What to do when a step sees no canary traffic for `no_data_timeout`.
    #[schemars(with = "Option<OnNoDataSchema>", extend("default" = "hold"))]
    pub on_no_data: Leaf,

    /// How long a step may see no canary traffic before `on_no_data` applies (e.g. `15m`); at most
    /// `168h` (7 days).
    #[schemars(
        with = "Option<String>",
        extend("default" = "15m", "pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub no_data_timeout: Leaf,

    /// How long a running canary may go unjudged (its metrics cannot be read), or its alias
    /// unread or unwritten, before on-call is told it is unprotected (e.g. `5m`); they are told
    /// again when judging or writing resumes.
    #[schemars(
        with = "Option<String>",
        extend("default" = "5m", "pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub unprotected_after: Leaf,

    /// How long after 100% the new version is still judged, against the previous version's own
    /// numbers from the hour before the canary began; a regression points the alias back at the
    /// previous version and pages (e.g. `15m`; `0s` turns it off; at most `168h`).
    #[schemars(
        with = "Option<String>",
        extend("default" = "15m", "pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub bake: Leaf,

    /// The release this alias belongs to (1-64 letters, digits, `-`, `_` or `.`): the aliases
    /// whose policies name the same release are canaried as one. A deploy that moves several
    /// members' candidates starts one release canary; members step together (each step waits
    /// for the slowest member's evidence); any member regressing rolls back every member.
    /// Members of one release must have the same `steps`.
    #[schemars(
        with = "Option<String>",
        extend("pattern" = "^[A-Za-z0-9._-]{1,64}$")
    )]
    pub release: Leaf,

    /// Where the request, 5xx and latency numbers come from.
    #[schemars(with = "Option<RawMetrics>")]
    pub metrics: Option<Spanned<RawMetrics>>,

    /// Where on-call is told. If absent, nothing is published.
    #[schemars(with = "Option<RawNotify>")]
    pub notify: Option<Spanned<RawNotify>>,
}

/// 5xx rules: the canary fails if its 5xx rate is above `max_rate`, or above the baseline's rate
/// plus `max_increase`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ErrorRules")]
pub(crate) struct RawErrors {
    /// Ceiling on the canary's 5xx rate, in [0, 1] (0.01 = 1%).
    #[schemars(
        with = "Option<f64>",
        extend("default" = 0.01, "minimum" = 0, "maximum" = 1)
    )]
    pub max_rate: Leaf,

    /// Allowed absolute increase of the canary's 5xx rate over the baseline's, in [0, 1]: a
    /// rollback needs the canary credibly more than this above the baseline's rate (tested).
    #[schemars(
        with = "Option<f64>",
        extend("default" = 0.001, "minimum" = 0, "maximum" = 1)
    )]
    pub max_increase: Leaf,
}

/// Latency rules, on a per-period statistic of the canary and the baseline.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "LatencyRules")]
pub(crate) struct RawLatency {
    /// Statistic compared. Percentiles are recommended; `Average` only for the local emulator.
    #[schemars(with = "Option<LatencyStatSchema>", extend("default" = "p99"))]
    pub stat: Leaf,

    /// Ceiling on the canary's statistic in milliseconds; greater than 0, at most 900000 (15
    /// minutes, the longest a Lambda invocation runs).
    #[schemars(
        with = "Option<f64>",
        extend("default" = 1500, "exclusiveMinimum" = 0, "maximum" = 900_000)
    )]
    pub max_ms: Leaf,

    /// The canary's statistic may be at most this multiple of the baseline's; 1 to 1000.
    #[schemars(
        with = "Option<f64>",
        extend("default" = 1.3, "minimum" = 1, "maximum" = 1000)
    )]
    pub max_ratio: Leaf,

    /// A relative regression (`max_ratio`) counts only if the canary is also at least this many
    /// milliseconds slower; 0 to 900000. Keeps a 4 ms -> 6 ms change from rolling back.
    #[schemars(
        with = "Option<f64>",
        extend("default" = 25, "minimum" = 0, "maximum" = 900_000)
    )]
    pub min_increase_ms: Leaf,

    /// The tail test's threshold: requests slower than this many milliseconds are slow, and the
    /// canary's share of them is tested against the baseline's like 5xx (greater than 0, at most
    /// 900000). Read as CloudWatch's percentile rank `PR(:slow_ms)` of Duration or Latency.
    /// Unset: the stable version's p99 over the hour before the canary.
    #[schemars(
        with = "Option<f64>",
        extend("exclusiveMinimum" = 0, "maximum" = 900_000)
    )]
    pub slow_ms: Leaf,

    /// The tail test rolls back only if the canary's share of slow requests is credibly (tested)
    /// more than this above the baseline's; 0 to 1.
    #[schemars(
        with = "Option<f64>",
        extend("default" = 0.005, "minimum" = 0, "maximum" = 1)
    )]
    pub max_slow_increase: Leaf,

    /// Latency periods starting within this long of a weight increase are not judged (new
    /// execution environments warming up); `0s` judges them. Default `2m` with `source: lambda`,
    /// `0s` with `source: emf` (the handlers' `Latency` counts warm invocations only).
    #[schemars(
        with = "Option<String>",
        extend("pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub warmup: Leaf,
}

/// Where per-version numbers come from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Metrics")]
pub(crate) struct RawMetrics {
    /// `lambda`: AWS/Lambda Invocations, Errors and Duration (60 s periods). `emf`: the handler's
    /// own Embedded Metric Format metrics (Requests, 5xx, Latency), plus AWS/Lambda Errors.
    #[schemars(with = "Option<MetricsSourceSchema>", extend("default" = "lambda"))]
    pub source: Leaf,

    /// CloudWatch namespace of the handler's EMF metrics (only with `source: emf`).
    #[schemars(
        with = "Option<String>",
        extend("default" = "NotesApi", "minLength" = 1, "maxLength" = 255)
    )]
    pub namespace: Leaf,

    /// Period of one datapoint. `lambda`: must be 60s. `emf`: 1s, 5s, 10s, 20s, 30s or 60s (the
    /// periods CloudWatch serves for high-resolution metrics).
    #[schemars(
        with = "Option<String>",
        extend("default" = "60s", "pattern" = "^(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    pub period: Leaf,

    /// `true`: the function runs the Lambda Insights extension, and its `init_duration` (namespace
    /// `LambdaInsights`) is read for the cold-start test (only with `source: lambda`; EMF policies
    /// read cold starts from the handler's `ColdLatency`).
    #[schemars(with = "Option<bool>", extend("default" = false))]
    pub insights: Leaf,
}

/// Where notifications go.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Notify")]
pub(crate) struct RawNotify {
    /// SNS topic ARN, `arn:<partition>:sns:<region>:<12-digit account>:<topic>`. The agent's
    /// `CANARY_TOPIC_ARN` environment variable overrides it when set.
    #[schemars(
        with = "String",
        extend("pattern" = "^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$")
    )]
    pub topic_arn: Leaf,
}

/// One step: percent of traffic to the new version, in (0, 100] (schema only).
#[derive(JsonSchema)]
#[schemars(extend("exclusiveMinimum" = 0, "maximum" = 100))]
#[allow(dead_code)] // Schema-only: never constructed.
pub(crate) struct StepPercent(f64);

/// `on_no_data` values (schema only; the file is read as text and checked in `validate`).
#[derive(JsonSchema)]
#[allow(dead_code)] // Schema-only: never constructed.
#[schemars(rename = "OnNoData")]
pub(crate) enum OnNoDataSchema {
    /// Stay at the step and tell on-call once.
    #[schemars(rename = "hold")]
    Hold,
    /// Roll the canary back.
    #[schemars(rename = "rollback")]
    Rollback,
}

/// `latency.stat` values (schema only).
#[derive(JsonSchema)]
#[allow(dead_code)] // Schema-only: never constructed.
#[schemars(rename = "LatencyStat")]
pub(crate) enum LatencyStatSchema {
    /// Median.
    #[schemars(rename = "p50")]
    P50,
    /// 90th percentile.
    #[schemars(rename = "p90")]
    P90,
    /// 95th percentile.
    #[schemars(rename = "p95")]
    P95,
    /// 99th percentile (recommended).
    #[schemars(rename = "p99")]
    P99,
    /// 99.9th percentile (needs a lot of traffic per period to be stable).
    #[schemars(rename = "p99.9")]
    P999,
    /// Mean (not recommended: one slow request hides among many fast ones; for the emulator).
    Average,
    /// Maximum (noisy: one cold start can trip it).
    Maximum,
}

/// `metrics.source` values (schema only).
#[derive(JsonSchema)]
#[allow(dead_code)] // Schema-only: never constructed.
#[schemars(rename = "MetricsSource")]
pub(crate) enum MetricsSourceSchema {
    /// AWS/Lambda metrics, 60 s periods.
    #[schemars(rename = "lambda")]
    Lambda,
    /// The handler's Embedded Metric Format metrics, high resolution.
    #[schemars(rename = "emf")]
    Emf,
}
