//! The scheduled agent's own metrics, as CloudWatch embedded metric format (EMF) lines on
//! stdout: CloudWatch Logs turns each into datapoints of namespace [`NAMESPACE`], dimensions
//! `Function` and `Alias`, which the agent stack's dashboard graphs. No API call, no extra
//! permission: the lines go to the agent's own log group.

use crate::rollout::Action;
use crate::tick::Outcome;

/// The agent's metric namespace.
pub const NAMESPACE: &str = "LambdaCanary";

/// One EMF line per outcome, stamped `now_ms` (epoch milliseconds):
/// - `CanaryWeight`: the canary's percent of traffic after the tick (0 without a canary);
/// - `Moved`: 1 when the tick started, stepped or promoted a canary (or ended a bake);
/// - `RolledBack`: 1 when it rolled the alias back;
/// - `Held`: 1 when a running canary was held;
/// - `Failed`: 1 when the policy failed (an error, or a page SNS did not take).
///
/// When the tick judged a canary (or a bake), a second directive carries what the judge saw since
/// it started, whatever the policy's metrics source (the handlers' EMF 5xx are not Lambda
/// `Errors`, so Lambda's own metrics alone would hide them):
/// - `Canary5xxRate`, `Baseline5xxRate`: 5xx over requests, in percent (only a side with requests);
/// - `CanaryLatency`, `BaselineLatency`: the policy's latency statistic in milliseconds (only a
///   side with a value).
///
/// Each line also carries `decision`, the line `canary run` prints, for Logs Insights. An alias
/// not read this tick (idle, waiting for its turn) has no line.
#[must_use]
pub fn lines(outs: &[Outcome], now_ms: u64) -> Vec<String> {
    outs.iter()
        .filter(|o| !o.skipped)
        .map(|o| line(o, now_ms).to_string())
        .collect()
}

fn line(o: &Outcome, now_ms: u64) -> serde_json::Value {
    let written = o
        .decision
        .as_ref()
        .filter(|_| o.wrote)
        .and_then(|d| d.next.as_ref());
    let weight = written
        .or(o.before.as_ref())
        .and_then(|s| s.canary)
        .map_or(0.0, |c| c.weight);
    let action = o
        .decision
        .as_ref()
        .map(|d| &d.action)
        .filter(|_| o.error.is_none());
    let moved = matches!(
        action,
        Some(
            Action::Start { .. }
                | Action::Step { .. }
                | Action::Promote { .. }
                | Action::Baked { .. }
        )
    );
    let rolled_back = matches!(action, Some(Action::Rollback { .. }));
    let running = o.before.as_ref().is_some_and(|s| s.canary.is_some());
    let held = running && matches!(action, Some(Action::Hold(_)));
    let flag = |b: bool| u8::from(b);
    let judged = judged(o);
    let mut directives = vec![directive(&[
        ("CanaryWeight", "Percent"),
        ("Moved", "Count"),
        ("RolledBack", "Count"),
        ("Held", "Count"),
        ("Failed", "Count"),
    ])];
    if !judged.is_empty() {
        let names: Vec<(&str, &str)> = judged.iter().map(|&(n, u, _)| (n, u)).collect();
        directives.push(directive(&names));
    }
    let mut v = serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": directives,
        },
        "Function": o.function,
        "Alias": o.alias,
        "CanaryWeight": weight,
        "Moved": flag(moved),
        "RolledBack": flag(rolled_back),
        "Held": flag(held),
        "Failed": flag(o.failed()),
        "decision": o.line(),
    });
    for (name, _, value) in judged {
        v[name] = value.into();
    }
    v
}

/// One EMF metric directive of [`NAMESPACE`] under `Function` and `Alias`.
fn directive(metrics: &[(&str, &str)]) -> serde_json::Value {
    let metrics: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    serde_json::json!({
        "Namespace": NAMESPACE,
        "Dimensions": [["Function", "Alias"]],
        "Metrics": metrics,
    })
}

/// What the judge saw this tick, as `(name, unit, value)`: each side's 5xx rate and latency
/// when it has them. Empty when nothing was judged.
fn judged(o: &Outcome) -> Vec<(&'static str, &'static str, f64)> {
    let Some(j) = &o.judgement else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (totals, rate, latency) in [
        (&j.canary, "Canary5xxRate", "CanaryLatency"),
        (&j.baseline, "Baseline5xxRate", "BaselineLatency"),
    ] {
        if let Some(r) = totals.error_rate().filter(|r| r.is_finite()) {
            out.push((rate, "Percent", r * 100.0));
        }
        if let Some(ms) = totals.latency_ms.filter(|l| l.is_finite()) {
            out.push((latency, "Milliseconds", ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::rollout::{AliasState, Decision, Record, Routing};

    fn outcome(before: Option<Routing>, action: Action, next: Option<Routing>) -> Outcome {
        let state = |canary| AliasState {
            stable: 1,
            canary,
            candidate: Some(2),
            record: Record::default(),
        };
        let mut o = Outcome::new(&Policy::with_defaults("f"));
        o.before = Some(state(before));
        o.decision = Some(Decision {
            action,
            next: Some(state(next)),
            problems: Vec::new(),
        });
        o.wrote = true;
        o
    }

    fn parsed(o: &Outcome) -> serde_json::Value {
        let text = lines(std::slice::from_ref(o), 1_700_000_000_000).remove(0);
        serde_json::from_str(&text).expect("one JSON object per line")
    }

    #[test]
    fn a_step_publishes_the_new_weight_and_one_move_under_the_alias_dimensions() {
        let before = Routing {
            version: 2,
            weight: 5.0,
        };
        let after = Routing {
            version: 2,
            weight: 25.0,
        };
        let o = outcome(
            Some(before),
            Action::Step {
                version: 2,
                step: 1,
                weight: 25.0,
            },
            Some(after),
        );
        let v = parsed(&o);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Function"
        );
        assert_eq!(
            (v["Function"].as_str(), v["Alias"].as_str()),
            (Some("f"), Some("live"))
        );
        assert_eq!(v["CanaryWeight"], 25.0);
        assert_eq!(
            (
                v["Moved"].as_u64(),
                v["RolledBack"].as_u64(),
                v["Held"].as_u64()
            ),
            (Some(1), Some(0), Some(0))
        );
        assert!(
            v["decision"].as_str().is_some_and(|d| d.contains("25")),
            "{v}"
        );
        assert_every_declared_metric_is_on_the_line(&v);
        // Nothing was judged: no directive for the judge's numbers.
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"].as_array().map(Vec::len),
            Some(1)
        );
    }

    /// Every metric a directive names is a number on the line (else CloudWatch drops it).
    fn assert_every_declared_metric_is_on_the_line(v: &serde_json::Value) {
        for d in v["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives")
        {
            for m in d["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("name");
                assert!(v[name].is_number(), "{name} missing from {v}");
            }
        }
    }

    #[test]
    fn a_judged_tick_publishes_what_the_judge_saw_of_each_side_whatever_the_source() {
        let running = Routing {
            version: 2,
            weight: 25.0,
        };
        let mut o = outcome(Some(running), Action::Hold("judging".into()), None);
        let mut j = crate::judge::Judgement::fixture(crate::judge::Verdict::Healthy, Some(0));
        j.canary = crate::judge::Totals {
            requests: 40.0,
            errors: 2.0,
            latency_ms: Some(120.0),
        };
        j.baseline = crate::judge::Totals {
            requests: 400.0,
            errors: 0.0,
            latency_ms: None,
        };
        o.judgement = Some(j);
        let v = parsed(&o);
        assert_every_declared_metric_is_on_the_line(&v);
        let judged: Vec<&str> = v["_aws"]["CloudWatchMetrics"][1]["Metrics"]
            .as_array()
            .expect("a second directive")
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(
            judged,
            ["Canary5xxRate", "CanaryLatency", "Baseline5xxRate"]
        );
        assert_eq!(
            (
                v["Canary5xxRate"].as_f64(),
                v["Baseline5xxRate"].as_f64(),
                v["CanaryLatency"].as_f64()
            ),
            (Some(5.0), Some(0.0), Some(120.0))
        );
        // A side without a latency value publishes none (not a zero the dashboard would draw).
        assert!(v.get("BaselineLatency").is_none(), "{v}");
    }

    #[test]
    fn a_rollback_zeroes_the_weight_and_a_failed_write_keeps_the_weight_as_read() {
        let running = Routing {
            version: 2,
            weight: 25.0,
        };
        let rollback = Action::Rollback {
            to: 1,
            rejected: Some(2),
            why: "5xx".into(),
        };
        let v = parsed(&outcome(Some(running), rollback.clone(), None));
        assert_eq!(
            (v["CanaryWeight"].as_f64(), v["RolledBack"].as_u64()),
            (Some(0.0), Some(1))
        );
        let mut failed = outcome(Some(running), rollback, None);
        failed.wrote = false;
        failed.error = Some("UpdateAlias throttled".into());
        let v = parsed(&failed);
        assert_eq!(v["CanaryWeight"].as_f64(), Some(25.0));
        assert_eq!(
            (v["RolledBack"].as_u64(), v["Failed"].as_u64()),
            (Some(0), Some(1))
        );
        let held = outcome(Some(running), Action::Hold("waiting".into()), None);
        assert_eq!(parsed(&held)["Held"].as_u64(), Some(1));
        let idle = outcome(None, Action::Hold("no candidate".into()), None);
        assert_eq!(parsed(&idle)["Held"].as_u64(), Some(0));
    }
}

#[cfg(test)]
mod dashboard {
    //! The agent stack's dashboard graphs only metrics these lines publish.

    use super::*;

    /// The dashboard body of `agent/template.yaml` as JSON, with every `${…}` substitution
    /// replaced by a plain word.
    fn dashboard() -> serde_json::Value {
        let template = include_str!("../../template.yaml");
        let start = template
            .find("DashboardBody: !Sub")
            .expect("the template has a dashboard");
        let body: Vec<&str> = template[start..]
            .lines()
            .skip(2)
            .take_while(|l| !l.trim_start().starts_with("- ErrorsAlarm"))
            .collect();
        let mut text = body.join("\n");
        while let Some(open) = text.find("${") {
            let close = open + text[open..].find('}').expect("a closed substitution");
            text.replace_range(open..=close, "X");
        }
        serde_json::from_str(&text).expect("the dashboard body is JSON")
    }

    #[test]
    fn every_agent_metric_the_dashboard_graphs_is_one_the_agent_publishes() {
        let mut o = Outcome::new(&crate::policy::Policy::with_defaults("f"));
        let totals = crate::judge::Totals {
            requests: 10.0,
            errors: 1.0,
            latency_ms: Some(80.0),
        };
        let mut j = crate::judge::Judgement::fixture(crate::judge::Verdict::Healthy, None);
        (j.canary, j.baseline) = (totals, totals);
        o.judgement = Some(j);
        let line: serde_json::Value =
            serde_json::from_str(&lines(&[o], 0).remove(0)).expect("JSON");
        let widgets = dashboard()["widgets"].as_array().expect("widgets").clone();
        let mut graphed = Vec::new();
        for w in &widgets {
            for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
                let expression = m[0]["expression"].as_str().unwrap_or_default();
                if let Some(rest) = expression.split("{LambdaCanary,").nth(1) {
                    let name = rest
                        .split("MetricName=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .expect("a metric name");
                    graphed.push(name.to_string());
                }
            }
        }
        assert!(graphed.len() >= 8, "{graphed:?}");
        for name in &graphed {
            assert!(
                line[name.as_str()].is_number(),
                "{name} is graphed, not published"
            );
        }
    }
}
