//! Unit tests for policy parsing and validation.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::validate::{check_sns_arn, yaml_path_at};
use super::*;

fn parse(yaml: &str) -> Result<Policy, PolicyErrors> {
    parse_policy(Path::new("p.yaml"), yaml)
}

fn problems(yaml: &str) -> Vec<PolicyProblem> {
    match parse(yaml) {
        Ok(p) => panic!("expected problems, parsed {p:?}"),
        Err(e) => e.0,
    }
}

/// Asserts `yaml` has exactly one problem, on `line`, at `field`, whose message contains `msg`.
#[track_caller]
fn one_problem(yaml: &str, line: u32, field: &str, msg: &str) {
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let p = &found[0];
    assert_eq!(p.line, Some(line), "{p}");
    assert_eq!(p.field, field, "{p}");
    assert!(
        p.message.contains(msg),
        "message {:?} lacks {msg:?}",
        p.message
    );
}

#[test]
fn policy_minimal_file_gets_documented_defaults() {
    let policy = parse("function: notes-get\n").unwrap();
    let mut expected = Policy::with_defaults("notes-get");
    expected.source = PathBuf::from("p.yaml");
    assert_eq!(policy, expected);
    assert_eq!(policy.metrics, MetricsSource::Lambda);
    assert_eq!(policy.notify, None);
}

#[test]
fn policy_full_file_parses_every_key() {
    let yaml = r"
function: notes-create
alias: prod
candidate_alias: next
steps: [1, 2.5, 50, 100]
step_interval: 1m30s
min_requests: 40
errors:
  max_rate: 0.02
  max_increase: 0.01
latency:
  stat: p99.9
  max_ms: 800
  max_ratio: 1.5
  min_increase_ms: 10
confidence: 0.95
on_no_data: rollback
no_data_timeout: 1h
metrics:
  source: emf
  namespace: Custom
  period: 10s
notify:
  topic_arn: arn:aws:sns:eu-west-1:123456789012:alerts.fifo
";
    let p = parse(yaml).unwrap();
    assert_eq!(p.function, "notes-create");
    assert_eq!(p.alias, "prod");
    assert_eq!(p.candidate_alias, "next");
    assert_eq!(p.steps, vec![1.0, 2.5, 50.0, 100.0]);
    assert_eq!(p.step_interval, Duration::from_secs(90));
    assert_eq!(p.min_requests, 40);
    assert_eq!(
        p.errors,
        ErrorRule {
            max_rate: 0.02,
            max_increase: 0.01
        }
    );
    assert_eq!(
        p.latency,
        LatencyRule {
            stat: LatencyStat::P999,
            max_ms: 800.0,
            max_ratio: 1.5,
            min_increase_ms: 10.0
        }
    );
    assert!((p.confidence - 0.95).abs() < 1e-12);
    assert_eq!(p.on_no_data, OnNoData::Rollback);
    assert_eq!(p.no_data_timeout, Duration::from_secs(3600));
    assert_eq!(
        p.metrics,
        MetricsSource::Emf {
            namespace: "Custom".into(),
            period: Duration::from_secs(10)
        }
    );
    assert_eq!(
        p.notify.unwrap().topic_arn,
        "arn:aws:sns:eu-west-1:123456789012:alerts.fifo"
    );
}

#[test]
fn policy_emf_defaults_namespace_and_period() {
    let p = parse("function: f\nmetrics:\n  source: emf\n").unwrap();
    assert_eq!(
        p.metrics,
        MetricsSource::Emf {
            namespace: "NotesApi".into(),
            period: Duration::from_secs(60)
        }
    );
}

#[test]
fn policy_empty_blocks_mean_defaults() {
    let p = parse("function: f\nerrors:\nlatency:\nmetrics:\nnotify:\n").unwrap();
    let mut expected = Policy::with_defaults("f");
    expected.source = PathBuf::from("p.yaml");
    assert_eq!(p, expected);
}

#[test]
fn policy_display_names_file_line_field() {
    let err = parse_policy(
        Path::new("policies/notes-create.yaml"),
        "function: notes-create\nerrors:\n  max_rate: 1.5\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "policies/notes-create.yaml:3: errors.max_rate: must be between 0 and 1, got 1.5"
    );
    let missing = parse_policy(Path::new("a.yaml"), "alias: live\n").unwrap_err();
    assert_eq!(
        missing.to_string(),
        "a.yaml: function: is required: the name of the Lambda function to protect"
    );
}

#[test]
fn policy_collects_all_problems_in_line_order() {
    let yaml = "function: f\nsteps: [50, 20]\nconfidence: 2\nerrors:\n  max_rate: -1\n";
    let err = parse(yaml).unwrap_err();
    let lines: Vec<_> = err.0.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (Some(2), "steps[1]"),
            (Some(3), "confidence"),
            (Some(5), "errors.max_rate")
        ]
    );
    assert_eq!(err.to_string().lines().count(), 3);
}

#[test]
fn policy_empty_file_is_an_error() {
    for text in ["", "\n", "# only a comment\n"] {
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("empty"), "{}", found[0]);
    }
}

#[test]
fn policy_unknown_keys_are_named_with_line() {
    one_problem(
        "function: f\nstep: [10, 100]\n",
        2,
        "step",
        "unknown key `step`",
    );
    one_problem(
        "function: f\nerrors:\n  max_rate: 0.1\n  max_ratex: 0.1\n",
        4,
        "errors.max_ratex",
        "unknown key `max_ratex`; expected one of: max_rate, max_increase",
    );
    one_problem(
        "function: f\nnotify:\n  topic: x\n",
        3,
        "notify.topic",
        "unknown key `topic`",
    );
}

#[test]
fn policy_syntax_errors_have_line() {
    let found = problems("function: f\nsteps: [10, 100\nalias: x\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].line.is_some(), "{}", found[0]);
    one_problem("function: f\nsteps: 5\n", 2, "steps", "must be a list");
    one_problem(
        "function: f\nlatency: 5\n",
        2,
        "latency",
        "must be a mapping",
    );
    one_problem(
        "function: f\nalias: [a, b]\n",
        2,
        "alias",
        "must be a single value",
    );
    one_problem("function: f\nfunction: g\n", 2, "function", "duplicate");
    one_problem("- a\n", 1, "", "must be a mapping");
}

#[test]
fn policy_function_rules() {
    let missing = problems("alias: live\n");
    assert_eq!(missing[0].field, "function");
    assert_eq!(missing[0].line, None);
    one_problem("function: ''\n", 1, "function", "1-64");
    one_problem(
        &format!("function: {}\n", "a".repeat(65)),
        1,
        "function",
        "1-64",
    );
    one_problem("function: notes:live\n", 1, "function", "1-64");
    one_problem(
        "function: arn:aws:lambda:us-east-1:123456789012:function:f\n",
        1,
        "function",
        "not an ARN",
    );
    assert!(parse(&format!("function: {}\n", "a".repeat(64))).is_ok());
}

#[test]
fn policy_alias_rules() {
    one_problem("function: f\nalias: '123'\n", 2, "alias", "all digits");
    one_problem("function: f\nalias: 'a b'\n", 2, "alias", "1-128");
    one_problem(
        &format!("function: f\ncandidate_alias: {}\n", "a".repeat(129)),
        2,
        "candidate_alias",
        "1-128",
    );
    one_problem(
        "function: f\nalias: x\ncandidate_alias: x\n",
        3,
        "candidate_alias",
        "must differ from alias",
    );
    one_problem(
        "function: f\ncandidate_alias: live\n",
        2,
        "candidate_alias",
        "must differ from alias",
    );
    assert!(parse("function: f\nalias: v2-blue_1\n").is_ok());
}

#[test]
fn policy_step_rules() {
    one_problem("function: f\nsteps: []\n", 2, "steps", "at least one step");
    one_problem(
        "function: f\nsteps: [10, 0, 100]\n",
        2,
        "steps[1]",
        "greater than 0 and at most 100, got 0",
    );
    one_problem(
        "function: f\nsteps: [10, 150]\n",
        2,
        "steps[1]",
        "greater than 0 and at most 100, got 150",
    );
    one_problem(
        "function: f\nsteps: [10, 10, 100]\n",
        2,
        "steps[1]",
        "greater than the previous step (10), got 10; steps are strictly increasing",
    );
    one_problem(
        "function: f\nsteps: [10, 50]\n",
        2,
        "steps[1]",
        "last step must be 100, got 50",
    );
    one_problem(
        "function: f\nsteps:\n  - 10\n  - ten\n  - 100\n",
        4,
        "steps[1]",
        "percent of traffic, got \"ten\"",
    );
    assert_eq!(
        parse("function: f\nsteps: [100]\n").unwrap().steps,
        vec![100.0]
    );
}

#[test]
fn policy_duration_rules() {
    one_problem(
        "function: f\nstep_interval: 0s\n",
        2,
        "step_interval",
        "longer than 0s",
    );
    one_problem(
        "function: f\nstep_interval: 120\n",
        2,
        "step_interval",
        "needs a unit",
    );
    one_problem(
        "function: f\nno_data_timeout: 5 minutes\n",
        2,
        "no_data_timeout",
        "got \"5 minutes\"",
    );
    one_problem(
        "function: f\nstep_interval: 30s\n",
        2,
        "step_interval",
        "at least the metrics period (1m)",
    );
    assert!(
        parse("function: f\nstep_interval: 30s\nmetrics: {source: emf, period: 10s}\n").is_ok()
    );
}

#[test]
fn policy_number_rules() {
    one_problem(
        "function: f\nmin_requests: 0\n",
        2,
        "min_requests",
        "whole number of at least 1, got 0",
    );
    one_problem(
        "function: f\nmin_requests: 2.5\n",
        2,
        "min_requests",
        "whole number",
    );
    one_problem(
        "function: f\nerrors:\n  max_increase: 1%\n",
        3,
        "errors.max_increase",
        "must be a number between 0 and 1, got \"1%\"",
    );
    one_problem(
        "function: f\nlatency:\n  max_ms: 0\n",
        3,
        "latency.max_ms",
        "greater than 0, got 0",
    );
    one_problem(
        "function: f\nlatency:\n  max_ratio: 0.9\n",
        3,
        "latency.max_ratio",
        "at least 1, got 0.9",
    );
    one_problem(
        "function: f\nlatency:\n  min_increase_ms: -1\n",
        3,
        "latency.min_increase_ms",
        "at least 0",
    );
    one_problem(
        "function: f\nlatency:\n  max_ms: .inf\n",
        3,
        "latency.max_ms",
        "must be a number",
    );
    for bad in ["0.5", "1", "1.2"] {
        one_problem(
            &format!("function: f\nconfidence: {bad}\n"),
            2,
            "confidence",
            "greater than 0.5 and less than 1",
        );
    }
    assert!(parse("function: f\nerrors: {max_rate: 0, max_increase: 1}\n").is_ok());
}

#[test]
fn policy_enum_rules() {
    one_problem(
        "function: f\nlatency:\n  stat: average\n",
        3,
        "latency.stat",
        "did you mean Average?",
    );
    one_problem(
        "function: f\nlatency:\n  stat: p98\n",
        3,
        "latency.stat",
        "must be one of p50, p90, p95, p99, p99.9, Average, Maximum, got \"p98\"",
    );
    one_problem(
        "function: f\non_no_data: wait\n",
        2,
        "on_no_data",
        "must be hold or rollback",
    );
    one_problem(
        "function: f\nmetrics:\n  source: xray\n",
        3,
        "metrics.source",
        "must be lambda or emf",
    );
}

#[test]
fn policy_metrics_rules() {
    one_problem(
        "function: f\nmetrics:\n  period: 10s\n",
        3,
        "metrics.period",
        "must be 60s with source lambda",
    );
    one_problem(
        "function: f\nmetrics:\n  namespace: X\n",
        3,
        "metrics.namespace",
        "only applies to source emf",
    );
    one_problem(
        "function: f\nmetrics:\n  source: emf\n  period: 7s\n",
        4,
        "metrics.period",
        "1s, 5s, 10s, 20s, 30s or 60s",
    );
    one_problem(
        "function: f\nmetrics:\n  source: emf\n  period: 2m\n",
        4,
        "metrics.period",
        "got 2m",
    );
    one_problem(
        "function: f\nmetrics:\n  source: emf\n  namespace: AWS/Lambda\n",
        4,
        "metrics.namespace",
        "not starting with AWS/",
    );
    for ok in ["1s", "5s", "20s", "30s", "60s", "1m"] {
        assert!(
            parse(&format!(
                "function: f\nmetrics:\n  source: emf\n  period: {ok}\n"
            ))
            .is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn policy_notify_rules() {
    one_problem(
        "function: f\nnotify:\n  topic_arn: arn:aws:sns:us-east-1:1234:alerts\n",
        3,
        "notify.topic_arn",
        "account must be 12 digits",
    );
    one_problem(
        "function: f\nnotify:\n  topic_arn: ''\n",
        3,
        "notify.topic_arn",
        "SNS topic ARN",
    );
    assert!(check_sns_arn("arn:aws:sns:us-east-1:123456789012:canary-alerts").is_ok());
    assert!(check_sns_arn("arn:aws-us-gov:sns:us-gov-west-1:123456789012:a_b").is_ok());
    assert!(check_sns_arn("arn:aws-cn:sns:cn-north-1:123456789012:t.fifo").is_ok());
    assert!(check_sns_arn(&format!(
        "arn:aws:sns:us-east-1:123456789012:{}",
        "a".repeat(256)
    ))
    .is_ok());
    for bad in [
        "arn:aws:sqs:us-east-1:123456789012:q",
        "arn:aws:sns:us-east-1:123456789012:",
        "arn:aws:sns:us-east-1:123456789012:a.b",
        "arn:aws:sns:useast1:123456789012:a",
        "arn:aws:sns:us-east-1:12345678901a:a",
        "arn:gcp:sns:us-east-1:123456789012:a",
        "arn:aws:sns:us-east-1:123456789012:a:extra",
        "notarn:aws:sns:us-east-1:123456789012:a",
    ] {
        assert!(check_sns_arn(bad).is_err(), "{bad}");
    }
    assert!(check_sns_arn(&format!(
        "arn:aws:sns:us-east-1:123456789012:{}",
        "a".repeat(257)
    ))
    .is_err());
}

#[test]
fn policy_notify_without_topic() {
    one_problem(
        "function: f\nnotify:\n  topic_arn:\n",
        3,
        "notify.topic_arn",
        "is required when notify is present",
    );
}

#[test]
fn policy_duration_parser_examples() {
    let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
    assert_eq!(secs("90s"), Ok(90));
    assert_eq!(secs("2m"), Ok(120));
    assert_eq!(secs("1h"), Ok(3600));
    assert_eq!(secs("1m30s"), Ok(90));
    assert_eq!(secs("1h0m5s"), Ok(3605));
    assert_eq!(secs("0s"), Ok(0));
    for bad in [
        "",
        "90",
        "1.5m",
        "2 m",
        "30s1m",
        "1m1m",
        "5ms",
        "m",
        "-1s",
        "1d",
        "99999999999999999999h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    assert_eq!(format_duration(Duration::from_secs(3725)), "1h2m5s");
    assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

proptest! {
    #[test]
    fn policy_duration_format_parse_roundtrip(secs in 0u64..10_000_000_000) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn policy_parse_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }
}

#[test]
fn policy_yaml_path_heuristic() {
    let text =
        "function: f\nerrors:\n  max_rate: x\nsteps:\n- 1\n- 2\nlatency:\n  # c\n\n  stat: p\n";
    assert_eq!(yaml_path_at(text, 1, 11), "function");
    assert_eq!(yaml_path_at(text, 3, 13), "errors.max_rate");
    assert_eq!(yaml_path_at(text, 6, 3), "steps");
    assert_eq!(yaml_path_at(text, 10, 9), "latency.stat");
    assert_eq!(yaml_path_at(text, 99, 1), "");
    let list = "scenarios:\n  - name: a\n    stable:\n      errors: 1\n  - name: b\n    x: 1\n    candidate:\n      eror: 2\n";
    assert_eq!(yaml_path_at(list, 2, 5), "scenarios[0].name");
    assert_eq!(yaml_path_at(list, 4, 7), "scenarios[0].stable.errors");
    assert_eq!(yaml_path_at(list, 6, 5), "scenarios[1].x");
    assert_eq!(yaml_path_at(list, 8, 7), "scenarios[1].candidate.eror");
    let flush = "scenarios:\n- name: a\n- name: b\n  build: c\n";
    assert_eq!(yaml_path_at(flush, 4, 3), "scenarios[1].build");
}

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "canary-policy-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn policy_load_dir_duplicates_name_both_files() {
    let dir = temp_dir("dup");
    std::fs::write(dir.join("a.yaml"), "function: notes-get\n").unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "# comment\nfunction: notes-get\nalias: live\n",
    )
    .unwrap();
    std::fs::write(dir.join("c.yaml"), "function: notes-get\nalias: beta\n").unwrap();
    std::fs::write(dir.join("d.yaml"), "function: notes-list\nsteps: [5]\n").unwrap();
    std::fs::write(dir.join("schema.json"), "{}").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
    let report = load_dir(&dir);
    let names: Vec<_> = report
        .policies
        .iter()
        .map(|p| (p.function.as_str(), p.alias.as_str()))
        .collect();
    assert_eq!(names, vec![("notes-get", "live"), ("notes-get", "beta")]);
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    let dup = &report.problems[0];
    assert_eq!(dup.file, dir.join("b.yml"));
    assert_eq!(dup.line, Some(2));
    assert_eq!(dup.field, "function");
    assert!(
        dup.message
            .contains(&dir.join("a.yaml").display().to_string()),
        "{dup}"
    );
    assert_eq!(report.problems[1].file, dir.join("d.yaml"));
    assert!(!report.is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_load_dir_missing_and_empty() {
    let dir = temp_dir("empty");
    let report = load_dir(&dir);
    assert!(report.policies.is_empty());
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].message.starts_with("no policy files in"));
    std::fs::remove_dir_all(&dir).unwrap();
    let report = load_dir(&dir);
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0]
        .message
        .contains("cannot read policy directory"));
}

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn policy_shipped_policies_load_cleanly() {
    let report = load_dir(&policies_dir());
    assert!(report.is_ok(), "{}", PolicyErrors(report.problems.clone()));
    let mut functions: Vec<_> = report
        .policies
        .iter()
        .map(|p| p.function.as_str())
        .collect();
    functions.sort_unstable();
    assert_eq!(
        functions,
        [
            "notes-create",
            "notes-delete",
            "notes-get",
            "notes-list",
            "notes-update"
        ]
    );
    for p in &report.policies {
        let text = std::fs::read_to_string(&p.source).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=./schema.json\n"),
            "{} must start with the schema comment",
            p.source.display()
        );
        // A healthy rollout (each step passes at its first look) reaches 100% in ≤ 10 minutes.
        let waits = u32::try_from(p.steps.len() - 1).unwrap();
        assert!(
            p.step_interval * waits <= Duration::from_secs(600),
            "{}",
            p.source.display()
        );
    }
}

#[test]
fn policy_schema_matches_committed_file() {
    let path = policies_dir().join("schema.json");
    let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the policy types; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p canary-agent schema` and commit the result",
        path.display()
    );
}

#[test]
fn policy_schema_describes_keys() {
    let schema = json_schema();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    assert_eq!(schema["required"], serde_json::json!(["function"]));
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "function",
        "alias",
        "candidate_alias",
        "steps",
        "step_interval",
        "min_requests",
        "errors",
        "latency",
        "confidence",
        "on_no_data",
        "no_data_timeout",
        "metrics",
        "notify",
    ] {
        assert!(props.contains_key(key), "{key}");
        assert!(
            props[key]["description"].is_string(),
            "{key} lacks a description"
        );
    }
}
