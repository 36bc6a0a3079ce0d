//! What the judge needs from before a canary started, read from CloudWatch first in a tick: the
//! stable version's p99 over the hour before (the tail test's threshold when the policy sets no
//! `latency.slow_ms`) and its 5xx rate over the same hour (its usual rate, from which the judge
//! tells a shared outage), its latency statistic per minute over the six hours before (how much its
//! level wanders: the latency test's variance is never below it; every version's together when
//! the stable version has too few minutes of its own) and, with EMF metrics or Lambda Insights,
//! its median cold start (`ColdLatency` or `init_duration` p50) over the day before (the
//! cold-start test's reference; a steady version starts few environments an hour). One
//! `GetMetricData` call per distinct canary start and kind (more when the answer would exceed
//! CloudWatch's 100,800 datapoints).
//!
//! A number that cannot be read leaves its test without data for this tick, logged at WARN; it
//! never fails the rest of the judgement (moto, for one, computes no percentiles). A number whose
//! window ended more than [`SETTLE`] ago cannot change any more: it is kept ([`Settled`]) and
//! not read again by later ticks or `canary wait`'s looks.

use super::metrics::{
    dimension, emf_metric, insights_metric, lambda_metric, metric_query, CloudWatchMetrics,
};
use super::sdk_failure;
use crate::policy::MetricsSource;
use crate::ports::MetricsQuery;
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, ScanBy, StatusCode};
use aws_smithy_types::DateTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The hour the tail threshold is read over.
const HOUR: i64 = 3600;
/// The day the stable cold start is read over.
const DAY: i64 = 86_400;
/// CloudWatch's limit on metric queries in one `GetMetricData` call.
const MAX_QUERIES: usize = 500;
/// CloudWatch's limit on datapoints in one `GetMetricData` answer.
const MAX_DATAPOINTS: i64 = 100_800;
/// How long after a window ends its datapoints may still arrive (CloudWatch's delivery delay,
/// generously).
const SETTLE: i64 = 600;
/// The most settled numbers kept; beyond it the memory starts over.
const MAX_SETTLED: usize = 10_000;

/// Settled numbers from before canaries, by metric, statistic and window; `None` when the
/// window had no number to give (a version too new, no percentiles).
#[derive(Debug, Clone, Default)]
pub(super) struct Settled(Arc<Mutex<HashMap<String, Option<f64>>>>);

impl Settled {
    fn get(&self, key: &str) -> Option<Option<f64>> {
        self.0.lock().ok()?.get(key).copied()
    }

    fn put(&self, key: String, value: Option<f64>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= MAX_SETTLED {
                map.clear();
            }
            map.insert(key, value);
        }
    }
}

/// One query's numbers from before its canary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct History {
    /// The tail test's threshold: the policy's `slow_ms`, or the stable version's p99.
    pub slow_ms: Option<f64>,
    /// The stable version's median cold start (EMF only).
    pub stable_cold_ms: Option<f64>,
    /// How much the stable version's latency level wandered ([`crate::judge::wander`]); every
    /// version's together when the stable version has too few minutes of its own.
    pub latency_wander: Option<f64>,
    /// The stable version's 5xx rate over the hour before (its usual rate, against which the
    /// judge tells a shared outage).
    pub stable_error_rate: Option<f64>,
}

/// One statistic of one metric over a window that ends at a canary's start.
struct Ask {
    index: usize,
    part: Part,
    start: i64,
    metric: Metric,
    stat: &'static str,
}

/// Which of a query's numbers from one reading an answer is: the reading's one number, or one
/// of the two counts of the stable version's usual 5xx rate (read in one call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Value,
    Requests,
    Errors,
}

impl Part {
    /// The suffix of the metric query's id ("h{index}{suffix}").
    fn suffix(self) -> &'static str {
        match self {
            Self::Value => "",
            Self::Requests => "n",
            Self::Errors => "k",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        [Self::Value, Self::Requests, Self::Errors]
            .into_iter()
            .find(|p| p.suffix() == suffix)
    }
}

/// What to read before a canary, and how its datapoints become one number.
struct Reading {
    /// Seconds before the canary's start.
    window: i64,
    /// Seconds per datapoint.
    period: i64,
    /// What the number is, for the log.
    what: &'static str,
    /// The number from the datapoints `(start, value)`, oldest first.
    reduce: fn(&[(i64, f64)]) -> Option<f64>,
}

impl Reading {
    /// What a settled answer to `a` is kept under.
    fn key(&self, a: &Ask) -> String {
        let Self { window, period, .. } = self;
        format!("{}/{window}/{period}/{}/{:?}", a.stat, a.start, a.metric)
    }
}

/// The one datapoint of a window read as a single period, if positive.
fn single(points: &[(i64, f64)]) -> Option<f64> {
    points
        .first()
        .map(|&(_, v)| v)
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// The stable version's p99 over the hour before (the tail threshold).
const P99: Reading = Reading {
    window: HOUR,
    period: HOUR,
    what: "p99 (the tail test's threshold)",
    reduce: single,
};
/// The stable version's requests and 5xx over the hour before, in one call: its usual 5xx
/// rate, against which the judge tells a shared outage. Not in the p99's call: a statistic an
/// endpoint cannot compute (moto's percentiles) must not take the counts down with it.
const RATE: Reading = Reading {
    window: HOUR,
    period: HOUR,
    what: "5xx rate (what a shared outage is told from)",
    reduce: total,
};

/// A count over a window read as one period: zero when the answer has no datapoint (CloudWatch
/// omits zero sums), so only a failed call leaves it unknown.
fn total(points: &[(i64, f64)]) -> Option<f64> {
    Some(points.iter().map(|&(_, v)| v.max(0.0)).sum())
}

/// The stable version's median cold start over the day before.
const COLD: Reading = Reading {
    window: DAY,
    period: DAY,
    what: "median cold start",
    reduce: single,
};
/// The stable version's per-minute latency statistic over the hours before (its wander).
const WANDER: Reading = Reading {
    window: crate::judge::WANDER_SECS,
    period: 60,
    what: "latency per minute (how much it wanders)",
    reduce: |points| crate::judge::wander(points, 60),
};
/// The same over every version behind the alias (the function's, with EMF), for a stable
/// version with too few minutes of its own (promoted moments ago): a level that changed with
/// a version only adds to the wander, so the latency test gets slower, never more eager.
const WANDER_ALL_VERSIONS: Reading = Reading {
    what: "latency per minute over all versions (how much it wanders)",
    ..WANDER
};

/// A query's latency metric over every version: the alias's (`FunctionName`, `Resource`) in
/// AWS/Lambda, the function's (`FunctionName`) with EMF.
fn all_versions_latency(q: &MetricsQuery) -> Metric {
    let (namespace, name) = match &q.source {
        MetricsSource::Lambda { .. } => ("AWS/Lambda", "Duration"),
        MetricsSource::Emf { namespace, .. } => (namespace.as_str(), "Latency"),
    };
    let mut metric = Metric::builder()
        .namespace(namespace)
        .metric_name(name)
        .dimensions(dimension("FunctionName", &q.function));
    if matches!(q.source, MetricsSource::Lambda { .. }) {
        metric = metric.dimensions(dimension("Resource", format!("{}:{}", q.function, q.alias)));
    }
    metric.build()
}

impl CloudWatchMetrics {
    /// The numbers from before each query's canary.
    pub(super) async fn history(&self, queries: &[MetricsQuery]) -> Vec<History> {
        let mut out: Vec<History> = queries
            .iter()
            .map(|q| History {
                slow_ms: q.slow_ms,
                ..History::default()
            })
            .collect();
        let Asks {
            p99,
            rate,
            cold,
            wander,
        } = asks(queries);
        for ((i, _), v) in self.read_before(p99, &P99).await {
            out[i].slow_ms = Some(v);
        }
        let counts = self.read_before(rate, &RATE).await;
        for (&(i, part), &n) in &counts {
            if part == Part::Requests && n > 0.0 {
                out[i].stable_error_rate = counts
                    .get(&(i, Part::Errors))
                    .map(|k| (k / n).clamp(0.0, 1.0));
            }
        }
        for ((i, _), v) in self.read_before(cold, &COLD).await {
            out[i].stable_cold_ms = Some(v);
        }
        for ((i, _), v) in self.read_before(wander, &WANDER).await {
            out[i].latency_wander = Some(v);
        }
        let mut all_versions = Vec::new();
        for (index, q) in queries.iter().enumerate() {
            if let (Some(start), None) = (q.canary_start, out[index].latency_wander) {
                all_versions.push(Ask {
                    index,
                    part: Part::Value,
                    start,
                    metric: all_versions_latency(q),
                    stat: q.stat.cloudwatch_name(),
                });
            }
        }
        for ((i, _), v) in self.read_before(all_versions, &WANDER_ALL_VERSIONS).await {
            out[i].latency_wander = Some(v);
        }
        out
    }

    /// Each asked metric over the reading's window before its start (whole minutes), made one
    /// number, by query index. Settled numbers come from memory.
    async fn read_before(&self, asks: Vec<Ask>, reading: &Reading) -> HashMap<(usize, Part), f64> {
        let Reading { window, period, .. } = *reading;
        let mut found = HashMap::new();
        let asks: Vec<Ask> = asks
            .into_iter()
            .filter(|a| match self.settled.get(&reading.key(a)) {
                Some(v) => {
                    if let Some(v) = v {
                        found.insert((a.index, a.part), v);
                    }
                    false
                }
                None => true,
            })
            .collect();
        // Every answer fits one response: at most MAX_DATAPOINTS datapoints in all.
        let per_call = usize::try_from(MAX_DATAPOINTS / (window / period).max(1))
            .unwrap_or(1)
            .clamp(1, MAX_QUERIES);
        let mut starts: Vec<i64> = asks.iter().map(|a| a.start).collect();
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            let from = start.saturating_sub(window).div_euclid(60) * 60;
            let group: Vec<&Ask> = asks.iter().filter(|a| a.start == start).collect();
            for chunk in group.chunks(per_call) {
                let queries: Vec<MetricDataQuery> = chunk
                    .iter()
                    .map(|a| {
                        let id = format!("h{}{}", a.index, a.part.suffix());
                        metric_query(id, a.metric.clone(), period, a.stat)
                    })
                    .collect();
                let answer = self
                    .client()
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries))
                    .start_time(DateTime::from_secs(from))
                    .end_time(DateTime::from_secs(from.saturating_add(window)))
                    .scan_by(ScanBy::TimestampAscending)
                    .send()
                    .await;
                match answer {
                    Ok(result) => self.keep(&result, chunk, reading, &mut found),
                    Err(e) => tracing::warn!(
                        queries = chunk.len(),
                        "the stable versions' {} before the canary could not be read, so the tests that need it have less to go on this tick: {}",
                        reading.what,
                        sdk_failure("CloudWatch", self.endpoint(), "GetMetricData", &e)
                    ),
                }
            }
        }
        found
    }

    /// Makes each answered query of `chunk` one number into `found`; a complete answer over
    /// a window that can no longer change is kept, whether or not it held a number.
    fn keep(
        &self,
        result: &GetMetricDataOutput,
        chunk: &[&Ask],
        reading: &Reading,
        found: &mut HashMap<(usize, Part), f64>,
    ) {
        let now = crate::clock::now_secs();
        for r in result.metric_data_results() {
            let id = r.id().and_then(|id| id.strip_prefix('h')).unwrap_or("");
            let digits = id.len() - id.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let (index, suffix) = id.split_at(digits);
            let (Ok(i), Some(part)) = (index.parse::<usize>(), Part::from_suffix(suffix)) else {
                continue;
            };
            let mut points: Vec<(i64, f64)> = r
                .timestamps()
                .iter()
                .map(DateTime::secs)
                .zip(r.values().iter().copied())
                .collect();
            points.sort_by_key(|&(t, _)| t);
            let v = (reading.reduce)(&points);
            if let Some(v) = v {
                found.insert((i, part), v);
            }
            let complete = r.status_code() == Some(&StatusCode::Complete);
            let asked = chunk.iter().find(|a| a.index == i && a.part == part);
            if let Some(a) = asked.filter(|a| complete && a.start + SETTLE <= now) {
                self.settled.put(reading.key(a), v);
            }
        }
    }
}

/// The readings of the stable version's hours before each canary, by kind.
#[derive(Default)]
struct Asks {
    /// Its p99 over the hour before, the tail test's threshold (when the policy sets none).
    p99: Vec<Ask>,
    /// Its requests and 5xx summed over the hour before: its usual 5xx rate.
    rate: Vec<Ask>,
    /// Its median cold start over the day before (EMF, or Lambda Insights).
    cold: Vec<Ask>,
    /// Its per-minute latency statistic over the six hours before: its wander.
    wander: Vec<Ask>,
}

/// What [`AwsPorts::history`] reads for each query with a canary start.
fn asks(queries: &[MetricsQuery]) -> Asks {
    let mut a = Asks::default();
    for (index, q) in queries.iter().enumerate() {
        let Some(start) = q.canary_start else {
            continue;
        };
        let ask = |metric: Metric, stat: &'static str| Ask {
            index,
            part: Part::Value,
            start,
            metric,
            stat,
        };
        let (n, k) = match &q.source {
            MetricsSource::Lambda { .. } => (
                lambda_metric(q, q.stable, "Invocations"),
                lambda_metric(q, q.stable, "Errors"),
            ),
            MetricsSource::Emf { namespace, .. } => (
                emf_metric(q, namespace, q.stable, "Requests"),
                emf_metric(q, namespace, q.stable, "5xx"),
            ),
        };
        a.rate.push(Ask {
            part: Part::Requests,
            ..ask(n, "Sum")
        });
        a.rate.push(Ask {
            part: Part::Errors,
            ..ask(k, "Sum")
        });
        let latency = match &q.source {
            MetricsSource::Lambda { insights } => {
                if *insights {
                    a.cold
                        .push(ask(insights_metric(q, q.stable, "init_duration"), "p50"));
                }
                lambda_metric(q, q.stable, "Duration")
            }
            MetricsSource::Emf { namespace, .. } => {
                a.cold.push(ask(
                    emf_metric(q, namespace, q.stable, "ColdLatency"),
                    "p50",
                ));
                emf_metric(q, namespace, q.stable, "Latency")
            }
        };
        if q.slow_ms.is_none() {
            a.p99.push(ask(latency.clone(), "p99"));
        }
        a.wander.push(ask(latency, q.stat.cloudwatch_name()));
    }
    a
}
