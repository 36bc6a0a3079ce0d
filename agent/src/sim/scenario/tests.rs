//! Scenario file tests: defaults, inheritance, every problem with file/line/field, the shipped set.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::sim::traffic::{Build, ColdStart, Drift, Outage, RateChange, Slow, Traffic};

fn parse(yaml: &str) -> Result<Vec<Scenario>, ScenarioErrors> {
    parse_scenarios(Path::new("s.yaml"), yaml)
}

fn problems(yaml: &str) -> Vec<ScenarioProblem> {
    match parse(yaml) {
        Ok(s) => panic!("expected problems, parsed {s:?}"),
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
    assert!(
        p.to_string().starts_with(&format!("s.yaml:{line}: ")),
        "{p}"
    );
}

const MINIMAL: &str = "scenarios:\n  - name: a\n    build: healthy\n    traffic: {rate: 10}\n";

#[test]
fn scenario_minimal_gets_the_documented_defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(
        s,
        vec![Scenario {
            name: "a".to_string(),
            bad: false,
            minutes: 60,
            traffic: Traffic::steady(10.0),
            stable: Build::healthy(),
            candidate: Build::healthy(),
            latency_history: true,
        }]
    );
    let h = Build::healthy();
    assert_eq!(
        (h.error_rate, h.latency_median_ms, h.latency_sigma),
        (0.001, 80.0, 0.5)
    );
    assert_eq!((h.slow, h.cold_start, h.error_bursts), (None, None, 1.0));
    assert_eq!(
        h.drift,
        Drift {
            sd: 0.0,
            every_secs: 300
        }
    );
    assert_eq!(Traffic::steady(10.0).rate_noise, 0.1);
}

#[test]
fn scenario_candidate_copies_every_key_it_omits_from_stable() {
    let yaml = r"
scenarios:
  - name: inherit
    build: bad
    traffic: {rate: 5}
    stable:
      errors: 0
      latency: {median_ms: 100, sigma: 0.3}
      slow: {share: 0.01, add_ms: 200}
      cold_start: {share: 0.1, add_ms: 500, for: 2m}
      error_bursts: 4
      latency_drift: {sd: 0.2, every: 1m}
    candidate:
      latency: {median_ms: 120}
      cold_start: {share: 0.2}
";
    let s = &parse(yaml).unwrap()[0];
    let stable = Build {
        error_rate: 0.0,
        latency_median_ms: 100.0,
        latency_sigma: 0.3,
        slow: Some(Slow {
            share: 0.01,
            add_ms: 200.0,
        }),
        cold_start: Some(ColdStart {
            share: 0.1,
            add_ms: 500.0,
            secs: 120,
        }),
        error_bursts: 4.0,
        drift: Drift {
            sd: 0.2,
            every_secs: 60,
        },
    };
    assert_eq!(s.stable, stable);
    let candidate = Build {
        latency_median_ms: 120.0,
        cold_start: Some(ColdStart {
            share: 0.2,
            ..stable.cold_start.unwrap()
        }),
        ..stable
    };
    assert_eq!(s.candidate, candidate);
    assert!(s.bad);
}

#[test]
fn scenario_every_key_parses() {
    let yaml = r"
scenarios:
  - name: shared dependency outage
    build: healthy
    minutes: 90
    traffic:
      rate: 0.05
      noise: 0
      changes:
        - {at: 0s, factor: 2}
        - {at: 1m30s, factor: 0.1}
    stable:
      errors: 0.002
      latency: {median_ms: 80, sigma: 0.5}
    candidate:
      errors: 0.001
      slow: {share: 0.03, add_ms: 500}
      cold_start: {share: 0.1, add_ms: 500, for: 2m}
      error_bursts: 1
      latency_drift: {sd: 0.0, every: 5m}
    shared:
      outages:
        - {at: 1m, for: 10m, errors: 0.03}
";
    let s = &parse(yaml).unwrap()[0];
    assert_eq!(s.minutes, 90);
    assert_eq!(s.traffic.rps, 0.05);
    assert_eq!(s.traffic.rate_noise, 0.0);
    assert_eq!(
        s.traffic.changes,
        vec![
            RateChange { at: 0, factor: 2.0 },
            RateChange {
                at: 90,
                factor: 0.1
            }
        ]
    );
    assert_eq!(
        s.traffic.outages,
        vec![Outage {
            at: 60,
            secs: 600,
            errors: 0.03
        }]
    );
    assert_eq!(s.stable.error_rate, 0.002);
    assert_eq!(s.candidate.error_rate, 0.001);
    assert_eq!(
        s.candidate.slow,
        Some(Slow {
            share: 0.03,
            add_ms: 500.0
        })
    );
    assert_eq!(s.stable.slow, None);
}

#[test]
fn scenario_problems_name_file_line_and_field() {
    one_problem(
        "scenarios:\n  - name: a\n    build: healthy\n    traffic: {rate: 0}\n",
        4,
        "scenarios[0].traffic.rate",
        "greater than 0",
    );
    one_problem(
        "scenarios:\n  - name: a\n    build: good\n    traffic: {rate: 1}\n",
        3,
        "scenarios[0].build",
        "must be healthy or bad, got \"good\"",
    );
    one_problem(
        &format!("{MINIMAL}    minutes: 5000\n"),
        5,
        "scenarios[0].minutes",
        "from 1 to 1440",
    );
    one_problem(
        &format!("{MINIMAL}    candidate:\n      errors: 1.5\n"),
        6,
        "scenarios[0].candidate.errors",
        "between 0 and 1, got 1.5",
    );
    one_problem(
        &format!(
            "{MINIMAL}    stable:\n      cold_start: {{share: 0.1, add_ms: 5, for: 2 minutes}}\n"
        ),
        6,
        "scenarios[0].stable.cold_start.for",
        "duration",
    );
    one_problem(
        &format!("{MINIMAL}    stable:\n      latency: {{median_ms: -3}}\n"),
        6,
        "scenarios[0].stable.latency.median_ms",
        "greater than 0",
    );
    one_problem(
        &format!("{MINIMAL}    stable: {{error_bursts: 0.5}}\n"),
        5,
        "scenarios[0].stable.error_bursts",
        "from 1",
    );
    one_problem(
        &format!(
            "{MINIMAL}    shared:\n      outages:\n        - {{at: 2h, for: 1m, errors: 0.1}}\n"
        ),
        7,
        "scenarios[0].shared.outages[0].at",
        "must be from 0s to 59m59s",
    );
}

#[test]
fn scenario_unknown_keys_are_errors_with_their_line() {
    let p = &problems("scenario:\n  - name: a\n")[0];
    assert!(p.message.contains("unknown key `scenario`"), "{p}");
    assert_eq!(p.line, Some(1));
    let p = &problems(&format!("{MINIMAL}    candidate:\n      eror: 0.1\n"))[0];
    assert!(p.message.contains("unknown key `eror`"), "{p}");
    assert!(p.message.contains("errors"), "{p}");
    assert_eq!(p.line, Some(6), "{p}");
    assert_eq!(p.field, "scenarios[0].candidate.eror", "{p}");
    let p = &problems(&format!(
        "{MINIMAL}    stable:\n      latency: {{median: 80}}\n"
    ))[0];
    assert!(p.message.contains("unknown key `median`"), "{p}");
    assert_eq!(p.line, Some(6), "{p}");
    assert!(p.field.starts_with("scenarios[0].stable.latency"), "{p}");
    let p = &problems(&format!(
        "{MINIMAL}    shared:\n      outages:\n        - {{at: 1m, for: 1m, error: 0.1}}\n"
    ))[0];
    assert!(p.message.contains("unknown key `error`"), "{p}");
    assert_eq!(p.line, Some(7), "{p}");
}

#[test]
fn scenario_required_keys_and_what_cannot_be_copied() {
    one_problem(
        "scenarios:\n  - name: a\n    build: bad\n",
        2,
        "scenarios[0].traffic",
        "is required",
    );
    one_problem(
        "scenarios:\n  - name: a\n    traffic: {rate: 1}\n",
        2,
        "scenarios[0].build",
        "is required",
    );
    one_problem(
        &format!("{MINIMAL}    candidate:\n      slow: {{share: 0.03}}\n"),
        6,
        "scenarios[0].candidate.slow.add_ms",
        "stable has none to copy it from",
    );
    one_problem(
        &format!("{MINIMAL}    stable:\n      cold_start: {{share: 0.1, add_ms: 5}}\n"),
        6,
        "scenarios[0].stable.cold_start.for",
        "is required",
    );
    one_problem(
        "scenarios:\n  - name: a\n    build: bad\n    traffic:\n      changes: [{at: 1m, factor: 2}]\n",
        5, // a block mapping starts at its first key
        "scenarios[0].traffic.rate",
        "is required",
    );
}

#[test]
fn scenario_file_level_problems() {
    assert!(problems("")[0].message.contains("empty"));
    assert!(problems("- a\n")[0].message.contains("scenarios:"));
    one_problem("scenarios: []\n", 1, "scenarios", "at least one");
    let dup = format!("{MINIMAL}  - name: a\n    build: bad\n    traffic: {{rate: 1}}\n");
    one_problem(&dup, 5, "scenarios[1].name", "already named \"a\" (line 2)");
    let order = format!(
        "{MINIMAL}  - name: b\n    build: bad\n    traffic:\n      rate: 1\n      changes:\n        - {{at: 5m, factor: 2}}\n        - {{at: 5m, factor: 3}}\n"
    );
    one_problem(
        &order,
        11,
        "scenarios[1].traffic.changes[1].at",
        "later than",
    );
    // A change multiplies the rate: the product is bounded like the rate itself.
    let flood = format!(
        "{MINIMAL}  - name: b\n    build: bad\n    traffic:\n      rate: 100000\n      changes:\n        - {{at: 5m, factor: 2}}\n"
    );
    one_problem(
        &flood,
        10,
        "scenarios[1].traffic.changes[0].factor",
        "200000 requests/s, above the most",
    );
}

#[test]
fn scenario_files_that_are_too_large_or_not_text_are_named_not_read_whole() {
    let dir = crate::test_dir("scenario-files");
    let big = dir.join("big.yaml");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(crate::policy::MAX_FILE_BYTES + 1)
        .expect("grow");
    let err = load(&big).expect_err("too large").to_string();
    assert!(
        err.contains("big.yaml") && err.contains("larger than 1024 KiB"),
        "{err}"
    );
    let latin1 = dir.join("latin1.yaml");
    std::fs::write(&latin1, b"scenarios:\n  - name: caf\xe9\n").expect("write");
    let err = load(&latin1).expect_err("not UTF-8").to_string();
    assert!(err.contains("line 2: not UTF-8"), "{err}");
    let err = load(&dir).expect_err("a directory").to_string();
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn scenario_collects_every_problem_in_line_order() {
    let yaml = "scenarios:\n  - name: a\n    build: x\n    traffic: {rate: -1, noise: 9}\n    stable: {errors: 2}\n";
    let found = problems(yaml);
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "scenarios[0].build",
            "scenarios[0].traffic.rate",
            "scenarios[0].traffic.noise",
            "scenarios[0].stable.errors"
        ]
    );
}

#[test]
fn scenario_shipped_production_set_parses_and_covers_the_issue() {
    let text = include_str!("../../../scenarios/production.yaml");
    let set = parse_scenarios(Path::new("production.yaml"), text).unwrap();
    let has = |f: &dyn Fn(&Scenario) -> bool| set.iter().any(f);
    assert!(has(&|s| s.candidate.error_rate == 1.0 && s.bad));
    for rate in [0.01, 0.02, 0.03, 0.05] {
        assert!(has(&|s| s.bad && s.candidate.error_rate == rate), "{rate}");
    }
    assert!(has(&|s| !s.bad && s.stable.error_rate == 0.0));
    assert!(has(&|s| s.bad && s.stable.error_rate == 0.0));
    assert!(has(&|s| s.bad && s.candidate.slow.is_some()));
    assert!(has(&|s| !s.bad && s.candidate.cold_start.is_some()));
    assert!(has(&|s| !s.bad && !s.traffic.outages.is_empty()));
    for rps in [10.0, 100.0] {
        assert!(has(&|s| !s.bad
            && s.candidate.error_bursts > 1.0
            && s.traffic.rps == rps));
    }
    assert!(has(&|s| !s.bad && s.candidate.drift.sd > 0.0));
    assert!(has(
        &|s| !s.bad && s.traffic.changes.iter().any(|c| c.factor < 1.0)
    ));
    assert!(has(
        &|s| !s.bad && s.traffic.changes.iter().any(|c| c.factor > 1.0)
    ));
    assert!(has(&|s| !s.bad && s.traffic.rps == 0.05));
}

/// Values of every shape a person (or a fuzzer) might write.
fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0",
        "1",
        "-1",
        "0.5",
        "1e309",
        "nan",
        ".inf",
        "abc",
        "2m",
        "0s",
        "1h30m",
        "99999999999h",
        "[1, 2]",
        "{}",
        "{at: 1m}",
        "~",
        "''",
        "healthy",
        "bad",
        "{share: 2}",
        "{median_ms: 0}",
    ])
    .prop_map(str::to_string)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "name",
        "build",
        "minutes",
        "traffic",
        "rate",
        "noise",
        "changes",
        "stable",
        "candidate",
        "errors",
        "latency",
        "slow",
        "cold_start",
        "error_bursts",
        "latency_drift",
        "shared",
        "outages",
        "at",
        "for",
        "factor",
        "share",
        "add_ms",
        "sd",
        "every",
        "median_ms",
        "sigma",
    ])
    .prop_map(str::to_string)
}

proptest! {
    #[test]
    fn scenario_parse_never_panics_on_text(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn scenario_parse_never_panics_on_near_misses(
        pairs in prop::collection::vec((key(), value()), 0..8),
        nested in prop::collection::vec((key(), key(), value()), 0..4),
    ) {
        let mut yaml = "scenarios:\n  - name: a\n    build: healthy\n    traffic: {rate: 10}\n".to_string();
        for (k, v) in &pairs {
            yaml.push_str(&format!("    {k}: {v}\n"));
        }
        for (k, inner, v) in &nested {
            yaml.push_str(&format!("    {k}:\n      {inner}: {v}\n"));
        }
        if let Err(e) = parse(&yaml) {
            prop_assert!(!e.0.is_empty());
        }
    }
}
