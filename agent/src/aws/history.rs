//! What the judge needs from before a canary started, read from CloudWatch first in a tick: the
//! stable version's p99 over the hour before (the tail test's threshold when the policy sets no
//! `latency.slow_ms`) and, with EMF metrics, its median cold start (`ColdLatency` p50) over the
//! day before (the cold-start test's reference; a steady version starts few environments an
//! hour). One `GetMetricData` call per distinct canary start and kind, one period each.
//!
//! A number that cannot be read leaves its test without data for this tick, logged at WARN; it
//! never fails the rest of the judgement (moto, for one, computes no percentiles). A number whose
//! window ended more than [`SETTLE`] ago cannot change any more: it is kept ([`Settled`]) and
//! not read again by later ticks or `canary wait`'s looks.

use super::metrics::{emf_metric, lambda_metric, metric_query, CloudWatchMetrics};
use super::sdk_failure;
use crate::policy::MetricsSource;
use crate::ports::MetricsQuery;
use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery};
use aws_smithy_types::DateTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The hour the tail threshold is read over.
const HOUR: i64 = 3600;
/// The day the stable cold start is read over.
const DAY: i64 = 86_400;
/// CloudWatch's limit on metric queries in one `GetMetricData` call.
const MAX_QUERIES: usize = 500;
/// How long after a window ends its datapoints may still arrive (CloudWatch's delivery delay,
/// generously).
const SETTLE: i64 = 600;
/// The most settled numbers kept; beyond it the memory starts over.
const MAX_SETTLED: usize = 10_000;

/// Settled numbers from before canaries, by metric, statistic and window.
#[derive(Debug, Clone, Default)]
pub(super) struct Settled(Arc<Mutex<HashMap<String, f64>>>);

impl Settled {
    fn get(&self, key: &str) -> Option<f64> {
        self.0.lock().ok()?.get(key).copied()
    }

    fn put(&self, key: String, value: f64) {
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
}

/// One statistic of one metric over a window that ends at a canary's start.
struct Ask {
    index: usize,
    start: i64,
    metric: Metric,
}

impl CloudWatchMetrics {
    /// The numbers from before each query's canary.
    pub(super) async fn history(&self, queries: &[MetricsQuery]) -> Vec<History> {
        let mut out: Vec<History> = queries
            .iter()
            .map(|q| History {
                slow_ms: q.slow_ms,
                stable_cold_ms: None,
            })
            .collect();
        let mut p99 = Vec::new();
        let mut cold = Vec::new();
        for (index, q) in queries.iter().enumerate() {
            let Some(start) = q.canary_start else {
                continue;
            };
            match &q.source {
                MetricsSource::Lambda if q.slow_ms.is_none() => p99.push(Ask {
                    index,
                    start,
                    metric: lambda_metric(q, q.stable, "Duration"),
                }),
                MetricsSource::Lambda => {}
                MetricsSource::Emf { namespace, .. } => {
                    if q.slow_ms.is_none() {
                        p99.push(Ask {
                            index,
                            start,
                            metric: emf_metric(q, namespace, q.stable, "Latency"),
                        });
                    }
                    cold.push(Ask {
                        index,
                        start,
                        metric: emf_metric(q, namespace, q.stable, "ColdLatency"),
                    });
                }
            }
        }
        for (i, v) in self.read_before(p99, HOUR, "p99").await {
            out[i].slow_ms = Some(v);
        }
        for (i, v) in self.read_before(cold, DAY, "p50").await {
            out[i].stable_cold_ms = Some(v);
        }
        out
    }

    /// `stat` of each asked metric over the `window` seconds before its start (whole minutes),
    /// by query index; positive finite values only. Settled numbers come from memory.
    async fn read_before(&self, asks: Vec<Ask>, window: i64, stat: &str) -> HashMap<usize, f64> {
        let key = |a: &Ask| format!("{stat}/{window}/{}/{:?}", a.start, a.metric);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut found = HashMap::new();
        let asks: Vec<Ask> = asks
            .into_iter()
            .filter(|a| match self.settled.get(&key(a)) {
                Some(v) => {
                    found.insert(a.index, v);
                    false
                }
                None => true,
            })
            .collect();
        let mut starts: Vec<i64> = asks.iter().map(|a| a.start).collect();
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            let from = start.saturating_sub(window).div_euclid(60) * 60;
            let group: Vec<&Ask> = asks.iter().filter(|a| a.start == start).collect();
            for chunk in group.chunks(MAX_QUERIES) {
                let queries: Vec<MetricDataQuery> = chunk
                    .iter()
                    .map(|a| metric_query(format!("h{}", a.index), a.metric.clone(), window, stat))
                    .collect();
                let answer = self
                    .client()
                    .get_metric_data()
                    .set_metric_data_queries(Some(queries))
                    .start_time(DateTime::from_secs(from))
                    .end_time(DateTime::from_secs(from.saturating_add(window)))
                    .send()
                    .await;
                match answer {
                    Ok(result) => {
                        for r in result.metric_data_results() {
                            let index = r
                                .id()
                                .and_then(|id| id.strip_prefix('h'))
                                .and_then(|n| n.parse::<usize>().ok());
                            if let (Some(i), Some(&v)) = (index, r.values().first()) {
                                if v.is_finite() && v > 0.0 {
                                    found.insert(i, v);
                                    let asked = chunk.iter().find(|a| a.index == i);
                                    if let Some(a) = asked.filter(|a| a.start + SETTLE <= now) {
                                        self.settled.put(key(a), v);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        queries = chunk.len(),
                        "the stable versions' {stat} before the canary could not be read, so the tests that need it have no data this tick: {}",
                        sdk_failure("CloudWatch", self.endpoint(), "GetMetricData", &e)
                    ),
                }
            }
        }
        found
    }
}
