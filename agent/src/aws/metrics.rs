//! [`Metrics`] on CloudWatch `GetMetricData`: every query of a tick in as few calls as possible.
//!
//! Each [`MetricsQuery`] becomes 6 metric queries (Lambda source: Invocations, Errors, Duration
//! for the canary and the baseline) or 8 (EMF source: Requests, 5xx, Latency and `AWS/Lambda`
//! Errors for both), plus the percentile rank `PR(:T)` of Duration or Latency for each, where T
//! is the policy's `latency.slow_ms` or, when it sets none, the stable version's p99 over the
//! hour before the canary started (read first, one call per distinct start), and the canary's
//! cold starts (count and percentile rank at the cold-start test's limit) with EMF or Lambda
//! Insights. They are packed into calls of at most 500 metric queries without splitting a
//! query's metrics across calls, and each call follows `NextToken` to the end.
//!
//! One call has one time window, so a call asks for the union of its queries' windows and each
//! query keeps only its own periods. High-resolution queries (period below a minute) go out in
//! separate calls and read at most the last 3 hours: CloudWatch returns no sub-minute datapoints
//! for a window that starts earlier.

use super::history::History;
use super::{default_endpoint, sdk_failure};
use crate::judge::{cold_limit, ColdStarts, Sample};
use crate::policy::MetricsSource;
use crate::ports::{Metrics, MetricsQuery, PortError, Series};
use crate::rollout::Version;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode,
};
use aws_smithy_types::DateTime;
use std::collections::{BTreeMap, HashMap};

/// The service name in messages.
const SERVICE: &str = "CloudWatch";
/// CloudWatch's limit on metric queries in one `GetMetricData` call.
const MAX_METRIC_QUERIES_PER_CALL: usize = 500;
/// How far back CloudWatch serves sub-minute datapoints.
const HIGH_RESOLUTION_HORIZON: i64 = 3 * 3600;
/// A bound on `NextToken` pages of one call (a week of minutes for 500 metrics is ~70 pages).
const MAX_PAGES: usize = 1000;
/// The period of Lambda's own metrics.
const MINUTE: i64 = 60;

/// Per-version metrics from CloudWatch, on `aws-sdk-cloudwatch`.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
    endpoint: String,
    /// Numbers from before a canary that can no longer change (`aws/history.rs`), kept for
    /// the life of the process so a tick does not read them again.
    pub(super) settled: super::history::Settled,
}

impl CloudWatchMetrics {
    /// Wraps a CloudWatch client (a real one, or a mock in tests).
    #[must_use]
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        let endpoint = default_endpoint(client.config().region(), "monitoring");
        Self {
            client,
            endpoint,
            settled: super::history::Settled::default(),
        }
    }

    /// Names the endpoint the client talks to, for "could not reach CloudWatch at ..." messages.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The SDK client.
    #[must_use]
    pub fn client(&self) -> &aws_sdk_cloudwatch::Client {
        &self.client
    }

    /// The endpoint named in messages.
    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One `GetMetricData` call (all its pages) for a chunk of planned queries.
    async fn call(&self, chunk: &[&Planned<'_>]) -> Result<HashMap<String, Collected>, PortError> {
        let start = chunk.iter().map(|p| p.from).min().unwrap_or_default();
        let end = chunk.iter().map(|p| p.to).max().unwrap_or_default();
        let queries: Vec<MetricDataQuery> = chunk
            .iter()
            .flat_map(|p| p.metric_queries.iter().cloned())
            .collect();
        let mut collected: HashMap<String, Collected> = HashMap::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_failure(SERVICE, &self.endpoint, "GetMetricData", &e))?;
            for result in out.metric_data_results() {
                let Some(id) = result.id() else { continue };
                let entry = collected.entry(id.to_string()).or_default();
                for (t, v) in result.timestamps().iter().zip(result.values()) {
                    entry.points.insert(t.secs(), *v);
                }
                // PartialData: the next page has the rest. InternalError, Forbidden: this
                // metric (and so its query) failed.
                if let Some(status @ (StatusCode::InternalError | StatusCode::Forbidden)) =
                    result.status_code()
                {
                    let messages: Vec<&str> = result
                        .messages()
                        .iter()
                        .filter_map(|m| m.value().or(m.code()))
                        .collect();
                    entry.failure = Some(if messages.is_empty() {
                        status.as_str().to_string()
                    } else {
                        format!("{}: {}", status.as_str(), messages.join("; "))
                    });
                }
            }
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => return Ok(collected),
            }
        }
        Err(PortError::Failed(format!(
            "CloudWatch GetMetricData was still paginating after {MAX_PAGES} pages"
        )))
    }
}

impl Metrics for CloudWatchMetrics {
    async fn fetch(&self, queries: &[MetricsQuery]) -> Vec<Result<Series, PortError>> {
        let before = self.history(queries).await;
        let planned: Vec<Planned<'_>> = queries
            .iter()
            .zip(before)
            .enumerate()
            .map(|(n, (q, h))| Planned::new(n, q, h))
            .collect();
        let mut answers: Vec<Option<Result<Series, PortError>>> = vec![None; queries.len()];
        for high_resolution in [false, true] {
            let group: Vec<&Planned<'_>> = planned
                .iter()
                .filter(|p| p.high_resolution == high_resolution)
                .collect();
            for chunk in chunks(&group) {
                match self.call(chunk).await {
                    Ok(collected) => {
                        for p in chunk {
                            answers[p.index] = Some(p.series(&collected));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(queries = chunk.len(), "metrics call failed: {e}");
                        for p in chunk {
                            answers[p.index] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(PortError::Failed("metrics query was not sent".into())))
            })
            .collect()
    }
}

/// Packs planned queries into calls of at most [`MAX_METRIC_QUERIES_PER_CALL`] metric queries,
/// never splitting one query's metrics.
fn chunks<'a, 'q>(group: &'a [&'a Planned<'q>]) -> Vec<&'a [&'a Planned<'q>]> {
    let mut out = Vec::new();
    let (mut begin, mut size) = (0, 0);
    for (i, p) in group.iter().enumerate() {
        let n = p.metric_queries.len();
        if size + n > MAX_METRIC_QUERIES_PER_CALL && i > begin {
            out.push(&group[begin..i]);
            (begin, size) = (i, 0);
        }
        size += n;
    }
    if begin < group.len() {
        out.push(&group[begin..]);
    }
    out
}

/// Datapoints of one metric query, and its failure if CloudWatch reported one.
#[derive(Debug, Default)]
struct Collected {
    points: BTreeMap<i64, f64>,
    failure: Option<String>,
}

/// Which version a metric query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Canary,
    Baseline,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Self::Canary => "c",
            Self::Baseline => "b",
        }
    }
}

/// Which number a metric query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Requests (Invocations or EMF `Requests`).
    Requests,
    /// 5xx (Lambda Errors or EMF `5xx`).
    Errors,
    /// Latency (Duration or EMF `Latency`).
    Latency,
    /// `AWS/Lambda` Errors next to EMF metrics (crashes the handler never reported).
    LambdaErrors,
    /// Percentile rank `PR(:slow_ms)` of Duration or Latency: the percentage of requests at or
    /// under the tail test's threshold.
    Rank,
    /// The canary's cold starts (sample count of EMF `ColdLatency` or Lambda Insights'
    /// `init_duration`).
    ColdCount,
    /// Percentile rank of the cold-start metric at the cold-start limit.
    ColdRank,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Self::Requests => "req",
            Self::Errors => "err",
            Self::Latency => "lat",
            Self::LambdaErrors => "lerr",
            Self::Rank => "pr",
            Self::ColdCount => "cn",
            Self::ColdRank => "cp",
        }
    }
}

/// CloudWatch's percentile-rank statistic at a threshold: the percentage of values at or under it.
fn percentile_rank(ms: f64) -> String {
    format!("PR(:{})", (ms * 1000.0).round() / 1000.0)
}

/// The id of one metric query: `q{n}_{c|b}_{req|err|lat|lerr}` (CloudWatch wants
/// `^[a-z][a-zA-Z0-9_]*$`, unique within a call).
fn metric_id(n: usize, side: Side, kind: Kind) -> String {
    format!("q{n}_{}_{}", side.tag(), kind.tag())
}

pub(super) fn dimension(name: &str, value: impl Into<String>) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

pub(super) fn metric_query(id: String, metric: Metric, period: i64, stat: &str) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(i32::try_from(period).unwrap_or(60))
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// `AWS/Lambda` metric of one version as served through the production alias.
pub(super) fn lambda_metric(q: &MetricsQuery, version: Version, name: &str) -> Metric {
    Metric::builder()
        .namespace("AWS/Lambda")
        .metric_name(name)
        .dimensions(dimension("FunctionName", &q.function))
        .dimensions(dimension("Resource", format!("{}:{}", q.function, q.alias)))
        .dimensions(dimension("ExecutedVersion", version.to_string()))
        .build()
}

/// Lambda Insights' metric of one version (the extension publishes `function_name` and
/// `version` dimensions, lower case).
pub(super) fn insights_metric(q: &MetricsQuery, version: Version, name: &str) -> Metric {
    Metric::builder()
        .namespace("LambdaInsights")
        .metric_name(name)
        .dimensions(dimension("function_name", &q.function))
        .dimensions(dimension("version", version.to_string()))
        .build()
}

/// The handler's own EMF metric of one version.
pub(super) fn emf_metric(
    q: &MetricsQuery,
    namespace: &str,
    version: Version,
    name: &str,
) -> Metric {
    Metric::builder()
        .namespace(namespace)
        .metric_name(name)
        .dimensions(dimension("FunctionName", &q.function))
        .dimensions(dimension("Version", version.to_string()))
        .build()
}

/// The start a query's window is read from, and the period of its source's metrics (seconds).
/// Sub-minute datapoints exist for 3 hours only, so a high-resolution window starts no earlier;
/// with EMF metrics it starts at the Lambda `Errors` minute that contains the start.
fn window(q: &MetricsQuery) -> (i64, i64) {
    let period = i64::try_from(q.source.period().as_secs())
        .unwrap_or(MINUTE)
        .max(1);
    let mut from = q.from;
    if period % MINUTE != 0 {
        let horizon = q.to - HIGH_RESOLUTION_HORIZON;
        from = from.max(horizon.div_euclid(MINUTE) * MINUTE + MINUTE);
    }
    if matches!(q.source, MetricsSource::Emf { .. }) {
        from = from.div_euclid(MINUTE) * MINUTE;
    }
    (from, period)
}

/// What to read of one version, as `(kind, metric, period, statistic)`: requests, 5xx and the
/// latency statistic from the policy's source; the percentile rank at the tail threshold
/// (`rank`) when known; with EMF, Lambda's own `Errors` beside the handler's, and the cold
/// starts when `cold` (the canary's cold-start limit) is given.
fn asks(
    q: &MetricsQuery,
    version: Version,
    period: i64,
    rank: Option<&str>,
    cold: Option<f64>,
) -> Vec<(Kind, Metric, i64, String)> {
    let stat = q.stat.cloudwatch_name().to_string();
    match &q.source {
        MetricsSource::Lambda { insights } => {
            let lambda = |name: &str| lambda_metric(q, version, name);
            let mut asks = vec![
                (Kind::Requests, lambda("Invocations"), MINUTE, "Sum".into()),
                (Kind::Errors, lambda("Errors"), MINUTE, "Sum".into()),
                (Kind::Latency, lambda("Duration"), MINUTE, stat),
            ];
            if let Some(rank) = rank {
                asks.push((Kind::Rank, lambda("Duration"), MINUTE, rank.to_string()));
            }
            // Lambda Insights writes `init_duration` on an environment's first invocation only.
            if let Some(limit) = cold.filter(|_| *insights) {
                let init = insights_metric(q, version, "init_duration");
                asks.extend(cold_asks(init, MINUTE, limit));
            }
            asks
        }
        MetricsSource::Emf { namespace, .. } => {
            let emf = |name: &str| emf_metric(q, namespace, version, name);
            let mut asks = vec![
                (Kind::Requests, emf("Requests"), period, "Sum".into()),
                (Kind::Errors, emf("5xx"), period, "Sum".into()),
                (Kind::Latency, emf("Latency"), period, stat),
                (
                    Kind::LambdaErrors,
                    lambda_metric(q, version, "Errors"),
                    MINUTE,
                    "Sum".into(),
                ),
            ];
            if let Some(rank) = rank {
                asks.push((Kind::Rank, emf("Latency"), period, rank.to_string()));
            }
            if let Some(limit) = cold {
                asks.extend(cold_asks(emf("ColdLatency"), period, limit));
            }
            asks
        }
    }
}

/// The canary's cold starts from a metric with one value per cold start: how many (its sample
/// count), and the share within the limit (its percentile rank there).
fn cold_asks(metric: Metric, period: i64, limit: f64) -> [(Kind, Metric, i64, String); 2] {
    [
        (
            Kind::ColdCount,
            metric.clone(),
            period,
            "SampleCount".into(),
        ),
        (Kind::ColdRank, metric, period, percentile_rank(limit)),
    ]
}

/// One [`MetricsQuery`] turned into metric queries, with the window it reads.
struct Planned<'q> {
    /// Position in the caller's slice (also the `n` of the ids).
    index: usize,
    query: &'q MetricsQuery,
    /// Window start actually read (epoch seconds, inclusive).
    from: i64,
    /// Window end (epoch seconds, exclusive).
    to: i64,
    high_resolution: bool,
    metric_queries: Vec<MetricDataQuery>,
    /// What was read from before the canary (the tail threshold, the stable cold start).
    before: History,
    /// The cold-start test's limit, when the stable version's cold starts are known.
    cold_limit: Option<f64>,
}

impl<'q> Planned<'q> {
    fn new(index: usize, q: &'q MetricsQuery, before: History) -> Self {
        let cold_limit = before.stable_cold_ms.map(|m| cold_limit(&q.limits, m));
        let (from, period) = window(q);
        // CloudWatch's percentile rank: the percentage of values at or under the threshold.
        let rank = before.slow_ms.map(percentile_rank);
        let mut metric_queries = Vec::with_capacity(10);
        for (side, version) in [(Side::Canary, q.canary), (Side::Baseline, q.stable)] {
            let cold = cold_limit.filter(|_| side == Side::Canary);
            metric_queries.extend(
                asks(q, version, period, rank.as_deref(), cold)
                    .into_iter()
                    .map(|(kind, metric, period, stat)| {
                        metric_query(metric_id(index, side, kind), metric, period, &stat)
                    }),
            );
        }
        Self {
            index,
            query: q,
            from,
            to: q.to,
            high_resolution: period % MINUTE != 0,
            metric_queries,
            before,
            cold_limit,
        }
    }

    /// The datapoints of one metric query inside this query's window.
    fn points(
        &self,
        collected: &HashMap<String, Collected>,
        side: Side,
        kind: Kind,
    ) -> Result<BTreeMap<i64, f64>, PortError> {
        let Some(c) = collected.get(&metric_id(self.index, side, kind)) else {
            return Ok(BTreeMap::new());
        };
        if let Some(failure) = &c.failure {
            let version = match side {
                Side::Canary => self.query.canary,
                Side::Baseline => self.query.stable,
            };
            return Err(PortError::Failed(format!(
                "CloudWatch could not compute {} of {} v{version}: {failure}",
                kind.describe(&self.query.source),
                self.query.function,
            )));
        }
        Ok(c.points
            .range(self.from..self.to)
            .map(|(t, v)| (*t, *v))
            .collect())
    }

    fn samples(
        &self,
        collected: &HashMap<String, Collected>,
        side: Side,
    ) -> Result<Vec<Sample>, PortError> {
        let requests = self.points(collected, side, Kind::Requests)?;
        let errors = self.points(collected, side, Kind::Errors)?;
        let latency = self.points(collected, side, Kind::Latency)?;
        let rank = if self.before.slow_ms.is_some() {
            Some(self.points(collected, side, Kind::Rank)?)
        } else {
            None
        };
        // No requests datapoint means no evidence for the period, whatever else was published.
        let mut samples: Vec<Sample> = requests
            .iter()
            .map(|(&start, &requests)| Sample {
                start,
                requests,
                // CloudWatch has no datapoint for a period without errors.
                errors: errors.get(&start).copied().unwrap_or(0.0),
                latency_ms: latency.get(&start).copied(),
                // Requests over the threshold: the share above the percentile rank.
                slow: rank
                    .as_ref()
                    .and_then(|r| r.get(&start))
                    .map(|pr| (requests * (100.0 - pr.clamp(0.0, 100.0)) / 100.0).round()),
            })
            .collect();
        if let MetricsSource::Emf { period, .. } = &self.query.source {
            let crashed = self.points(collected, side, Kind::LambdaErrors)?;
            let period = i64::try_from(period.as_secs()).unwrap_or(MINUTE);
            samples.extend(unreported_failures(&samples, &crashed, period));
        }
        samples.sort_by_key(|s| s.start);
        Ok(samples)
    }

    fn series(&self, collected: &HashMap<String, Collected>) -> Result<Series, PortError> {
        let cold = if self.cold_limit.is_some() {
            let counts = self.points(collected, Side::Canary, Kind::ColdCount)?;
            let ranks = self.points(collected, Side::Canary, Kind::ColdRank)?;
            counts
                .iter()
                .filter(|(_, &n)| n > 0.0)
                .map(|(&start, &count)| ColdStarts {
                    start,
                    count,
                    // No rank for a period with cold starts: none counted slow, and the test
                    // sees their number only.
                    slow: ranks.get(&start).map_or(0.0, |pr| {
                        (count * (100.0 - pr.clamp(0.0, 100.0)) / 100.0).round()
                    }),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Series {
            canary: self.samples(collected, Side::Canary)?,
            baseline: self.samples(collected, Side::Baseline)?,
            slow_ms: self.before.slow_ms,
            cold,
            stable_cold_ms: self.before.stable_cold_ms,
            latency_wander: self.before.latency_wander,
            stable_error_rate: self.before.stable_error_rate,
        })
    }
}

impl Kind {
    /// What a person calls this number, for messages.
    fn describe(self, source: &MetricsSource) -> &'static str {
        match (self, source) {
            (Self::Requests, MetricsSource::Lambda { .. }) => "Invocations",
            (Self::Errors | Self::LambdaErrors, MetricsSource::Lambda { .. })
            | (Self::LambdaErrors, MetricsSource::Emf { .. }) => "Lambda Errors",
            (Self::Latency, MetricsSource::Lambda { .. }) => "Duration",
            (Self::Requests, MetricsSource::Emf { .. }) => "Requests",
            (Self::Errors, MetricsSource::Emf { .. }) => "5xx",
            (Self::Latency, MetricsSource::Emf { .. }) => "Latency",
            (Self::Rank, MetricsSource::Lambda { .. }) => "the percentile rank of Duration",
            (Self::Rank, MetricsSource::Emf { .. }) => "the percentile rank of Latency",
            (Self::ColdCount | Self::ColdRank, MetricsSource::Lambda { .. }) => {
                "Lambda Insights init_duration"
            }
            (Self::ColdCount | Self::ColdRank, MetricsSource::Emf { .. }) => "ColdLatency",
        }
    }
}

/// Failures Lambda counted that the handler never reported through EMF (a build that crashes
/// before its handler runs writes no EMF at all): per minute (or per EMF period, if longer), the
/// Lambda Errors above the EMF 5xx of the same span, as one sample of that many failed requests.
pub(super) fn unreported_failures(
    emf: &[Sample],
    lambda_errors: &BTreeMap<i64, f64>,
    period: i64,
) -> Vec<Sample> {
    let span = period.max(MINUTE);
    let bucket = |t: i64| t.div_euclid(span) * span;
    let mut reported: BTreeMap<i64, f64> = BTreeMap::new();
    for s in emf {
        *reported.entry(bucket(s.start)).or_default() += s.errors;
    }
    let mut crashed: BTreeMap<i64, f64> = BTreeMap::new();
    for (&t, &errors) in lambda_errors {
        *crashed.entry(bucket(t)).or_default() += errors;
    }
    crashed
        .into_iter()
        .filter_map(|(start, errors)| {
            let excess = errors - reported.get(&start).copied().unwrap_or(0.0);
            (excess > 0.0).then_some(Sample {
                start,
                requests: excess,
                errors: excess,
                latency_ms: None,
                slow: None,
            })
        })
        .collect()
}
