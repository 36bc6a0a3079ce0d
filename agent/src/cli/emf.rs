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
    let metric = |name: &str, unit: &str| serde_json::json!({"Name": name, "Unit": unit});
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Alias"]],
                "Metrics": [
                    metric("CanaryWeight", "Percent"),
                    metric("Moved", "Count"),
                    metric("RolledBack", "Count"),
                    metric("Held", "Count"),
                    metric("Failed", "Count"),
                ],
            }],
        },
        "Function": o.function,
        "Alias": o.alias,
        "CanaryWeight": weight,
        "Moved": flag(moved),
        "RolledBack": flag(rolled_back),
        "Held": flag(held),
        "Failed": flag(o.failed()),
        "decision": o.line(),
    })
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
        // Every metric the directive names is a number on the line (else CloudWatch drops it).
        for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
        {
            let name = m["Name"].as_str().expect("name");
            assert!(v[name].is_number(), "{name} missing from {v}");
        }
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
