//! Benchmark tests: the contenders on built-in and scenario-file scenarios, and the JSON rows.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::policy::Policy;

#[test]
fn ours_rolls_back_a_failing_build_near_the_floor_and_promotes_a_healthy_one() {
    let judges = builtin::judges(&[]);
    let s = builtin::scenarios();
    let label = judges[0].label();
    let bad = measure(&judges[0], &s[0], 20, 1, label.clone());
    assert_eq!(bad.rolled_back, 1.0);
    // The floor is the first minute's requests; the first period is often partial.
    assert!(bad.failed.0 <= 1.3 * bad.floor, "{bad:?}");
    let good = measure(&judges[0], &s[5], 20, 1, label);
    assert_eq!(good.rolled_back, 0.0, "{good:?}");
    // Three 5-minute steps before 100%.
    assert!(good.minutes.0 < 20.0, "{good:?}");
}

#[test]
fn runs_inside_a_tokio_runtime_do_not_stall_on_its_budget() {
    // The `canary` binary benchmarks inside a runtime; an hour of ticks must still finish.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let judges = builtin::judges(&[]);
    let s = &builtin::scenarios()[7];
    let row = rt.block_on(async { measure(&judges[0], s, 2, 1, judges[0].label()) });
    assert_eq!(row.runs, 2);
}

/// The production scenario whose name starts with `prefix`.
fn production(prefix: &str) -> Scenario {
    let text = include_str!("../../../scenarios/production.yaml");
    let set = crate::sim::scenario::parse_scenarios(std::path::Path::new("production.yaml"), text)
        .unwrap();
    set.into_iter()
        .find(|s| s.name.starts_with(prefix))
        .unwrap()
}

#[test]
fn lambda_insights_lets_lambda_metrics_catch_a_slower_init_and_pass_healthy_warm_up() {
    let slower = &production("slower init");
    let healthy = &production("cold starts after each weight increase, healthy");
    let plain = Judge::ours("defaults".into(), default_policy());
    let mut with_insights = default_policy();
    with_insights.metrics = crate::policy::MetricsSource::Lambda { insights: true };
    assert!(lowers_floor(&with_insights));
    let insights = Judge::ours("insights".into(), with_insights);
    // AWS/Lambda alone cannot see a slower init; with init_duration it is caught.
    let blind = measure(&plain, slower, 20, 1, plain.label());
    assert_eq!(blind.rolled_back, 0.0, "{blind:?}");
    let caught = measure(&insights, slower, 20, 1, insights.label());
    assert_eq!(caught.rolled_back, 1.0, "{caught:?}");
    let warm_up = measure(&insights, healthy, 20, 1, insights.label());
    assert_eq!(warm_up.rolled_back, 0.0, "{warm_up:?}");
}

#[test]
fn a_canary_that_cannot_finish_at_a_trickle_has_told_on_call_why() {
    let trickle = &production("very low traffic");
    let defaults = Judge::ours("defaults".into(), default_policy());
    let row = measure(&defaults, trickle, 10, 1, defaults.label());
    assert_eq!((row.unfinished, row.told), (1.0, 1.0), "{row:?}");
    let text = report::scenario_text(&[row], std::slice::from_ref(trickle), 10, 1);
    assert!(
        text.contains("in 100.0% of its unfinished runs on-call was told why a step waits"),
        "{text}"
    );
}

#[test]
fn a_canary_holds_through_a_shared_outage_and_a_bake_rollback_in_one_is_lifted() {
    let outage = &production("shared outage over the bake");
    // The defaults are still in their canary when the outage begins (minute 10): the canary
    // holds its step through it and is promoted after it, with no rollback to lift.
    let defaults = Judge::ours("defaults".into(), default_policy());
    let row = measure(&defaults, outage, 20, 1, defaults.label());
    assert_eq!((row.rolled_back, row.promoted), (0.0, 1.0), "{row:?}");
    assert_eq!(row.lifted, 0.0, "{row:?}");
    assert!(row.minutes.0 >= 30.0, "promoted after the outage: {row:?}");
    // The shipped policy is at 100% by then: its bake rolls the build back during the outage,
    // and the recheck lifts the rollback (the version before fails alike).
    let shipped = Judge::ours("shipped".into(), crate::cli::example_policy());
    let row = measure(&shipped, outage, 20, 1, shipped.label());
    assert_eq!((row.rolled_back, row.promoted), (0.0, 1.0), "{row:?}");
    assert!(row.lifted >= 0.9, "{row:?}");
}

#[test]
fn scenario_judges_have_the_documented_ids() {
    let mut shipped = Policy::with_defaults("notes-create");
    shipped.source = std::path::PathBuf::from("policies/notes-create.yaml");
    let ids: Vec<String> = scenario_judges(&[shipped]).iter().map(Judge::id).collect();
    assert_eq!(
        ids,
        [
            "lambda-canary:defaults",
            "lambda-canary:notes-create.yaml",
            "codedeploy",
            "flagger",
            "kayenta"
        ]
    );
}

const FIELDS: [&str; 11] = [
    "scenario",
    "build",
    "judge",
    "runs",
    "rolled_back",
    "promoted",
    "unfinished",
    "failed_median",
    "failed_p95",
    "minutes_median",
    "minutes_p95",
];

#[test]
fn json_rows_carry_the_documented_fields_and_run_count() {
    let yaml = "scenarios:\n  - name: broken\n    build: bad\n    traffic: {rate: 10}\n    candidate: {errors: 1}\n  - name: quiet\n    build: healthy\n    minutes: 1\n    traffic: {rate: 0.05}\n";
    let scenarios =
        crate::sim::scenario::parse_scenarios(std::path::Path::new("s.yaml"), yaml).unwrap();
    let judges = scenario_judges(&[]);
    let rows = run_all(&scenarios, &judges, 3, 1, Judge::id);
    let text = report::json(&rows);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let objects = value.as_array().unwrap();
    assert_eq!(objects.len(), 2 * judges.len());
    let mut expected = FIELDS.to_vec();
    expected.sort_unstable();
    for o in objects {
        let mut keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(o["runs"], 3);
        let shares = ["rolled_back", "promoted", "unfinished"].map(|k| o[k].as_f64().unwrap());
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    // The fields appear in the documented order.
    let positions: Vec<usize> = FIELDS
        .iter()
        .map(|f| text.find(&format!("\"{f}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    let broken = &objects[0];
    assert_eq!(broken["scenario"], "broken");
    assert_eq!(broken["build"], "bad");
    assert_eq!(broken["judge"], "lambda-canary:defaults");
    assert_eq!(broken["rolled_back"], 1.0);
    // Nobody decides within one minute at 0.05 req/s: every run unfinished, minutes null.
    for o in &objects[judges.len()..] {
        assert_eq!(o["build"], "healthy");
        assert_eq!(o["unfinished"], 1.0, "{o}");
        assert!(o["minutes_median"].is_null() && o["minutes_p95"].is_null());
    }
}

#[test]
fn text_rows_show_unfinished_runs() {
    let mut s = builtin::scenarios()[7].clone();
    s.minutes = 1;
    let judges = scenario_judges(&[]);
    let rows = run_all(std::slice::from_ref(&s), &judges[..1], 2, 1, Judge::id);
    let text = report::scenario_text(&rows, &[s], 2, 1);
    assert!(text.contains("| unfinished |"), "{text}");
    assert!(
        text.contains("| lambda-canary:defaults | 0.0% | 0.0% | 100.0% |"),
        "{text}"
    );
}

#[test]
fn equal_footing_puts_every_judge_on_60_s_lambda_metrics_and_a_10_percent_first_step() {
    let mut shipped = Policy::with_defaults("notes-create");
    shipped.source = std::path::PathBuf::from("policies/notes-create.yaml");
    shipped.steps = vec![5.0, 25.0, 50.0, 100.0];
    shipped.metrics = crate::policy::MetricsSource::Emf {
        namespace: "NotesApi".to_string(),
        period: std::time::Duration::from_secs(10),
    };
    let equal = equal_footing(&shipped);
    assert_eq!(equal.steps, [10.0, 25.0, 50.0, 100.0]);
    assert_eq!(equal.metrics, crate::policy::MetricsSource::LAMBDA);
    assert!(lowers_floor(&shipped) && !lowers_floor(&default_policy()));
    let judges = equal_footing_judges(std::slice::from_ref(&shipped));
    let ids: Vec<String> = judges.iter().map(Judge::id).collect();
    assert_eq!(
        ids,
        [
            "lambda-canary:defaults@equal-footing",
            "lambda-canary:notes-create.yaml@equal-footing",
            "codedeploy@equal-footing",
            "flagger@equal-footing",
            "kayenta@equal-footing"
        ]
    );
    assert!(judges
        .iter()
        .all(|j| j.first_weight() == 10.0 && j.period() == 60));
    assert!(judges
        .iter()
        .all(|j| j.tick_secs() == 60 && j.delay() == 60));
    // What the floor-lowering features add: only the shipped policy has any; its own first step
    // on the same 60 s metrics.
    let features = feature_judges(&[shipped]);
    assert_eq!(features.len(), 1);
    assert_eq!(
        features[0].id(),
        "lambda-canary:notes-create.yaml@equal-footing+own-first-step"
    );
    assert_eq!(features[0].first_weight(), 5.0);
    assert_eq!(features[0].period(), 60);
}
