//! `canary bench`: the built-in judge benchmark, or the scenarios of a file (SCENARIOS.md).

use super::{example_policy, read_policy, CliError, Output};
use crate::policy::Policy;
use crate::sim::bench::{self, report};
use crate::sim::scenario;
use std::path::PathBuf;

/// The most runs per scenario and judge: a thousand take a minute or two, this many a few
/// hours.
pub const MAX_RUNS: usize = 100_000;

/// Arguments of `canary bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenario file (SCENARIOS.md); without it, the built-in scenarios.
    #[arg(long, value_name = "FILE")]
    pub scenarios: Option<PathBuf>,
    /// Seeded runs per scenario and judge.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Base seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Benchmark this policy file too (repeatable; default: the built-in notes-create policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Vec<PathBuf>,
    /// Output format: a Markdown report, or one JSON array (one object per scenario and judge).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// With --scenarios and --output json: add the equal-footing rows (every judge on 60 s
    /// AWS/Lambda metrics with a 10% first step, ids suffixed `@equal-footing`) and ours with only
    /// its own first step (`@equal-footing+own-first-step`). The text report always has them.
    #[arg(long)]
    pub equal_footing: bool,
    /// Serve no six hours of the stable version's per-minute latency before the canary (a
    /// function too new or too quiet for them): the latency test assumes a wander instead of
    /// measuring it.
    #[arg(long)]
    pub without_latency_history: bool,
}

/// Runs the benchmark and prints it.
///
/// # Errors
///
/// [`CliError::Usage`] for `--runs` outside 1 to [`MAX_RUNS`], a `--scenario` that matches no
/// scenario, an invalid policy or scenario file, or two policies with
/// the same file name (their judge ids would collide).
pub fn bench(args: &BenchArgs) -> Result<(), CliError> {
    if !(1..=MAX_RUNS).contains(&args.runs) {
        return Err(CliError::Usage(format!(
            "--runs must be from 1 to {MAX_RUNS}, got {}",
            args.runs
        )));
    }
    let policies = policies(&args.policy)?;
    // The scenarios `--scenario` keeps, with or without the hours before the canary.
    let chosen = |all: Vec<bench::Scenario>| -> Result<Vec<bench::Scenario>, CliError> {
        let count = all.len();
        let kept: Vec<bench::Scenario> = all
            .into_iter()
            .filter(|s| args.scenario.as_deref().is_none_or(|f| s.name.contains(f)))
            .map(|s| bench::Scenario {
                latency_history: !args.without_latency_history,
                ..s
            })
            .collect();
        match &args.scenario {
            Some(filter) if kept.is_empty() => Err(CliError::Usage(format!(
                "--scenario {filter:?} matches none of the {count} scenarios' names"
            ))),
            _ => Ok(kept),
        }
    };
    let (scenarios, judges, label): (_, _, fn(&bench::Judge) -> String) = match &args.scenarios {
        None if args.output == Output::Text => {
            let scenarios = chosen(bench::builtin::scenarios())?;
            let text = report::builtin_text(args.runs, args.seed, &policies, &scenarios);
            put!("{text}");
            return Ok(());
        }
        None => (
            bench::builtin::scenarios(),
            bench::builtin::judges(&policies),
            bench::Judge::label,
        ),
        Some(file) => {
            let scenarios = scenario::load(file).map_err(|e| CliError::Usage(e.to_string()))?;
            (scenarios, file_judges(&policies)?, bench::Judge::id)
        }
    };
    let scenarios = chosen(scenarios)?;
    let mut rows = bench::run_all(&scenarios, &judges, args.runs, args.seed, label);
    let from_file = args.scenarios.is_some();
    let extra = from_file && (args.output == Output::Text || args.equal_footing);
    let (equal, features) = if extra {
        let run = |js: &[bench::Judge]| {
            bench::run_all(&scenarios, js, args.runs, args.seed, bench::Judge::id)
        };
        (
            run(&bench::equal_footing_judges(&policies)),
            run(&bench::feature_judges(&policies)),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    match args.output {
        Output::Json => {
            rows.extend(equal);
            rows.extend(features);
            say!("{}", report::json(&rows));
        }
        Output::Text if from_file => {
            let lowering = bench::floor_lowering_ids(&judges);
            let parts = report::Parts {
                documented: &rows,
                equal: &equal,
                features: &features,
                lowering: &lowering,
            };
            put!(
                "{}",
                report::scenario_report(&parts, &scenarios, args.runs, args.seed)
            );
        }
        Output::Text => put!(
            "{}",
            report::scenario_text(&rows, &scenarios, args.runs, args.seed)
        ),
    }
    Ok(())
}

/// The judges of a scenario file's benchmark: ours under the defaults and each policy, and the
/// peers. Two policies whose file names would give the same judge id are refused: their rows
/// could not be told apart.
fn file_judges(policies: &[Policy]) -> Result<Vec<bench::Judge>, CliError> {
    let judges = bench::scenario_judges(policies);
    let ids: Vec<String> = judges.iter().map(bench::Judge::id).collect();
    if let Some(dup) = ids
        .iter()
        .enumerate()
        .find(|(i, id)| ids[..*i].contains(id))
    {
        return Err(CliError::Usage(format!(
            "two --policy files would both be judge {:?}; give them different file names",
            dup.1
        )));
    }
    Ok(judges)
}

/// The `--policy` files, or the shipped notes-create policy when none is given.
fn policies(files: &[PathBuf]) -> Result<Vec<Policy>, CliError> {
    if files.is_empty() {
        return Ok(vec![example_policy()]);
    }
    files.iter().map(|p| read_policy(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_policies_with_the_same_file_name_are_refused_and_different_names_are_not() {
        let at = |path: &str| Policy {
            source: PathBuf::from(path),
            ..example_policy()
        };
        let same = [at("team-a/notes.yaml"), at("team-b/notes.yaml")];
        match file_judges(&same) {
            Err(CliError::Usage(m)) => assert!(
                m.contains("\"lambda-canary:notes.yaml\"") && m.contains("different file names"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        let different = [at("team-a/notes.yaml"), at("team-a/notes-get.yaml")];
        let ids: Vec<String> = file_judges(&different)
            .expect("different names")
            .iter()
            .map(bench::Judge::id)
            .collect();
        assert!(
            ids.contains(&"lambda-canary:notes-get.yaml".to_string()),
            "{ids:?}"
        );
    }

    #[test]
    fn runs_are_bounded_and_a_scenario_filter_must_match_something() {
        let args = |runs: usize, scenario: Option<&str>| BenchArgs {
            scenarios: None,
            runs,
            seed: 1,
            scenario: scenario.map(str::to_string),
            policy: Vec::new(),
            output: Output::Text,
            equal_footing: false,
            without_latency_history: false,
        };
        for runs in [0, MAX_RUNS + 1, usize::MAX] {
            match bench(&args(runs, None)) {
                Err(CliError::Usage(m)) => {
                    assert!(m.contains("--runs must be from 1 to 100000"), "{m}");
                }
                other => panic!("{runs}: {other:?}"),
            }
        }
        match bench(&args(1, Some("no such scenario"))) {
            Err(CliError::Usage(m)) => assert!(m.contains("matches none of the"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
