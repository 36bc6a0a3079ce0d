//! A race and fault campaign: the canary agent, in-process, against moto through a [`Proxy`]
//! that enforces `RevisionId` and SNS's subject rules and injects faults.
//!
//! Every round deploys a new candidate version (healthy or failing, by a seeded draw), then runs a
//! few steps in which two agents tick at once while a person runs a command (`rollback [--to]`,
//! `pause`, `resume`, `promote [--full]`, `start --version`) with faults on, then a settle phase
//! of clean ticks by one agent with faults off. What is checked:
//!
//! - **half-applied alias**: after every step the `live` alias's routing and the agent record in
//!   its description agree (the record's canary is the routed version at the routed step's
//!   weight; no routing, no canary in the record);
//! - **restarted rollback**: replaying the proxy's `UpdateAlias` log, a version that was rolled
//!   back (by the agent or a person) is never started again by an agent, only by a person's
//!   `start --version`, until a newer candidate is deployed, unless the agent's own rollback in
//!   the bake was lifted by its recheck (a write whose record newly names it `lifted`);
//! - **pages lost**: every rollback in the log has, by the end of the round's settle phase, an
//!   SNS message with attributes `event` = `rolled_back`, `function` and `canary_version` = the
//!   rolled-back version, both in an unfiltered queue and in a queue subscribed with the filter
//!   policy `{"event": ["rolled_back"]}`;
//! - **panics and hangs**: every tick and command runs in its own task under a time limit.
//!
//! ```ignore
//! let report = lambda_canary_tests::campaign::run(&CampaignConfig::new(20, 1)).await;
//! println!("{}", report.markdown());
//! ```

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use canary_agent::aws::{CloudWatchMetrics, LambdaAliases, SnsNotifier};
use canary_agent::policy::Policy;
use canary_agent::tick::{Agent, Outcome};

use crate::proxy::{FaultRates, Proxy, ProxyConfig, SubjectRule};
use crate::{this_minute, Inbox};

mod checks;
mod commands;
mod lab;
mod report;

use checks::Replay;
pub use lab::{agent, ledgered_agent, policy, AliasView, Lab, Minute, FAILING, HEALTHY};
pub use report::{Report, ViolationKind};

/// The function the campaign protects.
pub const FUNCTION: &str = "notes-create";
/// The filter policy on-call uses to keep only rollbacks.
pub const ROLLBACK_FILTER: &str = r#"{"event": ["rolled_back"]}"#;
/// Application name of the first agent's SDK clients (`app/NAME` in the user agent).
pub const AGENT_A: &str = "campaign-agent-a";
/// Application name of the second agent's SDK clients.
pub const AGENT_B: &str = "campaign-agent-b";
/// The agents' ledger of pages (DynamoDB).
pub const LEDGER_TABLE: &str = "lambda-canary-sent";
/// Application name of the person's SDK clients.
pub const PERSON: &str = "campaign-person";

/// The agent on the real SDK adapters.
pub type AwsAgent = Agent<LambdaAliases, CloudWatchMetrics, SnsNotifier>;

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Number of rounds (one deploy each).
    pub rounds: usize,
    /// Seed of every random choice (faults, builds, commands).
    pub seed: u64,
    /// Fault probabilities, the same for Lambda, CloudWatch and SNS.
    pub faults: FaultRates,
    /// Shortest and longest injected delay.
    pub delay: (Duration, Duration),
    /// SNS subject rule the proxy enforces.
    pub subject_rule: SubjectRule,
    /// Probability that a deployed build fails every request.
    pub bad_share: f64,
    /// Probability that a person runs a command in a faulted step.
    pub command_share: f64,
    /// Faulted steps per round (two agent ticks and maybe a command each).
    pub fault_steps: usize,
    /// Clean ticks per round, faults off.
    pub settle_ticks: usize,
    /// A tick or command that takes longer than this is a hang (and is aborted).
    pub hang_after: Duration,
    /// First retry backoff of the agents' and the person's SDK clients (the SDK's default is
    /// 1 s; the number of attempts stays the default 3).
    pub retry_backoff: Duration,
    /// Print a progress line to stderr every this many rounds (0: never).
    pub progress_every: usize,
    /// The agents keep their ledger of pages in a DynamoDB table (as `agent/template.yaml`
    /// deploys them), faulted like the other services; the person's commands have none.
    pub ledger: bool,
}

impl CampaignConfig {
    /// `rounds` rounds with [`FaultRates::TYPICAL`], delays of 2–10 s and the ASCII subject rule.
    #[must_use]
    pub fn new(rounds: usize, seed: u64) -> Self {
        Self {
            rounds,
            seed,
            faults: FaultRates::TYPICAL,
            delay: (Duration::from_secs(2), Duration::from_secs(10)),
            subject_rule: SubjectRule::Ascii,
            bad_share: 0.5,
            command_share: 0.6,
            fault_steps: 3,
            settle_ticks: 3,
            hang_after: Duration::from_secs(180),
            retry_backoff: Duration::from_millis(50),
            progress_every: 0,
            ledger: true,
        }
    }
}

/// The campaign's own random choices.
type Rng = crate::SplitMix64;

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo + 1)
        }
    }
}

/// How a task run under [`guarded`] ended.
enum Guarded<T> {
    Done(T),
    Panicked(String),
    Hung,
}

/// Runs `fut` in its own task; a panic or a run past `deadline` is reported, not propagated.
async fn guarded<T: Send + 'static>(
    handle: tokio::task::JoinHandle<T>,
    deadline: tokio::time::Instant,
) -> Guarded<T> {
    let abort = handle.abort_handle();
    match tokio::time::timeout_at(deadline, handle).await {
        Ok(Ok(v)) => Guarded::Done(v),
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-text panic".to_string());
            Guarded::Panicked(text)
        }
        Ok(Err(_)) => Guarded::Panicked("task cancelled".to_string()),
        Err(_) => {
            abort.abort();
            Guarded::Hung
        }
    }
}

fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut)
}

/// The running campaign.
struct Campaign<'a> {
    config: &'a CampaignConfig,
    lab: Lab,
    proxy: Proxy,
    policy: Policy,
    agents: [AwsAgent; 2],
    person: AwsAgent,
    inbox: Inbox,
    filtered: Inbox,
    rng: Rng,
    /// Whether version `v` fails (index `v`).
    bad: Vec<bool>,
    replay: Replay,
    seen_ids: [HashSet<String>; 2],
    report: Report,
}

/// Runs a campaign and returns its figures.
///
/// # Panics
/// If moto cannot be started, the proxy cannot bind, or moto refuses a setup call (not the calls
/// under test: their failures are counted).
pub async fn run(config: &CampaignConfig) -> Report {
    let started = Instant::now();
    let mut campaign = Campaign::start(config).await;
    let round_secs = campaign.round_secs();
    let rounds = i64::try_from(config.rounds).unwrap_or(i64::MAX / round_secs / 2);
    let t0 = this_minute() - rounds * round_secs - 3600;
    for round in 0..config.rounds {
        campaign.round(round, t0 + round as i64 * round_secs).await;
        if config.progress_every > 0 && (round + 1) % config.progress_every == 0 {
            campaign.progress(round, started);
        }
    }
    campaign.finish(started)
}

impl<'a> Campaign<'a> {
    /// The lab, the proxy in front of moto (faults off), two agents and a person through it,
    /// on-call's two queues and the protected function.
    async fn start(config: &'a CampaignConfig) -> Self {
        let lab = Lab::start().await;
        let proxy = Proxy::start(
            ProxyConfig {
                delay: config.delay,
                subject_rule: config.subject_rule,
                faults_on: false,
                ..ProxyConfig::new(&lab.moto.endpoint, config.seed)
            }
            .with_faults(config.faults),
        )
        .await
        .expect("start the proxy");
        let retry = RetryConfig::standard().with_initial_backoff(config.retry_backoff);
        let via = |app: &'static str| {
            lab.moto
                .sdk_config_via(proxy.endpoint(), Some(app), retry.clone())
        };
        if config.ledger {
            lab.create_ledger(LEDGER_TABLE).await;
        }
        let (a, b) = (via(AGENT_A).await, via(AGENT_B).await);
        let agents = if config.ledger {
            [
                ledgered_agent(&a, &a, LEDGER_TABLE),
                ledgered_agent(&b, &b, LEDGER_TABLE),
            ]
        } else {
            [agent(&a), agent(&b)]
        };
        let person = agent(&via(PERSON).await);
        let inbox = Inbox::subscribe(&lab.sdk, &lab.topic_arn, "on-call").await;
        let filtered = Inbox::subscribe_filtered(
            &lab.sdk,
            &lab.topic_arn,
            "on-call-rollbacks",
            Some(ROLLBACK_FILTER),
        )
        .await;
        lab.create_function(FUNCTION).await;
        Self {
            config,
            policy: policy(FUNCTION, &lab.topic_arn),
            agents,
            person,
            inbox,
            filtered,
            rng: crate::SplitMix64(config.seed ^ 0x00ca_4a2e_5eed),
            bad: vec![false, false],
            replay: Replay {
                stable: 1,
                ..Replay::default()
            },
            seen_ids: [HashSet::new(), HashSet::new()],
            report: Report::default(),
            lab,
            proxy,
        }
    }

    /// A progress line on stderr after `round`.
    fn progress(&self, round: usize, started: Instant) {
        let r = &self.report;
        eprintln!(
            "round {}/{}: {} writes, {} violations, {} pages lost ({} filtered), {} panics, {} hangs, {:.0} s",
            round + 1,
            self.config.rounds,
            self.proxy.stats().alias_writes,
            r.violations_total(),
            r.pages_lost,
            r.pages_lost_filtered,
            r.panics,
            r.hangs,
            started.elapsed().as_secs_f64()
        );
    }

    /// The report, with the proxy's figures and the time taken.
    fn finish(self, started: Instant) -> Report {
        let mut report = self.report;
        report.rounds = self.config.rounds;
        report.proxy = self.proxy.stats();
        report.rejected_subjects = self
            .proxy
            .rejected_subjects()
            .into_iter()
            .take(20)
            .collect();
        report.elapsed = started.elapsed();
        report
    }

    fn round_secs(&self) -> i64 {
        let steps = self.config.fault_steps + self.config.settle_ticks;
        60 * (i64::try_from(steps).unwrap_or(60) + 2)
    }

    async fn round(&mut self, round: usize, t: i64) {
        // Deploy: a new candidate, healthy or failing; metrics for it and the versions that may
        // serve beside it this round.
        let bad = self.rng.chance(self.config.bad_share);
        let v = self.lab.release(FUNCTION).await;
        if self.bad.len() <= v as usize {
            self.bad.resize(v as usize + 1, false);
        }
        self.bad[v as usize] = bad;
        self.report.bad_builds += u64::from(bad);
        // A newer candidate lifts the protection of every older rolled-back version.
        self.replay.blocked.clear();
        self.replay.round_rollbacks.clear();
        let live = self.lab.alias(FUNCTION, "live").await;
        let mut versions: BTreeSet<u64> = (v.saturating_sub(3).max(1)..=v).collect();
        versions.insert(live.stable);
        versions.extend(live.routed().iter().map(|(c, _)| *c));
        let series: Vec<(u64, Minute)> = versions
            .iter()
            .map(|&x| {
                let failing = self.bad.get(x as usize).copied().unwrap_or(false);
                (x, if failing { FAILING } else { HEALTHY })
            })
            .collect();
        let steps = i64::try_from(self.config.fault_steps + self.config.settle_ticks).unwrap_or(60);
        self.lab
            .put_minutes(FUNCTION, &series, t - 60, steps + 2)
            .await;

        // Faulted steps: two agents at once and maybe a person.
        self.proxy.set_faults(true);
        for step in 0..self.config.fault_steps {
            let now = t + 30 + 60 * step as i64;
            self.faulted_step(round, now, v).await;
            self.check_alias(round, &format!("fault step {step}")).await;
        }
        // Settle: faults off, one agent, clean ticks.
        self.proxy.set_faults(false);
        for k in 0..self.config.settle_ticks {
            let now = t + 30 + 60 * (self.config.fault_steps + k) as i64;
            let deadline = tokio::time::Instant::now() + self.config.hang_after;
            let a = self.agents[0].clone();
            let p = self.policy.clone();
            let handle = spawn(async move { a.tick(std::slice::from_ref(&p), now).await });
            let result = guarded(handle, deadline).await;
            self.tick_result(round, "settle tick", result, true);
            self.check_alias(round, &format!("settle tick {k}")).await;
        }
        self.replay_log(round);
        self.check_pages(round).await;
    }

    async fn faulted_step(&mut self, round: usize, now: i64, candidate: u64) {
        let deadline = tokio::time::Instant::now() + self.config.hang_after;
        let ticks: Vec<_> = self
            .agents
            .iter()
            .map(|a| {
                let a = a.clone();
                let p = self.policy.clone();
                spawn(async move { a.tick(std::slice::from_ref(&p), now).await })
            })
            .collect();
        let command = if self.rng.chance(self.config.command_share) {
            let live = self.lab.alias(FUNCTION, "live").await;
            let c = self.choose_command(&live, candidate);
            let pause = Duration::from_millis(self.rng.between(0, 40));
            let person = self.person.clone();
            let p = self.policy.clone();
            let cmd = c.clone();
            Some((
                c,
                spawn(async move {
                    tokio::time::sleep(pause).await;
                    person.command(&p, &cmd.ovr, &cmd.line, now).await
                }),
            ))
        } else {
            None
        };
        for handle in ticks {
            let result = guarded(handle, deadline).await;
            self.tick_result(round, "faulted tick", result, false);
        }
        if let Some((c, handle)) = command {
            let result = guarded(handle, deadline).await;
            self.command_result(round, &c, result);
        }
    }

    fn tick_result(
        &mut self,
        round: usize,
        what: &str,
        result: Guarded<Vec<Outcome>>,
        settle: bool,
    ) {
        self.report.ticks += 1;
        match result {
            Guarded::Done(outcomes) => {
                for out in outcomes {
                    if out.error.is_some() {
                        self.report.tick_errors += 1;
                        self.report.settle_errors += u64::from(settle);
                    }
                    if matches!(out.notified, Some(Err(_))) {
                        self.report.publish_failures += 1;
                    }
                }
            }
            Guarded::Panicked(why) => {
                self.report.panics += 1;
                self.report
                    .example(format!("round {round}: {what} panicked: {why}"));
            }
            Guarded::Hung => {
                self.report.hangs += 1;
                self.report.example(format!(
                    "round {round}: {what} did not finish within {:?}",
                    self.config.hang_after
                ));
            }
        }
    }
}
