//! Rendering benchmark rows: the built-in Markdown table, the scenario-file table, and the JSON
//! array of SCENARIOS.md.

use super::{builtin, run_all, Judge, Row, Scenario};
use crate::policy::Policy;
use serde::Serialize;
use std::fmt::Write as _;

/// Runs the built-in benchmark over `scenarios` (the built-in ones the caller chose) and renders
/// it as Markdown.
#[must_use]
pub fn builtin_text(runs: usize, seed: u64, shipped: &[Policy], scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{runs} seeded canaries per scenario and judge (seed {seed}); baseline build 0.1% 5xx, 80 ms median latency; 10 req/s unless noted.\n\
         Bad builds: `rolled back` is the detection rate; `failed` the 5xx users got from the new build in the first hour after the deploy (median / p95; a bad build that was promoted keeps failing at 100% of traffic); `exposed` the new build's requests before the decision; `minutes` to rollback; `floor` the failed requests no judge can avoid: the first step's traffic until the first datapoint is visible.\n\
         Healthy builds: `rolled back` is the false-rollback rate, `minutes` to 100%.\n\
         `unfinished`: runs with neither outcome after the hour.\n"
    );
    let judges = builtin::judges(shipped);
    for scenario in scenarios {
        let _ = writeln!(out, "### {}\n", scenario.name);
        let _ = writeln!(out, "| judge | rolled back | promoted | unfinished | failed (median / p95) | exposed (median) | minutes (median / p95) | floor |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let rows = run_all(
            std::slice::from_ref(scenario),
            &judges,
            runs,
            seed,
            Judge::label,
        );
        for r in rows {
            let floor = if scenario.bad && scenario.candidate.error_rate > 0.01 {
                format!("{:.0}", r.floor)
            } else {
                "-".to_string()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} / {:.0} | {:.0} | {:.1} / {:.1} | {floor} |",
                r.judge,
                percent(r.rolled_back),
                percent(r.promoted),
                percent(r.unfinished),
                r.failed.0,
                r.failed.1,
                r.exposed,
                r.minutes.0,
                r.minutes.1,
            );
        }
        out.push('\n');
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// Scenario-file rows as a Markdown report: one table per scenario.
#[must_use]
pub fn scenario_text(rows: &[Row], scenarios: &[Scenario], runs: usize, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{runs} seeded runs per scenario and judge (seed {seed}).\n\
         `rolled back`, `promoted`, `unfinished`: shares of runs (a healthy build rolled back is a false rollback; a bad build promoted is a miss; unfinished runs had neither outcome when the run ended). Ours bake after 100%: a build reverted during its bake counts as rolled back once the recheck that follows is over (a build whose rollback the recheck lifted, canaried again and promoted counts as promoted; a note under the table says how often), one still baking at the end as promoted.\n\
         `failed`: 5xx the new build answered to users in the run (median / p95; a promoted build serves all traffic for the rest of the run). `minutes`: to the decision (the last rollback, or the last move to 100% for a promoted build), over runs that decided.\n"
    );
    tables(&mut out, rows, scenarios);
    out
}

/// The rows of a scenario-file report, by table.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Every judge as documented (the SCENARIOS.md judges).
    pub documented: &'a [Row],
    /// Every judge on equal footing ([`super::equal_footing_judges`]).
    pub equal: &'a [Row],
    /// Ours with only its own first step ([`super::feature_judges`]).
    pub features: &'a [Row],
    /// Ids of ours whose policy lowers the floor ([`super::floor_lowering_ids`]).
    pub lowering: &'a [String],
}

/// The scenario-file report: the documented table, the equal-footing table, and (when a policy
/// lowers the floor) what its first step and metrics source add.
#[must_use]
pub fn scenario_report(
    parts: &Parts<'_>,
    scenarios: &[Scenario],
    runs: usize,
    seed: u64,
) -> String {
    let mut out = scenario_text(parts.documented, scenarios, runs, seed);
    out.push_str(&equal_footing_text(parts.equal, scenarios));
    if !parts.lowering.is_empty() {
        let all = [parts.documented, parts.equal, parts.features].concat();
        out.push_str(&features_text(&all, scenarios, parts.lowering));
    }
    out
}

/// The equal-footing section: every judge on 60 s AWS/Lambda metrics, ticking every minute, with
/// a 10% first step; one table per scenario.
#[must_use]
pub fn equal_footing_text(rows: &[Row], scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Equal footing\n\n\
         Every judge on the same metrics source, resolution and first step: 60 s AWS/Lambda metrics (each period visible 60 s after it ends), a tick every minute, 10% of traffic first. \
         Ours keeps its policy otherwise (steps above 10% stay); Flagger runs `stepWeights: [10, 15, ..., 50]`; CodeDeploy and Kayenta already run this way. Columns as above.\n"
    );
    tables(&mut out, rows, scenarios);
    out
}

/// The floor-lowering section: for each of our policies that lowers the floor, the policy on
/// equal footing, with only its own first step, and as configured (its own metrics too); one
/// table per scenario. `rows` holds all three kinds; others are ignored.
#[must_use]
pub fn features_text(rows: &[Row], scenarios: &[Scenario], policies: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## What our floor-lowering features add\n\n\
         Per policy: `{eq}` (60 s AWS/Lambda, 10% first step), `{own}` (60 s AWS/Lambda, the policy's own first step), and the policy as configured (its own first step and metrics source, e.g. 10 s EMF with 10 s ticks). \
         The difference between consecutive rows is what the first step, then the metrics source, adds.\n",
        eq = super::EQUAL_FOOTING,
        own = super::OWN_FIRST_STEP,
    );
    let mut ordered: Vec<Row> = Vec::new();
    for id in policies {
        for suffix in [super::EQUAL_FOOTING, super::OWN_FIRST_STEP, ""] {
            let want = format!("{id}{suffix}");
            ordered.extend(rows.iter().filter(|r| r.judge == want).cloned());
        }
    }
    tables(&mut out, &ordered, scenarios);
    out
}

/// One Markdown table per scenario of the rows for it, in row order.
fn tables(out: &mut String, rows: &[Row], scenarios: &[Scenario]) {
    for s in scenarios {
        let build = if s.bad { "bad" } else { "healthy" };
        let _ = writeln!(
            out,
            "### {} ({build}, {} req/s, {} min)\n",
            s.name, s.traffic.rps, s.minutes
        );
        let _ = writeln!(out, "| judge | rolled back | promoted | unfinished | failed (median / p95) | minutes (median / p95) |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.scenario == s.name) {
            let minutes = r
                .decided_minutes
                .map_or("-".to_string(), |(m, p)| format!("{m:.1} / {p:.1}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} / {:.0} | {minutes} |",
                r.judge,
                percent(r.rolled_back),
                percent(r.promoted),
                percent(r.unfinished),
                r.failed_all.0,
                r.failed_all.1,
            );
        }
        for r in rows
            .iter()
            .filter(|r| r.scenario == s.name && r.lifted > 0.0)
        {
            let _ = writeln!(
                out,
                "\n{}: in {} of runs a rollback in the bake was lifted by its recheck (the version before failed alike) and the build canaried again.",
                r.judge,
                percent(r.lifted)
            );
        }
        for r in rows
            .iter()
            .filter(|r| r.scenario == s.name && r.unfinished > 0.0 && r.told > 0.0)
        {
            let _ = writeln!(
                out,
                "\n{}: in {} of its unfinished runs on-call was told why a step waits and what to change.",
                r.judge,
                percent(r.told)
            );
        }
        out.push('\n');
    }
}

/// One object of `canary bench --output json`, fields as SCENARIOS.md names them.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    scenario: &'a str,
    build: &'a str,
    judge: &'a str,
    runs: usize,
    rolled_back: f64,
    promoted: f64,
    unfinished: f64,
    failed_median: f64,
    failed_p95: f64,
    minutes_median: Option<f64>,
    minutes_p95: Option<f64>,
}

/// The rows as the JSON array of SCENARIOS.md, pretty-printed with the fields in its order: one
/// object per scenario and judge; rates as fractions, `failed_*` over all runs, `minutes_*` over
/// runs that decided (null if none did).
#[must_use]
pub fn json(rows: &[Row]) -> String {
    let objects: Vec<JsonRow<'_>> = rows
        .iter()
        .map(|r| JsonRow {
            scenario: &r.scenario,
            build: if r.bad { "bad" } else { "healthy" },
            judge: &r.judge,
            runs: r.runs,
            rolled_back: r.rolled_back,
            promoted: r.promoted,
            unfinished: r.unfinished,
            failed_median: r.failed_all.0,
            failed_p95: r.failed_all.1,
            minutes_median: r.decided_minutes.map(|m| m.0),
            minutes_p95: r.decided_minutes.map(|m| m.1),
        })
        .collect();
    serde_json::to_string_pretty(&objects).unwrap_or_else(|_| "[]".to_string())
}
