//! The `canary` command line: argument types (clap derive; doc comments are the help) and the
//! commands behind them. `main.rs` only parses, calls [`run`] and maps the result to an exit code.

use crate::policy::{self, DirReport, Policy};
use crate::rollout::Version;
use crate::tick::{self, Agent};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `println!` for the commands' output, through [`out::write`] (a closed pipe is no panic).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands' output, through [`out::write`].
macro_rules! put {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

mod bench;
pub mod deployed;
pub mod emf;
pub mod logs;
mod manual;
pub mod out;
mod policies;
mod run;
mod status;
mod wait;

use manual::Target;
use policies::{policy_check, policy_show};
use run::run_loop;
pub use run::{lambda_tick_with, lambda_tick_within, tick_budget, LambdaTicker};
use status::print_status;
pub use wait::{wait_for, wait_release_for};

/// Protects every production promotion of an AWS Lambda alias: starts a canary of the new
/// version, judges it against the stable one, moves traffic forward or rolls it straight back.
#[derive(Debug, Parser)]
#[command(name = "canary", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// AWS region (default: AWS_REGION, or the profile's).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS shared-config profile (default: AWS_PROFILE, or `default`).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// More log lines on stderr: -v adds the agent's info and the AWS SDK's warnings, -vv debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Output format of `canary status` and `canary bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table a person reads.
    Text,
    /// Stable JSON for scripts.
    Json,
}

/// Where the policy files are.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyDir {
    /// Directory of policy files.
    #[arg(long = "policies", value_name = "DIR", default_value = "policies")]
    pub dir: PathBuf,
}

/// What a person's command acts on: one function, or every member of a release (exactly one).
#[derive(Debug, Clone, clap::Args)]
pub struct Subject {
    /// Function name (or FUNCTION:ALIAS).
    #[arg(required_unless_present = "release")]
    pub function: Option<String>,
    /// Every member of this release instead of one function.
    #[arg(long, conflicts_with = "function")]
    pub release: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The agent loop: one tick per interval over every policy file.
    Run {
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
        /// One tick, then exit (non-zero if a policy file is invalid or a policy failed).
        #[arg(long)]
        once: bool,
        /// Time between ticks (e.g. 60s, 1m, 10s).
        #[arg(long, default_value = "60s", value_parser = parse_interval)]
        interval: Duration,
        /// Print the decisions without writing aliases or publishing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Per alias: versions, weight, step, per-version numbers, verdict, last decision.
    Status {
        /// Only this function (or FUNCTION:ALIAS).
        function: Option<String>,
        /// Only the members of this release.
        #[arg(long, conflicts_with = "function")]
        release: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Begin a canary of VERSION (default: the candidate alias's version).
    Start {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// Version to canary.
        #[arg(long, conflicts_with = "release")]
        version: Option<Version>,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Move the canary to its next step now, or straight to 100% with --full; during a bake,
    /// end the bake now.
    Promote {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// Straight to 100%.
        #[arg(long)]
        full: bool,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Point the alias back at the stable version (during a bake: the version before it), or at
    /// --to VERSION, now.
    Rollback {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// Version to go back to (default: the stable version).
        #[arg(long, conflicts_with = "release")]
        to: Option<Version>,
        /// Why (goes to on-call and the alias record).
        #[arg(long)]
        reason: Option<String>,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Freeze forward moves (rollback protection stays on).
    Pause {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Allow forward moves again.
    Resume {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Block until a deploy's version is promoted and baked (exit 0) or rolled back (exit 1),
    /// printing each change; exit 3 on timeout. For CI after `sam deploy`.
    Wait {
        /// The function, or the release.
        #[command(flatten)]
        subject: Subject,
        /// The version to wait for (default: the candidate alias's version).
        #[arg(long, conflicts_with = "release")]
        version: Option<Version>,
        /// Give up after this long (exit 3).
        #[arg(long, default_value = "1h", value_parser = parse_interval)]
        timeout: Duration,
        /// How often to look.
        #[arg(long, default_value = "15s", value_parser = parse_interval)]
        interval: Duration,
        /// Policy directory.
        #[command(flatten)]
        policies: PolicyDir,
    },
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Tell the classic bad-deploy story on a simulated AWS, in seconds (no AWS account needed).
    Demo {
        /// Policy file of the function in the story (default: the built-in notes-create policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Requests per second to the alias.
        #[arg(long, default_value_t = 10.0)]
        rps: f64,
        /// Seed of the simulated traffic.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the judge benchmark (ours and the peers on the same simulated traffic).
    Bench(bench::BenchArgs),
}

/// `canary policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; exit 2 on any error.
    Check {
        /// Directory of policy files.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Also estimate, for each policy, how long each step takes at this many requests a
        /// second to the alias (both versions together).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the JSON Schema of a policy file.
    Schema,
    /// List the policy files of a directory, or (--deployed) the ones the deployed agent runs,
    /// compared file by file with the directory's.
    Show {
        /// Directory of policy files.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Ask the deployed agent (one `lambda:InvokeFunction` of it) instead.
        #[arg(long)]
        deployed: bool,
        /// The deployed agent's function name (the agent stack's `AgentName`).
        #[arg(long, default_value = "lambda-canary", requires = "deployed")]
        agent: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1e6 => Ok(r),
        Ok(_) => Err(format!(
            "must be more than 0 and at most 1000000 requests a second, got {}",
            s.trim()
        )),
        Err(e) => Err(format!("not a number of requests a second: {e}")),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = policy::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be positive".to_string());
    }
    Ok(d)
}

/// How a command failed; `main` maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or invalid policy: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Failed(String),
    /// `canary wait` reached its timeout: exit 3.
    #[error("{0}")]
    TimedOut(String),
}

impl CliError {
    /// The process exit code.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
            Self::TimedOut(_) => 3,
        }
    }
}

fn now() -> i64 {
    crate::clock::now_secs()
}

/// The shipped notes-create policy: the function of `canary demo` and `canary bench` when no
/// `--policy` is given.
#[must_use]
pub fn example_policy() -> Policy {
    const FILE: &str = "notes-create.yaml";
    const TEXT: &str = include_str!("../../policies/notes-create.yaml");
    policy::parse_policy(Path::new(FILE), TEXT)
        .unwrap_or_else(|_| Policy::with_defaults("notes-create"))
}

fn report_problems(report: &DirReport) {
    for p in &report.problems {
        eprintln!("invalid policy: {p}");
        tracing::error!(problem = %p, "invalid policy skipped");
    }
}

/// Finds FUNCTION (or FUNCTION:ALIAS) among the policies of `dir`.
fn find_policy(dir: &Path, function: &str) -> Result<Policy, CliError> {
    let report = policy::load_dir(dir);
    let (name, alias) = match function.split_once(':') {
        Some((f, a)) => (f, Some(a)),
        None => (function, None),
    };
    let matches: Vec<&Policy> = report
        .policies
        .iter()
        .filter(|p| p.function == name && alias.is_none_or(|a| p.alias == a))
        .collect();
    match matches.as_slice() {
        [p] => Ok((*p).clone()),
        [] => {
            let known: Vec<String> = report
                .policies
                .iter()
                .map(|p| format!("{}:{}", p.function, p.alias))
                .collect();
            let broken = if report.problems.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} invalid file(s); run `canary policy check {}`)",
                    report.problems.len(),
                    dir.display()
                )
            };
            Err(CliError::Usage(format!(
                "no policy for {function} in {}{broken}; known: {}",
                dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
        _ => Err(CliError::Usage(format!(
            "{function} has several policies (aliases {}); name one as FUNCTION:ALIAS",
            matches
                .iter()
                .map(|p| p.alias.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `canary status`: every policy, one function, or one release's members. A member is judged
/// and decided with its release: all are read, the one asked for is shown.
async fn status(
    conf: Option<&aws_config::SdkConfig>,
    function: Option<String>,
    release: Option<String>,
    output: Output,
    dir: &Path,
) -> Result<(), CliError> {
    // A member is judged and decided with its release: read them all, show it.
    let (list, only) = match (&function, &release) {
        (Some(f), _) => {
            let p = find_policy(dir, f)?;
            match p.release.as_deref() {
                Some(r) => (manual::release_policies(dir, r)?, Some(p)),
                None => (vec![p], None),
            }
        }
        (None, Some(r)) => (manual::release_policies(dir, r)?, None),
        (None, None) => {
            let report = policy::load_dir(dir);
            report_problems(&report);
            if report.policies.is_empty() {
                return Err(CliError::Usage(format!(
                    "no valid policies in {}",
                    dir.display()
                )));
            }
            (report.policies, None)
        }
    };
    let agent = aws_agent(conf).await?;
    let outs = agent.status(&list, now()).await;
    let shown: Vec<(Policy, tick::Outcome)> = list
        .into_iter()
        .zip(outs)
        .filter(|(p, _)| {
            only.as_ref()
                .is_none_or(|o| o.function == p.function && o.alias == p.alias)
        })
        .collect();
    print_status(&shown, release.as_deref(), output);
    if shown.iter().any(|(_, o)| o.error.is_some()) {
        return Err(CliError::Failed(
            "some aliases could not be read (see above)".to_string(),
        ));
    }
    Ok(())
}

/// Runs a parsed command.
///
/// # Errors
/// [`CliError::Usage`] for bad usage or invalid policies, [`CliError::Failed`] for everything else.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    run_with(cli, None).await
}

/// [`run`] with the AWS configuration given instead of read from the environment (tests point it
/// at a local emulator this way without touching process-wide variables).
///
/// # Errors
/// As [`run`].
pub async fn run_with(cli: Cli, conf: Option<aws_config::SdkConfig>) -> Result<(), CliError> {
    // --region / --profile: the configuration is loaded here, once, with them.
    let conf = match conf {
        Some(c) => Some(c),
        None if cli.region.is_some() || cli.profile.is_some() => Some(
            crate::aws::sdk_config(cli.region.as_deref(), cli.profile.as_deref())
                .await
                .map_err(|e| CliError::Failed(format!("failed to set up AWS clients: {e}")))?,
        ),
        None => None,
    };
    let conf = conf.as_ref();
    match cli.command {
        Command::Policy(PolicyCommand::Check { dir, rate, output }) => {
            policy_check(&dir, rate, output)
        }
        Command::Policy(PolicyCommand::Show {
            dir,
            deployed,
            agent,
            output,
        }) => policy_show(conf, &dir, deployed.then_some(agent.as_str()), output).await,
        Command::Policy(PolicyCommand::Schema) => {
            say!(
                "{}",
                serde_json::to_string_pretty(&policy::json_schema()).unwrap_or_default()
            );
            Ok(())
        }
        Command::Demo { policy, rps, seed } => demo(policy.as_deref(), rps, seed),
        Command::Bench(args) => bench::bench(&args),
        Command::Run {
            policies,
            once,
            interval,
            dry_run,
        } => {
            let mut agent = aws_agent(conf).await?;
            agent.dry_run = dry_run;
            run_loop(&agent, &policies.dir, once, interval).await
        }
        Command::Status {
            function,
            release,
            output,
            policies,
        } => status(conf, function, release, output, &policies.dir).await,
        Command::Wait {
            subject,
            version,
            timeout,
            interval,
            policies,
        } => {
            let agent = aws_agent(conf).await?;
            match subject.target()? {
                Target::Function(f) => {
                    let policy = find_policy(&policies.dir, &f)?;
                    wait::run(&agent, &policy, version, timeout, interval).await
                }
                Target::Release(r) => {
                    let members = manual::release_policies(&policies.dir, &r)?;
                    wait::run_release(&agent, &r, &members, timeout, interval).await
                }
            }
        }
        Command::Start { .. }
        | Command::Promote { .. }
        | Command::Rollback { .. }
        | Command::Pause { .. }
        | Command::Resume { .. } => {
            let command = manual::override_of(cli.command)?;
            manual::run(conf, command).await
        }
    }
}

/// Reads and validates one policy file named on the command line.
pub(crate) fn read_policy(path: &Path) -> Result<Policy, CliError> {
    let text = policy::read_policy_file(path)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    policy::parse_policy(path, &text).map_err(|e| CliError::Usage(e.to_string()))
}

fn demo(path: Option<&Path>, rps: f64, seed: u64) -> Result<(), CliError> {
    let policy = match path {
        Some(p) => read_policy(p)?,
        None => example_policy(),
    };
    if !(rps > 0.0 && rps.is_finite()) {
        return Err(CliError::Usage("--rps must be positive".to_string()));
    }
    let tick = crate::sim::visibility_delay(&policy);
    for line in crate::sim::demo::run(&crate::sim::demo::DemoConfig {
        policy,
        rps,
        tick,
        seed,
    }) {
        say!("{line}");
    }
    Ok(())
}

type AwsAgent =
    Agent<crate::aws::LambdaAliases, crate::aws::CloudWatchMetrics, crate::aws::SnsNotifier>;

/// Lambda control-plane requests a second the agent allows itself by default: two thirds of
/// the account's 15, leaving the rest to deploys and people.
pub const DEFAULT_LAMBDA_RPS: f64 = 10.0;

/// The agent's Lambda request rate: `CANARY_LAMBDA_RPS`, or [`DEFAULT_LAMBDA_RPS`].
///
/// # Errors
/// [`CliError::Usage`] when the variable is not a number from 0.1 to 1000.
pub fn lambda_rps(value: Option<&str>) -> Result<f64, CliError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(DEFAULT_LAMBDA_RPS);
    };
    match text.parse::<f64>() {
        Ok(r) if (0.1..=1000.0).contains(&r) => Ok(r),
        _ => Err(CliError::Usage(format!(
            "CANARY_LAMBDA_RPS must be a number of Lambda requests a second from 0.1 to 1000, got {text:?}"
        ))),
    }
}

/// Aliases a tick reads at most at `rps` Lambda requests a second: the reads may use 60% of the
/// tick's budget, the rest is for writes, version checks and retries.
#[must_use]
pub fn reads_per_tick(rps: f64) -> usize {
    let reads = rps * crate::tick::DEFAULT_TICK_BUDGET.as_secs_f64() * 0.6;
    // Bounded by lambda_rps: at most 1000 × 40 × 0.6.
    reads.floor().max(1.0) as usize
}

/// The ledger table of published announcements: `CANARY_LEDGER_TABLE`, or none.
///
/// # Errors
/// [`CliError::Usage`] when the variable is neither a DynamoDB table name nor a table ARN.
pub fn ledger_table(value: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    crate::aws::DynamoLedger::check_table(text)
        .map_err(|e| CliError::Usage(format!("CANARY_LEDGER_TABLE: {e}")))?;
    Ok(Some(text.to_string()))
}

async fn aws_agent(conf: Option<&aws_config::SdkConfig>) -> Result<AwsAgent, CliError> {
    let rps = lambda_rps(std::env::var("CANARY_LAMBDA_RPS").ok().as_deref())?;
    let table = ledger_table(std::env::var("CANARY_LEDGER_TABLE").ok().as_deref())?;
    let loaded;
    let conf = match conf {
        Some(c) => c,
        None => {
            loaded = crate::aws::sdk_config(None, None)
                .await
                .map_err(|e| CliError::Failed(format!("failed to set up AWS clients: {e}")))?;
            &loaded
        }
    };
    let mut ports = crate::aws::AwsPorts::from_conf(conf);
    if let Some(table) = table {
        let ledger = crate::aws::DynamoLedger::new(conf, &table);
        ports.notifier = ports.notifier.with_ledger(ledger);
    }
    ports.aliases = ports.aliases.with_pace(rps);
    let mut agent = Agent::new(ports.aliases, ports.metrics, ports.notifier);
    agent.reads_per_tick = Some(reads_per_tick(rps));
    agent.topic_override = std::env::var("CANARY_TOPIC_ARN")
        .ok()
        .filter(|s| !s.is_empty());
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::policies::step_estimate;
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn the_example_policy_is_the_shipped_notes_create_policy_and_every_shipped_policy_is_valid() {
        let on_disk = policy::load_dir(&shipped());
        assert!(on_disk.is_ok(), "{:?}", on_disk.problems);
        assert_eq!(on_disk.policies.len(), 5);
        let example = example_policy();
        let shipped_create = on_disk
            .policies
            .iter()
            .find(|p| p.function == "notes-create")
            .expect("notes-create");
        // Equal but for the path it was read from.
        assert_eq!(
            Policy {
                source: shipped_create.source.clone(),
                ..example
            },
            *shipped_create
        );
    }

    #[test]
    fn the_ledger_table_from_the_environment_is_checked_and_named_in_errors() {
        assert_eq!(ledger_table(None).ok(), Some(None));
        assert_eq!(ledger_table(Some("  ")).ok(), Some(None));
        assert_eq!(
            ledger_table(Some("canary-ledger")).ok(),
            Some(Some("canary-ledger".to_string()))
        );
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/canary-ledger";
        assert_eq!(ledger_table(Some(arn)).ok(), Some(Some(arn.to_string())));
        for bad in [
            "ab",
            "my table",
            "a/b",
            &"x".repeat(256),
            "arn:aws:sns:us-east-1:1:topic",
        ] {
            let Err(CliError::Usage(e)) = ledger_table(Some(bad)) else {
                panic!("{bad:?} accepted");
            };
            assert!(e.starts_with("CANARY_LEDGER_TABLE: "), "{e}");
            assert!(e.contains("not a DynamoDB table"), "{e}");
        }
        // CANARY_LAMBDA_RPS: aws::tests::the_lambda_request_rate_is_bounded_and_named_when_wrong.
    }

    #[test]
    fn policy_check_exits_2_on_any_invalid_file_and_0_otherwise() {
        assert!(policy_check(&shipped(), None, Output::Text).is_ok());
        assert!(policy_check(&shipped(), Some(0.05), Output::Json).is_ok());
        let p = Policy::with_defaults("f");
        assert_eq!(
            step_estimate(&p, 0.05),
            "at 0.05 req/s: 10% 5h33m (min_requests), 25% 2h13m (min_requests), 50% 1h6m (min_requests); about 8h53m to 100% when healthy"
        );
        // A warm-up longer than the step: the latency periods past it set each step.
        let mut slow = p.clone();
        slow.latency.warmup = Some(Duration::from_secs(600));
        assert_eq!(
            step_estimate(&slow, 10.0),
            "at 10 req/s: 10% 13m (latency warm-up), 25% 11m (latency warm-up), 50% 11m (latency warm-up); about 35m to 100% when healthy"
        );
        // A step that would take more than a week is said to, not summed into a total.
        let mut starved = p.clone();
        starved.min_requests = 1_000_000_000;
        assert_eq!(
            step_estimate(&starved, 0.05),
            "at 0.05 req/s: 10% more than a week (min_requests), 25% more than a week (min_requests), 50% more than a week (min_requests); such a step never finishes in practice"
        );
        assert!(parse_rate("0").is_err() && parse_rate("x").is_err() && parse_rate("2e6").is_err());
        // The value as written, not its every decimal digit.
        assert!(parse_rate(" 1e308").is_err_and(|e| e.ends_with("got 1e308")));
        let dir = crate::test_dir("cli-check");
        std::fs::write(dir.join("good.yaml"), "function: good\n").expect("write");
        std::fs::write(
            dir.join("bad.yaml"),
            "function: bad\nerrors:\n  max_rate: 1.5\n",
        )
        .expect("write");
        let err = policy_check(&dir, None, Output::Text).expect_err("invalid file");
        assert_eq!(err.exit_code(), 2);
        let empty = crate::test_dir("cli-empty");
        assert_eq!(
            policy_check(&empty, None, Output::Json)
                .expect_err("no files")
                .exit_code(),
            2
        );
    }

    #[cfg(unix)]
    #[test]
    fn policy_check_exits_2_on_a_dangling_policy_link() {
        let dir = crate::test_dir("cli-dangling");
        std::fs::write(dir.join("good.yaml"), "function: good\n").expect("write");
        std::os::unix::fs::symlink(dir.join("moved.yaml"), dir.join("bad.yaml")).expect("link");
        let err = policy_check(&dir, None, Output::Text).expect_err("dangling link");
        assert_eq!(err.exit_code(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_functions_are_usage_errors_that_list_the_known_ones() {
        let err = find_policy(&shipped(), "notes-nope").expect_err("unknown");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("notes-create:live"), "{err}");
        assert_eq!(
            find_policy(&shipped(), "notes-get:live")
                .expect("found")
                .function,
            "notes-get"
        );
    }

    #[test]
    fn arguments_parse_like_the_contract() {
        let cli =
            Cli::try_parse_from(["canary", "run", "--once", "--interval", "10s", "--dry-run"])
                .expect("parses");
        assert!(
            matches!(cli.command, Command::Run { once: true, dry_run: true, interval, .. } if interval == Duration::from_secs(10))
        );
        let cli = Cli::try_parse_from([
            "canary",
            "rollback",
            "notes-create",
            "--to",
            "6",
            "--reason",
            "bad",
        ])
        .expect("parses");
        assert!(matches!(cli.command, Command::Rollback { to: Some(6), .. }));
        assert!(Cli::try_parse_from(["canary", "run", "--interval", "0s"]).is_err());
        assert!(
            Cli::try_parse_from(["canary", "promote"]).is_err(),
            "FUNCTION is required"
        );
    }

    #[test]
    fn the_demo_runs_offline() {
        assert!(demo(None, 10.0, 3).is_ok());
        assert_eq!(demo(None, 0.0, 3).expect_err("bad rps").exit_code(), 2);
    }

    #[test]
    fn run_once_exits_1_when_a_page_could_not_be_sent_and_0_once_it_is() {
        // Issue 8, defect 9: `run --once` exited 0 when every SNS publish failed.
        use crate::sim::traffic::{Build, Traffic};
        use crate::sim::{agent, Shared, SimFunction, World};
        let dir = crate::test_dir("cli-pages");
        std::fs::write(
            dir.join("f.yaml"),
            "function: f\nnotify:\n  topic_arn: arn:aws:sns:us-east-1:123456789012:alerts\n",
        )
        .expect("write policy");
        let policy = policy::load_dir(&dir).policies.remove(0);
        let start = now();
        let mut w = World::new(start - 300, Traffic::steady(10.0), 60, 7);
        w.functions
            .push(SimFunction::new(policy, Build::healthy(), start - 300));
        w.functions[0].deploy(Build::healthy());
        let w = Shared::new(w);
        let a = agent(&w);
        *a.notifier.down.lock().expect("lock") = true;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let interval = Duration::from_secs(60);
        let err = rt
            .block_on(run_loop(&a, &dir, true, interval))
            .expect_err("the start was not announced");
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("1 of 1 policies failed"), "{err}");
        assert!(w.lock().functions[0].canary.is_some(), "the start stands");
        *a.notifier.down.lock().expect("lock") = false;
        rt.block_on(run_loop(&a, &dir, true, interval))
            .expect("the owed page is sent");
        let sent = a.notifier.take();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0]
            .1
            .subject
            .starts_with("(re-sent) Canary started: f v2"));
    }
}
