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
    assert_eq!(policy.metrics, MetricsSource::LAMBDA);
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
            min_increase_ms: 10.0,
            slow_ms: None,
            max_slow_increase: crate::policy::DEFAULT_MAX_SLOW_INCREASE,
            warmup: None,
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
fn policy_insights_adds_cold_starts_to_lambda_metrics_and_nothing_else() {
    let p = parse("function: f\nmetrics:\n  insights: true\n").unwrap();
    assert_eq!(p.metrics, MetricsSource::Lambda { insights: true });
    assert!(p.metrics.judges_cold_starts());
    assert_eq!(crate::judge::tests(&p), 5.0);
    let off = parse("function: f\nmetrics:\n  source: lambda\n  insights: false\n").unwrap();
    assert_eq!(off.metrics, MetricsSource::LAMBDA);
    assert!(!off.metrics.judges_cold_starts());
    assert_eq!(crate::judge::tests(&off), 4.0);

    let bad = parse("function: f\nmetrics:\n  insights: yes\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        bad,
        "p.yaml:3: metrics.insights: must be true or false (whether the function runs the Lambda \
         Insights extension), got \"yes\""
    );
    let emf = parse("function: f\nmetrics:\n  source: emf\n  insights: true\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        emf,
        "p.yaml:4: metrics.insights: only applies to source lambda (EMF policies read cold \
         starts from the handler's ColdLatency)"
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
fn policy_durations_are_bounded_to_seven_days() {
    for (key, value) in [
        ("step_interval", "9223372036854775807s"),
        ("step_interval", "18446744073709551615s"),
        ("step_interval", "168h1s"),
        ("no_data_timeout", "9223372036854775807s"),
        ("no_data_timeout", "169h"),
    ] {
        let text = format!("function: f\n{key}: {value}\n");
        one_problem(
            &text,
            2,
            key,
            &format!("must be at most 168h (7 days), got {value}"),
        );
        assert_eq!(
            problems(&text)[0].to_string(),
            format!("p.yaml:2: {key}: must be at most 168h (7 days), got {value}")
        );
    }
    // Too large for any duration at all: still one problem with file, line and field.
    one_problem(
        "function: f\nstep_interval: 18446744073709551616s\n",
        2,
        "step_interval",
        "number too large",
    );
    one_problem(
        "function: f\nmetrics: {source: emf, period: 9223372036854775807s}\n",
        2,
        "metrics.period",
        "at most 168h",
    );
    let longest = parse("function: f\nstep_interval: 168h\nno_data_timeout: 167h59m60s\n").unwrap();
    assert_eq!(longest.step_interval, MAX_DURATION);
    assert_eq!(longest.no_data_timeout, MAX_DURATION);
    assert_eq!(MAX_DURATION, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn policy_numbers_are_bounded() {
    one_problem(
        "function: f\nmin_requests: 1000000001\n",
        2,
        "min_requests",
        "at most 1000000000, got 1000000001",
    );
    one_problem(
        "function: f\nmin_requests: 18446744073709551616\n",
        2,
        "min_requests",
        "at most 1000000000",
    );
    one_problem(
        "function: f\nlatency:\n  max_ms: 900001\n",
        3,
        "latency.max_ms",
        "at most 900000 (15 minutes",
    );
    one_problem(
        "function: f\nlatency:\n  max_ratio: 1e300\n",
        3,
        "latency.max_ratio",
        "at most 1000, got 1e300",
    );
    one_problem(
        "function: f\nlatency:\n  min_increase_ms: 1e9\n",
        3,
        "latency.min_increase_ms",
        "at most 900000",
    );
    let at_bounds = parse(
        "function: f\nmin_requests: 1000000000\nlatency: {max_ms: 900000, max_ratio: 1000, \
         min_increase_ms: 900000}\n",
    )
    .unwrap();
    assert_eq!(at_bounds.min_requests, MAX_MIN_REQUESTS);
    assert_eq!(
        (
            at_bounds.latency.max_ms,
            at_bounds.latency.max_ratio,
            at_bounds.latency.min_increase_ms
        ),
        (MAX_LATENCY_MS, MAX_LATENCY_RATIO, MAX_LATENCY_MS)
    );
}

/// A policy built in code (not parsed) with durations no file may hold: everything downstream
/// still sees them as at most [`MAX_DURATION`], never negative, never overflowing.
#[test]
fn policy_oversized_durations_stay_bounded_downstream() {
    use crate::judge::{judge, Observations, Verdict};
    use crate::rollout::{decide, Action, AliasState, Record, Routing};

    let week = i64::try_from(MAX_DURATION.as_secs()).unwrap();
    for secs in [
        u64::MAX,
        i64::MAX.unsigned_abs(),
        MAX_DURATION.as_secs() + 1,
    ] {
        let mut p = Policy::with_defaults("f");
        p.step_interval = Duration::from_secs(secs);
        p.no_data_timeout = Duration::from_secs(secs);
        p.metrics = MetricsSource::Emf {
            namespace: "N".into(),
            period: Duration::from_secs(secs),
        };
        assert_eq!(p.step_interval_secs(), week);
        assert_eq!(p.no_data_timeout_secs(), week);
        assert_eq!(p.metrics.period_secs(), week);

        // The judge multiplies the interval (this overflowed for i64::MAX seconds).
        let mut j = judge(&p, &Observations::default());
        // A healthy canary one minute into its step must wait, not step at once (u64::MAX
        // seconds was cast to -1 s).
        j.verdict = Verdict::Healthy;
        j.last_canary_traffic = Some(1_000_000);
        let state = AliasState {
            stable: 1,
            canary: Some(Routing {
                version: 2,
                weight: p.steps[0],
            }),
            candidate: Some(2),
            record: Record {
                canary: Some(2),
                since: 1_000_000 - 60,
                started: 1_000_000 - 60,
                ..Record::default()
            },
        };
        let d = decide(&state, &p, Some(&j), None, 1_000_000).unwrap();
        assert!(
            matches!(d.action, Action::Hold(_)),
            "{secs}: {:?}",
            d.action
        );
    }
    let mut zero = Policy::with_defaults("f");
    zero.metrics = MetricsSource::Emf {
        namespace: "N".into(),
        period: Duration::ZERO,
    };
    assert_eq!(zero.metrics.period_secs(), 1);
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

/// Text that looks like a duration: digit runs (up to 25 digits, beyond u64) with h/m/s and a few
/// near misses.
fn durationish() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9]{1,25}h)?([0-9]{1,25}m)?([0-9]{1,25}s)?",
        "[0-9]{0,25}[hmsd ]{0,3}[0-9]{0,5}[hms]?",
        Just("18446744073709551615s".to_string()),
        Just("9223372036854775807s".to_string()),
        Just("5124095576030431h".to_string()),
        Just("307445734561825860m".to_string()),
    ]
}

/// A value for a policy key: durations, integers, floats, YAML specials, known words, lists, maps
/// and arbitrary text (which may well break the YAML; that must be an error, not a panic).
fn valueish() -> impl Strategy<Value = String> {
    prop_oneof![
        durationish(),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        (0.0f64..2.0).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            ".inf",
            "-.inf",
            ".nan",
            "1e400",
            "-0",
            "0",
            "1",
            "100",
            "~",
            "null",
            "''",
            "{}",
            "[]",
            "hold",
            "rollback",
            "p99",
            "p99.9",
            "Average",
            "emf",
            "lambda",
            "live",
            "candidate",
            "notes-get",
            "NotesApi",
            "AWS/Lambda",
            "60s",
            "10s",
            "0.99",
            "1.3",
            "arn:aws:sns:us-east-1:123456789012:canary-alerts",
        ])
        .prop_map(str::to_string),
        prop::collection::vec(
            prop_oneof![
                (0.0f64..=100.0).prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| n.to_string()),
                Just("100".to_string()),
            ],
            0..6
        )
        .prop_map(|items| format!("[{}]", items.join(", "))),
        "\\PC{0,20}",
    ]
}

/// `key: value` (or nothing): mostly a value from `typical`, rarely any [`valueish`] one.
fn entry(
    key: &'static str,
    typical: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<String> {
    prop::option::weighted(0.5, prop_oneof![24 => typical, 1 => valueish()])
        .prop_map(move |v| v.map_or_else(String::new, |v| format!("{key}: {v}\n")))
        .boxed()
}

/// `parent:` with some of its sub-keys indented under it (or nothing).
fn block(parent: &'static str, children: Vec<BoxedStrategy<String>>) -> BoxedStrategy<String> {
    prop::option::weighted(0.5, children)
        .prop_map(move |c| c.map_or_else(String::new, |c| format!("{parent}:\n{}", c.concat())))
        .boxed()
}

/// Mostly one of `valid`, sometimes one of `invalid`.
fn pick(valid: &[&'static str], invalid: &[&'static str]) -> BoxedStrategy<String> {
    let valid = prop::sample::select(valid.to_vec()).prop_map(str::to_string);
    if invalid.is_empty() {
        return valid.boxed();
    }
    let invalid = prop::sample::select(invalid.to_vec()).prop_map(str::to_string);
    prop_oneof![12 => valid, 1 => invalid].boxed()
}

/// A number: mostly in `valid`, sometimes in the wider `any` (which may be out of bounds).
fn number(
    valid: std::ops::RangeInclusive<f64>,
    any: std::ops::Range<f64>,
) -> BoxedStrategy<String> {
    prop_oneof![
        6 => valid.clone().prop_map(|n| n.to_string()),
        6 => valid.prop_map(|n| n.round().to_string()),
        1 => any.prop_map(|n| n.to_string()),
    ]
    .boxed()
}

/// Durations mostly within the bound (and at least a minute, the default metrics period), some
/// at the bound, past it, zero or absurd.
fn policy_duration() -> BoxedStrategy<String> {
    prop_oneof![
        12 => (60u64..=MAX_DURATION.as_secs()).prop_map(|s| format_duration(Duration::from_secs(s))),
        1 => prop::sample::select(vec!["168h", "167h59m60s", "168h1s", "169h", "0s", "10s"])
            .prop_map(str::to_string),
        1 => durationish(),
    ]
    .boxed()
}

/// A policy document built from the known keys (each at most once, in the usual order) with values
/// that are mostly valid, sometimes just past a bound, rarely anything at all.
fn policyish() -> impl Strategy<Value = String> {
    let steps = prop_oneof![
        12 => prop::collection::btree_set(1u32..100, 0..5).prop_map(|set| {
            let items: Vec<String> =
                set.iter().map(u32::to_string).chain(["100".into()]).collect();
            format!("[{}]", items.join(", "))
        }),
        1 => prop::collection::vec((-10.0f64..120.0).prop_map(|n| n.to_string()), 0..6)
            .prop_map(|items| format!("[{}]", items.join(", "))),
    ];
    let ms = || number(0.001..=900_000.0, -10.0..2_000_000.0);
    let top = vec![
        prop_oneof![12 => Just("function: notes-get\n".to_string()), 1 => entry("function", pick(&["f"], &["arn:aws:lambda:f", "", "a b"]))].boxed(),
        entry("alias", pick(&["live", "prod"], &["123", "a b"])),
        entry("candidate_alias", pick(&["candidate", "next"], &["live"])),
        entry("steps", steps),
        entry("step_interval", policy_duration()),
        entry(
            "min_requests",
            prop_oneof![
                12 => (1u64..=MAX_MIN_REQUESTS).prop_map(|n| n.to_string()),
                1 => any::<u64>().prop_map(|n| n.to_string()),
            ],
        ),
        block(
            "errors",
            vec![
                entry("  max_rate", number(0.0..=1.0, -0.5..1.5)),
                entry("  max_increase", number(0.0..=1.0, -0.5..1.5)),
            ],
        ),
        block(
            "latency",
            vec![
                entry(
                    "  stat",
                    pick(&["p50", "p90", "p95", "p99", "p99.9", "Average", "Maximum"], &["p98"]),
                ),
                entry("  max_ms", ms()),
                entry("  max_ratio", number(1.0..=1_000.0, 0.0..1e6)),
                entry("  min_increase_ms", ms()),
            ],
        ),
        entry(
            "confidence",
            prop_oneof![
                12 => (0.501f64..0.999).prop_map(|n| n.to_string()),
                1 => (0.0f64..2.0).prop_map(|n| n.to_string()),
            ],
        ),
        entry("on_no_data", pick(&["hold", "rollback"], &["page"])),
        entry("no_data_timeout", policy_duration()),
        block(
            "metrics",
            vec![
                entry("  source", pick(&["emf"], &["lambda", "xray"])),
                entry("  namespace", pick(&["NotesApi"], &["AWS/Lambda", "''"])),
                entry(
                    "  period",
                    prop_oneof![
                        12 => pick(&["1s", "5s", "10s", "20s", "30s", "60s", "1m"], &[]),
                        1 => policy_duration(),
                    ],
                ),
            ],
        ),
        block(
            "notify",
            vec![entry(
                "  topic_arn",
                pick(
                    &["arn:aws:sns:us-east-1:123456789012:canary-alerts"],
                    &["arn:aws:sns:us-east-1:1234:canary-alerts"],
                ),
            )],
        ),
    ];
    top.prop_map(|entries| entries.concat())
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

    #[test]
    fn policy_duration_parser_never_panics(text in prop_oneof!["\\PC{0,40}", durationish()]) {
        if let Ok(d) = parse_duration(&text) {
            // Whatever parses formats back to the same duration.
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    /// Documents built from the known keys with random values: the parser never panics, every
    /// problem names the file, and a policy that validates is within every documented bound.
    #[test]
    fn policy_yamlish_documents_never_panic_and_validate_within_bounds(text in policyish()) {
        match parse(&text) {
            Err(errors) => {
                prop_assert!(!errors.problems().is_empty());
                for problem in errors.problems() {
                    prop_assert_eq!(&problem.file, Path::new("p.yaml"));
                }
            }
            Ok(p) => {
                for d in [p.step_interval, p.no_data_timeout, p.metrics.period()] {
                    prop_assert!(d > Duration::ZERO && d <= MAX_DURATION, "{:?}", d);
                }
                let week = i64::try_from(MAX_DURATION.as_secs()).unwrap();
                for secs in [p.step_interval_secs(), p.no_data_timeout_secs(), p.metrics.period_secs()] {
                    prop_assert!((1..=week).contains(&secs), "{}", secs);
                }
                prop_assert!((1..=MAX_MIN_REQUESTS).contains(&p.min_requests));
                prop_assert!(!p.steps.is_empty());
                prop_assert!(p.steps.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(p.steps.iter().all(|&w| w > 0.0 && w <= 100.0));
                prop_assert!((0.0..=1.0).contains(&p.errors.max_rate));
                prop_assert!((0.0..=1.0).contains(&p.errors.max_increase));
                prop_assert!(p.latency.max_ms > 0.0 && p.latency.max_ms <= MAX_LATENCY_MS);
                prop_assert!((1.0..=MAX_LATENCY_RATIO).contains(&p.latency.max_ratio));
                prop_assert!((0.0..=MAX_LATENCY_MS).contains(&p.latency.min_increase_ms));
                prop_assert!(p.confidence > 0.5 && p.confidence < 1.0);
            }
        }
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

#[test]
fn policy_load_dir_duplicates_name_both_files() {
    let dir = crate::test_dir("policy-dup");
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
fn policy_release_names_and_members_with_different_steps_are_errors() {
    one_problem(
        "function: f\nrelease: notes api\n",
        2,
        "release",
        "must be a release name of 1-64 letters",
    );
    assert_eq!(
        parse("function: f\nrelease: notes-api.v2\n")
            .unwrap()
            .release
            .as_deref(),
        Some("notes-api.v2")
    );
    assert_eq!(parse("function: f\n").unwrap().release, None);
    let dir = crate::test_dir("policy-release");
    std::fs::write(
        dir.join("a.yaml"),
        "function: a\nrelease: api\nsteps: [10, 100]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        "function: b\nrelease: api\nsteps: [10, 100]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c.yaml"),
        "function: c\nsteps: [5, 100]\nrelease: api\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("d.yaml"),
        "function: d\nsteps: [5, 100]\nrelease: other\n",
    )
    .unwrap();
    let report = load_dir(&dir);
    let names: Vec<_> = report
        .policies
        .iter()
        .map(|p| p.function.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(
        (p.file.clone(), p.line, p.field.as_str()),
        (dir.join("c.yaml"), Some(3), "release")
    );
    assert!(p.message.contains("need the same steps"), "{p}");
    assert!(
        p.message
            .contains(&dir.join("a.yaml").display().to_string()),
        "{p}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_load_dir_missing_and_empty() {
    let dir = crate::test_dir("policy-empty");
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

#[cfg(unix)]
#[test]
fn policy_load_dir_names_dangling_links_and_non_files() {
    let dir = crate::test_dir("policy-links");
    std::fs::write(dir.join("a.yaml"), "function: notes-get\n").unwrap();
    std::fs::write(dir.join("real.txt"), "function: notes-list\n").unwrap();
    // A link to a file that is a policy by its link name is followed.
    std::os::unix::fs::symlink(dir.join("real.txt"), dir.join("b.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.join("gone.yaml"), dir.join("c.yaml")).unwrap();
    std::fs::create_dir(dir.join("d.yml")).unwrap();
    // A dangling link without the policy extension is not a policy file.
    std::os::unix::fs::symlink(dir.join("gone.txt"), dir.join("e.txt")).unwrap();
    let report = load_dir(&dir);
    let functions: Vec<_> = report
        .policies
        .iter()
        .map(|p| p.function.as_str())
        .collect();
    assert_eq!(functions, ["notes-get", "notes-list"]);
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    let dangling = &report.problems[0];
    assert_eq!(dangling.file, dir.join("c.yaml"));
    assert!(
        dangling.message.starts_with(&format!(
            "is a symbolic link to {}, which cannot be read",
            dir.join("gone.yaml").display()
        )),
        "{dangling}"
    );
    assert!(dangling
        .to_string()
        .starts_with(&dir.join("c.yaml").display().to_string()));
    let directory = &report.problems[1];
    assert_eq!(directory.file, dir.join("d.yml"));
    assert!(
        directory.message.starts_with("is a directory"),
        "{directory}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Only a dangling link: that is the problem, not "no policy files".
    let dir = crate::test_dir("policy-only-link");
    std::os::unix::fs::symlink(dir.join("gone.yaml"), dir.join("x.yaml")).unwrap();
    let report = load_dir(&dir);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(report.problems[0].message.contains("symbolic link"));
    std::fs::remove_dir_all(&dir).unwrap();
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

#[test]
fn step_seconds_is_the_interval_or_the_time_min_requests_or_the_latency_warm_up_takes() {
    use StepBound::{Interval, LatencyWarmup, MinRequests};
    let mut p = Policy::with_defaults("f"); // 10/25/50/100, 5m, min_requests 100, warm-up 2m
    assert_eq!(
        p.step_seconds(10.0),
        vec![
            (10.0, 300, Interval),
            (25.0, 300, Interval),
            (50.0, 300, Interval)
        ]
    );
    // 0.05 req/s: 100 requests at 10% take 20000 s.
    assert_eq!(p.step_seconds(0.05)[0], (10.0, 20_000, MinRequests));
    // No traffic never finishes a step: capped at the longest duration a policy may hold.
    assert_eq!(p.step_seconds(0.0)[0].1, MAX_DURATION.as_secs() as i64);
    // A 10-minute warm-up: the first step waits for it, the period the canary began in and
    // two periods after; every later step for it and one period.
    p.latency.warmup = Some(Duration::from_secs(600));
    assert_eq!(
        p.step_seconds(10.0),
        vec![
            (10.0, 600 + 60 + 120, LatencyWarmup),
            (25.0, 660, LatencyWarmup),
            (50.0, 660, LatencyWarmup)
        ]
    );
    // At a trickle a period with a latency statistic is one with a request: 1 req/s at 10%
    // is one every 10 s, so minute periods still count one each.
    p.min_requests = 1;
    assert_eq!(p.step_seconds(1.0)[0], (10.0, 780, LatencyWarmup));
    // 0.01 req/s at 50%: a request every 200 s.
    assert_eq!(p.step_seconds(0.01)[2], (50.0, 800, LatencyWarmup));
}
