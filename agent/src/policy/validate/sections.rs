//! The checks of a policy's nested sections: `errors`, `latency`, `metrics` and `notify`.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::super::duration::parse_duration;
use super::super::raw::{RawErrors, RawLatency, RawMetrics, RawNotify};
use super::super::{ErrorRule, LatencyRule, LatencyStat, MetricsSource, Notify, MAX_LATENCY_RATIO};
use super::{Checker, DEFAULT_NAMESPACE, EMF_PERIODS, LATENCY_CAP};

/// The period of `AWS/Lambda` metrics.
const MINUTE: Duration = Duration::from_secs(60);

impl Checker<'_> {
    pub(super) fn errors(&mut self, raw: Option<&RawErrors>, default: ErrorRule) -> ErrorRule {
        let Some(raw) = raw else { return default };
        let rate = |n: f64| (0.0..=1.0).contains(&n);
        ErrorRule {
            max_rate: self.number(
                &raw.max_rate,
                "errors.max_rate",
                default.max_rate,
                rate,
                "between 0 and 1",
            ),
            max_increase: self.number(
                &raw.max_increase,
                "errors.max_increase",
                default.max_increase,
                rate,
                "between 0 and 1",
            ),
        }
    }

    pub(super) fn latency(
        &mut self,
        raw: Option<&RawLatency>,
        default: LatencyRule,
    ) -> LatencyRule {
        let Some(raw) = raw else { return default };
        let stat = match &raw.stat {
            None => default.stat,
            Some(v) => parse_stat(&v.value).unwrap_or_else(|| {
                let names = ALL_STATS.map(LatencyStat::cloudwatch_name).join(", ");
                let hint = ALL_STATS
                    .iter()
                    .find(|s| s.cloudwatch_name().eq_ignore_ascii_case(&v.value))
                    .map(|s| format!(" (did you mean {}?)", s.cloudwatch_name()))
                    .unwrap_or_default();
                self.problem(
                    Some(v.referenced),
                    "latency.stat",
                    format!("must be one of {names}, got {:?}{hint}", v.value),
                );
                default.stat
            }),
        };
        LatencyRule {
            stat,
            max_ms: self.capped_number(
                &raw.max_ms,
                "latency.max_ms",
                default.max_ms,
                |n| n > 0.0,
                "greater than 0",
                LATENCY_CAP,
            ),
            max_ratio: self.capped_number(
                &raw.max_ratio,
                "latency.max_ratio",
                default.max_ratio,
                |n| n >= 1.0,
                "at least 1",
                (MAX_LATENCY_RATIO, ""),
            ),
            min_increase_ms: self.capped_number(
                &raw.min_increase_ms,
                "latency.min_increase_ms",
                default.min_increase_ms,
                |n| n >= 0.0,
                "at least 0",
                LATENCY_CAP,
            ),
            slow_ms: raw.slow_ms.as_ref().map(|_| {
                self.capped_number(
                    &raw.slow_ms,
                    "latency.slow_ms",
                    1.0,
                    |n| n > 0.0,
                    "greater than 0",
                    LATENCY_CAP,
                )
            }),
            max_slow_increase: self.number(
                &raw.max_slow_increase,
                "latency.max_slow_increase",
                default.max_slow_increase,
                |n| (0.0..=1.0).contains(&n),
                "between 0 and 1",
            ),
            warmup: raw
                .warmup
                .as_ref()
                .map(|_| self.duration_or_zero(&raw.warmup, "latency.warmup")),
        }
    }

    pub(super) fn metrics(&mut self, raw: Option<&RawMetrics>) -> MetricsSource {
        let Some(raw) = raw else {
            return MetricsSource::LAMBDA;
        };
        let emf = match &raw.source {
            None => false,
            Some(v) if v.value == "lambda" => false,
            Some(v) if v.value == "emf" => true,
            Some(v) => {
                self.problem(
                    Some(v.referenced),
                    "metrics.source",
                    format!("must be lambda or emf, got {:?}", v.value),
                );
                false
            }
        };
        let period = self.duration(&raw.period, "metrics.period", MINUTE);
        if emf {
            self.emf_source(raw, period)
        } else {
            self.lambda_source(raw, period)
        }
    }

    /// `source: emf`: a high-resolution period, a custom namespace, no `insights`.
    fn emf_source(&mut self, raw: &RawMetrics, period: Duration) -> MetricsSource {
        if let Some(v) = &raw.period {
            if period != MINUTE && !EMF_PERIODS.contains(&period.as_secs()) {
                self.problem(
                    Some(v.referenced),
                    "metrics.period",
                    format!(
                        "must be 1s, 5s, 10s, 20s, 30s or 60s (the periods CloudWatch serves \
                         for high-resolution metrics), got {}",
                        v.value
                    ),
                );
            }
        }
        let namespace = match &raw.namespace {
            None => DEFAULT_NAMESPACE.to_string(),
            Some(v) => {
                let ns = v.value.as_str();
                if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") || ns.starts_with(':')
                {
                    self.problem(
                        Some(v.referenced),
                        "metrics.namespace",
                        format!(
                            "must be a custom CloudWatch namespace of 1-255 characters, not \
                             starting with AWS/ or ':', got {ns:?}"
                        ),
                    );
                }
                ns.to_string()
            }
        };
        if let Some(v) = &raw.insights {
            self.problem(
                Some(v.referenced),
                "metrics.insights",
                "only applies to source lambda (EMF policies read cold starts from the \
                 handler's ColdLatency)",
            );
        }
        MetricsSource::Emf { namespace, period }
    }

    /// `source: lambda`: per-minute metrics in AWS/Lambda, optionally Lambda Insights.
    fn lambda_source(&mut self, raw: &RawMetrics, period: Duration) -> MetricsSource {
        if let Some(v) = &raw.period {
            if parse_duration(&v.value).is_ok() && period != MINUTE {
                self.problem(
                    Some(v.referenced),
                    "metrics.period",
                    format!(
                        "must be 60s with source lambda (AWS/Lambda metrics are per minute; \
                         use source emf for shorter periods), got {}",
                        v.value
                    ),
                );
            }
        }
        if let Some(v) = &raw.namespace {
            self.problem(
                Some(v.referenced),
                "metrics.namespace",
                "only applies to source emf (AWS/Lambda metrics have a fixed namespace)",
            );
        }
        MetricsSource::Lambda {
            insights: self.insights(raw.insights.as_ref()),
        }
    }

    /// `metrics.insights`: `true` or `false` (default `false`).
    fn insights(&mut self, raw: Option<&Spanned<String>>) -> bool {
        match raw.map(|v| (v, v.value.as_str())) {
            None | Some((_, "false")) => false,
            Some((_, "true")) => true,
            Some((v, other)) => {
                self.problem(
                    Some(v.referenced),
                    "metrics.insights",
                    format!(
                        "must be true or false (whether the function runs the Lambda Insights \
                         extension), got {other:?}"
                    ),
                );
                false
            }
        }
    }

    pub(super) fn notify(&mut self, raw: Option<&Spanned<RawNotify>>) -> Option<Notify> {
        let raw = raw?;
        let Some(v) = &raw.value.topic_arn else {
            self.problem(
                Some(raw.referenced),
                "notify.topic_arn",
                "is required when notify is present (remove notify to publish nothing)",
            );
            return None;
        };
        if let Err(why) = check_sns_arn(&v.value) {
            self.problem(
                Some(v.referenced),
                "notify.topic_arn",
                format!(
                    "must be an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:canary-alerts \
                     ({why}), got {:?}",
                    v.value
                ),
            );
        }
        Some(Notify {
            topic_arn: v.value.clone(),
        })
    }
}

const ALL_STATS: [LatencyStat; 7] = [
    LatencyStat::P50,
    LatencyStat::P90,
    LatencyStat::P95,
    LatencyStat::P99,
    LatencyStat::P999,
    LatencyStat::Average,
    LatencyStat::Maximum,
];

fn parse_stat(text: &str) -> Option<LatencyStat> {
    ALL_STATS.into_iter().find(|s| s.cloudwatch_name() == text)
}

/// Checks `arn:<partition>:sns:<region>:<12-digit account>:<topic>`; the reason on failure.
pub(crate) fn check_sns_arn(arn: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, topic] = parts.as_slice() else {
        return Err("expected 6 ':'-separated parts");
    };
    let lower = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if *prefix != "arn" {
        return Err("must start with arn:");
    }
    if !(partition.starts_with("aws") && lower(partition)) {
        return Err("partition must be aws, aws-cn, aws-us-gov, ...");
    }
    if *service != "sns" {
        return Err("service must be sns");
    }
    let region_ok = lower(region)
        && region.split('-').count() >= 3
        && region.split('-').all(|p| !p.is_empty())
        && region
            .rsplit('-')
            .next()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
    if !region_ok {
        return Err("region must look like us-east-1");
    }
    if !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
        return Err("account must be 12 digits");
    }
    let name = topic.strip_suffix(".fifo").unwrap_or(topic);
    let name_ok = !name.is_empty()
        && topic.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(
            "topic name must be 1-256 letters, digits, '-' or '_', optionally ending in .fifo",
        );
    }
    Ok(())
}
