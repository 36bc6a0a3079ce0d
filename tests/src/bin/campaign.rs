//! `campaign`: the long race and fault campaign against moto through the fault proxy; prints
//! its figures as a Markdown table.
//!
//! ```text
//! cargo run -p lambda-canary-tests --bin campaign -- --rounds 800 --seed 1
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use lambda_canary_tests::campaign::{run, CampaignConfig};
use lambda_canary_tests::proxy::{FaultRates, SubjectRule};

/// Drives two in-process canary agents and a person's commands against moto through a proxy
/// that enforces Lambda's RevisionId and SNS's subject rules and injects faults, and reports
/// what held. Exits 1 when any violation, lost page, panic or hang was found.
#[derive(Debug, Parser)]
#[command(name = "campaign")]
struct Args {
    /// Rounds (one deploy each).
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Multiplies the typical fault mix (about one request in six faulted at 1).
    #[arg(long, default_value_t = 1.0)]
    fault_scale: f64,
    /// Shortest injected delay, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    delay_min_ms: u64,
    /// Longest injected delay, in milliseconds.
    #[arg(long, default_value_t = 10000)]
    delay_max_ms: u64,
    /// SNS subject rule the proxy enforces.
    #[arg(long, value_enum, default_value_t = Rule::Ascii)]
    subject_rule: Rule,
    /// Share of deployed builds that fail every request.
    #[arg(long, default_value_t = 0.5)]
    bad_share: f64,
    /// Probability of a person's command in each faulted step.
    #[arg(long, default_value_t = 0.6)]
    command_share: f64,
    /// A tick or command running longer than this many seconds is a hang.
    #[arg(long, default_value_t = 180)]
    hang_after_secs: u64,
    /// Print a progress line every this many rounds (0: never).
    #[arg(long, default_value_t = 25)]
    progress_every: usize,
    /// Agents without a ledger of pages (each page cleared from the alias by a second write).
    #[arg(long)]
    no_ledger: bool,
}

/// SNS subject rules.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Rule {
    /// Printable ASCII, starting with a letter, number or punctuation mark, under 100 characters.
    Ascii,
    /// UTF-8 without line breaks or control characters, under 100 characters.
    Utf8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = CampaignConfig {
        faults: FaultRates::TYPICAL.scaled(args.fault_scale),
        delay: (
            Duration::from_millis(args.delay_min_ms),
            Duration::from_millis(args.delay_max_ms.max(args.delay_min_ms)),
        ),
        subject_rule: match args.subject_rule {
            Rule::Ascii => SubjectRule::Ascii,
            Rule::Utf8 => SubjectRule::Utf8,
        },
        bad_share: args.bad_share.clamp(0.0, 1.0),
        command_share: args.command_share.clamp(0.0, 1.0),
        hang_after: Duration::from_secs(args.hang_after_secs),
        progress_every: args.progress_every,
        ledger: !args.no_ledger,
        ..CampaignConfig::new(args.rounds, args.seed)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("campaign: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(run(&config));
    println!(
        "Campaign: `--rounds {} --seed {} --fault-scale {} --delay-min-ms {} --delay-max-ms {} \
         --subject-rule {:?}{}`\n",
        args.rounds,
        args.seed,
        args.fault_scale,
        args.delay_min_ms,
        args.delay_max_ms,
        args.subject_rule,
        if args.no_ledger { " --no-ledger" } else { "" }
    );
    println!("{}", report.markdown());
    let clean = report.violations_total() == 0
        && report.pages_lost == 0
        && report.pages_lost_filtered == 0
        && report.panics == 0
        && report.hangs == 0;
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
