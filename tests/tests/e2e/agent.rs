//! The canary agent end to end: the real SDK adapters (`AwsPorts`) against moto — Lambda aliases
//! hold the state, CloudWatch `AWS/Lambda` metrics feed the judge, SNS → SQS shows what on-call
//! receives — driven by `Agent::tick` on a virtual clock and by `canary` commands through
//! `cli::run_with`.
//!
//! moto computes no percentiles (policies here judge `Average` latency) and never checks or
//! changes an alias's `RevisionId` (conflicts are covered with mocks in `agent/src/aws/tests.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use canary_agent::cli::{run_with, Cli, CliError};
use canary_agent::judge::Verdict;
use canary_agent::policy::{parse_policy, Notify, Policy};
use canary_agent::rollout::{Action, Record, Routing};
use canary_agent::tick::Outcome;
use clap::Parser;
use lambda_canary_tests::campaign::{AwsAgent, Lab, Minute};
use lambda_canary_tests::{this_minute, Delivered, Inbox};

/// The function of the classic story.
const F: &str = "notes-create";
/// A topic that does not exist in moto (well formed, so the policy is valid).
const MISSING_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:no-such-topic";

/// A virtual start an hour back: every virtual tick of a test stays in the past, where moto
/// serves the datapoints written for it.
fn an_hour_ago() -> i64 {
    this_minute() - 3600
}

/// One minute of `AWS/Lambda` numbers of one version.
const HEALTHY_CANARY: Minute = Minute {
    invocations: 20.0,
    errors: 0.0,
    duration_ms: 100.0,
};
const FAILING_CANARY: Minute = Minute {
    invocations: 20.0,
    errors: 20.0,
    duration_ms: 100.0,
};
const BASELINE: Minute = Minute {
    invocations: 180.0,
    errors: 0.0,
    duration_ms: 100.0,
};

/// The `live` alias as moto has it.
#[derive(Debug)]
struct Live {
    stable: String,
    /// Routing weights as Lambda stores them (fractions).
    weights: BTreeMap<String, f64>,
    record: Record,
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("canary-e2e-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One moto with a topic on-call is subscribed to, and helpers to deploy and observe.
struct World {
    inbox: Inbox,
    policies: TempDir,
    /// moto, its clients, the Lambda role and the topic (last: moto stops after the rest).
    lab: Lab,
}

impl World {
    async fn new() -> Self {
        let lab = Lab::start().await;
        let inbox = Inbox::subscribe(&lab.sdk, &lab.topic_arn, "on-call").await;
        Self {
            inbox,
            policies: TempDir::new(),
            lab,
        }
    }

    fn agent(&self) -> AwsAgent {
        lambda_canary_tests::campaign::agent(&self.lab.sdk)
    }

    /// A policy notifying this world's topic, parsed, and written to the policy directory.
    fn policy(&self, function: &str, steps: &str, extra: &str) -> Policy {
        let text = lambda_canary_tests::lambda_lab::policy_yaml(
            function,
            steps,
            &self.lab.topic_arn,
            extra,
        );
        let path = self.policies.0.join(format!("{function}.yaml"));
        std::fs::write(&path, &text).expect("write policy");
        parse_policy(&path, &text).unwrap_or_else(|e| panic!("invalid test policy: {e}"))
    }

    fn dir(&self) -> &Path {
        &self.policies.0
    }

    /// `canary ARGS... --policies DIR` in-process against moto.
    async fn canary(&self, args: &[&str]) -> Result<(), CliError> {
        let dir = self.dir().to_str().expect("utf-8 temp dir").to_string();
        let argv: Vec<&str> = std::iter::once("canary")
            .chain(args.iter().copied())
            .chain(["--policies", &dir])
            .collect();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        run_with(cli, Some(self.lab.sdk.clone())).await
    }

    /// Creates `function` with version 1 and points `live` and `candidate` at it (nothing new
    /// to roll out).
    async fn create_function(&self, function: &str) {
        self.lab.create_function(function).await;
    }

    /// What `sam deploy` does: new code, a new version, `candidate` pointed at it.
    async fn release(&self, function: &str) -> u64 {
        self.lab.release(function).await
    }

    async fn live(&self, function: &str) -> Live {
        let alias = self.lab.alias(function, "live").await;
        Live {
            stable: alias.stable.to_string(),
            record: Record::decode(&alias.description),
            weights: alias.weights,
        }
    }

    /// Writes one minute (starting at `minute`) of `AWS/Lambda` metrics of `version` as served
    /// through `live`.
    async fn put_minute(&self, function: &str, version: u64, minute: i64, m: Minute) {
        self.lab
            .put_minutes(function, &[(version, m)], minute, 1)
            .await;
    }

    /// One minute of traffic through `live`: the canary's and the stable version's numbers.
    async fn traffic(&self, function: &str, stable: u64, canary: u64, minute: i64, c: Minute) {
        self.lab
            .put_minutes(function, &[(canary, c), (stable, BASELINE)], minute, 1)
            .await;
    }
}

#[path = "release.rs"]
mod release;

/// One tick over several policies, none of which fails.
async fn tick_all(agent: &AwsAgent, policies: &[Policy], now: i64) -> Vec<Outcome> {
    let outs = agent.tick(policies, now).await;
    for out in &outs {
        assert_eq!(out.error, None, "tick at {now} failed: {out:?}");
    }
    outs
}

/// One tick of one policy.
async fn tick(agent: &AwsAgent, policy: &Policy, now: i64) -> Outcome {
    let mut outs = agent.tick(std::slice::from_ref(policy), now).await;
    assert_eq!(outs.len(), 1);
    let out = outs.remove(0);
    assert_eq!(out.error, None, "tick at {now} failed: {out:?}");
    out
}

fn action(out: &Outcome) -> &Action {
    &out.decision.as_ref().expect("a decision").action
}

fn weights(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

fn attr<'a>(m: &'a Delivered, name: &str) -> &'a str {
    m.attributes.get(name).map_or("", String::as_str)
}

fn subjects(messages: &[Delivered]) -> Vec<&str> {
    messages.iter().map(|m| m.subject.as_str()).collect()
}

/// Exactly one message arrived; returns it.
async fn one_message(w: &World) -> Delivered {
    let mut messages = w.inbox.drain().await;
    assert_eq!(messages.len(), 1, "{:?}", subjects(&messages));
    messages.remove(0)
}

#[tokio::test]
async fn a_failing_build_is_rolled_back_and_paged_then_a_fixed_build_walks_every_step_to_100() {
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 50, 100]", "");
    let agent = w.agent();
    let t0 = an_hour_ago();

    // The deploy: v2 (every POST /notes answers 502) behind `candidate`.
    assert_eq!(w.release(F).await, 2);
    let out = tick(&agent, &policy, t0 + 5).await;
    assert_eq!(
        action(&out),
        &Action::Start {
            version: 2,
            weight: 10.0
        }
    );
    let live = w.live(F).await;
    assert_eq!(live.stable, "1");
    assert_eq!(live.weights, weights(&[("2", 0.1)]));
    assert_eq!(live.record.canary, Some(2));
    assert_eq!((live.record.step, live.record.since), (0, t0 + 5));
    assert!(live.record.owed.is_empty(), "the start was announced");
    let started = one_message(&w).await;
    assert_eq!(
        started.subject,
        "Canary started: notes-create v2 at 10% (stable v1)"
    );
    assert_eq!(attr(&started, "event"), "started");

    // Its first minute: every canary request fails.
    w.traffic(F, 1, 2, t0 + 60, FAILING_CANARY).await;
    let out = tick(&agent, &policy, t0 + 90).await;
    assert!(
        matches!(
            action(&out),
            Action::Rollback {
                to: 1,
                rejected: Some(2),
                ..
            }
        ),
        "{out:?}"
    );
    let j = out.judgement.as_ref().expect("judged");
    assert_eq!((j.canary.requests, j.canary.errors), (20.0, 20.0));
    assert_eq!(j.baseline.requests, 180.0);
    assert_eq!(out.notified, Some(Ok(())));
    let live = w.live(F).await;
    assert_eq!(live.stable, "1");
    assert!(live.weights.is_empty(), "no routing: {:?}", live.weights);
    assert_eq!(live.record.rejected, Some(2));
    assert_eq!(live.record.canary, None);
    assert!(live.record.owed.is_empty(), "{:?}", live.record.owed);
    let page = one_message(&w).await;
    assert!(
        page.subject
            .starts_with("ROLLED BACK notes-create v2 -> v1"),
        "{}",
        page.subject
    );
    assert_eq!(attr(&page, "event"), "rolled_back");
    assert_eq!(attr(&page, "function"), F);
    assert_eq!(attr(&page, "canary_version"), "2");
    assert_eq!(attr(&page, "stable_version"), "1");
    assert!(
        page.message.contains("v2 will not be started again"),
        "{}",
        page.message
    );
    assert!(
        page.message
            .contains("canary start notes-create --version 2"),
        "{}",
        page.message
    );

    // v2 stays rejected while `candidate` still points at it.
    for now in [t0 + 150, t0 + 210] {
        let out = tick(&agent, &policy, now).await;
        assert!(
            matches!(action(&out), Action::Hold(why) if why.contains("v2 was rolled back")),
            "{out:?}"
        );
        let live = w.live(F).await;
        assert_eq!((live.stable.as_str(), live.weights.len()), ("1", 0));
    }
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());

    // The fix: v3, healthy, walks 10% → 50% → 100%.
    assert_eq!(w.release(F).await, 3);
    let out = tick(&agent, &policy, t0 + 250).await;
    assert_eq!(
        action(&out),
        &Action::Start {
            version: 3,
            weight: 10.0
        }
    );
    assert_eq!(w.live(F).await.weights, weights(&[("3", 0.1)]));
    let mut moves = Vec::new();
    let mut messages = w.inbox.drain().await;
    for k in 0..10 {
        let minute = t0 + 300 + 60 * k;
        w.traffic(F, 1, 3, minute, HEALTHY_CANARY).await;
        let out = tick(&agent, &policy, minute + 30).await;
        // One tick at a time, so the order of the messages is the order of the ticks.
        messages.extend(w.inbox.drain().await);
        let a = action(&out).clone();
        match &a {
            // Healthy, waiting out its step interval or for its latency periods.
            Action::Hold(why) => assert!(
                why.starts_with("healthy") || why.starts_with(canary_agent::judge::LATENCY_WAIT),
                "{out:?}"
            ),
            Action::Step { weight, .. } => {
                let live = w.live(F).await;
                assert_eq!(live.stable, "1");
                assert_eq!(live.weights, weights(&[("3", weight / 100.0)]));
                moves.push(a);
            }
            Action::Promote { .. } => {
                moves.push(a);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        moves,
        vec![
            Action::Step {
                version: 3,
                step: 1,
                weight: 50.0
            },
            Action::Promote { version: 3 }
        ]
    );
    let live = w.live(F).await;
    assert_eq!(live.stable, "3");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    assert_eq!(live.record.canary, None);
    assert_eq!(
        subjects(&messages),
        vec![
            "Canary started: notes-create v3 at 10% (stable v1)",
            "Canary step: notes-create v3 to 50% (stable v1)",
            "Promoted notes-create v3 to 100% (was v1)",
        ]
    );
    assert_eq!(attr(&messages[2], "event"), "promoted");
    assert_eq!(attr(&messages[2], "canary_version"), "3");

    // The bake: at 100%, v3 fails half its requests (a build that breaks under full load).
    // After five minutes of it the agent points live back at v1, with one page.
    let promoted = live.record.since;
    let mut reverted = None;
    for k in 1..=8 {
        let minute = promoted - promoted % 60 + 60 * k;
        w.put_minute(
            F,
            3,
            minute,
            Minute {
                invocations: 200.0,
                errors: 100.0,
                duration_ms: 100.0,
            },
        )
        .await;
        let out = tick(&agent, &policy, minute + 30).await;
        match action(&out) {
            Action::Hold(why) => assert!(why.starts_with("baking v3"), "{out:?}"),
            Action::Rollback {
                to: 1,
                rejected: Some(3),
                why,
            } => {
                assert!(
                    why.starts_with("during the bake, against v1's numbers"),
                    "{why}"
                );
                reverted = Some(k);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(reverted.is_some_and(|k| k >= 5), "{reverted:?}");
    let live = w.live(F).await;
    assert_eq!((live.stable.as_str(), live.record.bake), ("1", None));
    assert_eq!(live.record.rejected, Some(3));
    let page = one_message(&w).await;
    assert!(
        page.subject
            .starts_with("ROLLED BACK notes-create v3 -> v1"),
        "{}",
        page.subject
    );
    assert!(
        page.message
            .contains("Numbers since the promotion, against v1 in the hour before the canary"),
        "{}",
        page.message
    );
}

#[tokio::test]
async fn manual_overrides_through_the_cli_apply_at_once_and_later_ticks_respect_them() {
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 25, 50, 100]", "");
    let agent = w.agent();
    // The CLI uses the real clock: virtual ticks start at the next minute so that every tick
    // comes after every command.
    let r = this_minute() + 60;

    assert_eq!(w.release(F).await, 2);
    assert!(matches!(
        action(&tick(&agent, &policy, r).await),
        Action::Start { version: 2, .. }
    ));
    w.inbox.drain().await;

    // pause: healthy minutes past the step interval do not move the weight.
    w.canary(&["pause", F]).await.expect("pause");
    let live = w.live(F).await;
    assert!(live.record.paused);
    assert_eq!(live.weights, weights(&[("2", 0.1)]));
    let paused = one_message(&w).await;
    assert_eq!(paused.subject, "Paused notes-create: canary frozen");
    assert_eq!(attr(&paused, "trigger"), "manual");
    assert!(
        paused.message.contains("`canary pause notes-create`"),
        "{}",
        paused.message
    );
    for k in 0..4 {
        w.traffic(F, 1, 2, r + 60 * k, HEALTHY_CANARY).await;
    }
    for now in [r + 70, r + 190, r + 230] {
        let out = tick(&agent, &policy, now).await;
        assert_eq!(
            action(&out),
            &Action::Hold("paused at 10%".into()),
            "{out:?}"
        );
        // Healthy and past the step interval: only the pause holds it.
        let j = out.judgement.as_ref().expect("judged");
        assert_eq!(j.verdict, Verdict::Healthy, "{j:?}");
    }
    assert_eq!(w.live(F).await.weights, weights(&[("2", 0.1)]));
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());

    // resume: the next tick moves on.
    w.canary(&["resume", F]).await.expect("resume");
    assert!(!w.live(F).await.record.paused);
    assert_eq!(
        one_message(&w).await.subject,
        "Resumed notes-create: canary moves again"
    );
    let out = tick(&agent, &policy, r + 235).await;
    assert!(
        matches!(action(&out), Action::Step { version: 2, step: 1, weight } if *weight == 25.0),
        "{out:?}"
    );
    assert_eq!(w.live(F).await.weights, weights(&[("2", 0.25)]));
    w.inbox.drain().await;

    // promote: the next step at once.
    w.canary(&["promote", F]).await.expect("promote");
    let live = w.live(F).await;
    assert_eq!(live.weights, weights(&[("2", 0.5)]));
    assert_eq!(live.record.step, 2);
    let stepped = one_message(&w).await;
    assert_eq!(
        stepped.subject,
        "Canary step: notes-create v2 to 50% (stable v1)"
    );
    assert!(
        stepped.message.contains("`canary promote notes-create`"),
        "{}",
        stepped.message
    );

    // promote --full: 100% at once.
    w.canary(&["promote", F, "--full"])
        .await
        .expect("promote --full");
    let live = w.live(F).await;
    assert_eq!(live.stable, "2");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    let promoted = one_message(&w).await;
    assert_eq!(
        promoted.subject,
        "Promoted notes-create v2 to 100% (was v1)"
    );
    assert!(
        promoted.message.contains("It bakes until"),
        "{}",
        promoted.message
    );

    // v2 bakes: the next build waits for the bake, and `promote` ends it.
    assert_eq!(w.release(F).await, 3);
    let out = tick(&agent, &policy, r + 250).await;
    assert!(
        matches!(action(&out), Action::Hold(why) if why.contains("v3 starts after it")),
        "{out:?}"
    );
    w.canary(&["promote", F])
        .await
        .expect("promote ends the bake");
    assert_eq!(
        one_message(&w).await.subject,
        "Baked notes-create v2: the release is done"
    );
    assert_eq!(w.live(F).await.record.bake, None);

    // The next build, rolled back by hand with a reason.
    assert!(matches!(
        action(&tick(&agent, &policy, r + 260).await),
        Action::Start { version: 3, .. }
    ));
    w.inbox.drain().await;
    let reason = "support reports blank notes";
    w.canary(&["rollback", F, "--reason", reason])
        .await
        .expect("rollback");
    let live = w.live(F).await;
    assert_eq!(live.stable, "2");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    assert_eq!(live.record.rejected, Some(3));
    let page = one_message(&w).await;
    assert_eq!(
        page.subject,
        format!("ROLLED BACK notes-create v3 -> v2: {reason}")
    );
    assert!(page.message.contains(reason), "{}", page.message);
    assert_eq!(attr(&page, "event"), "rolled_back");
    assert_eq!(attr(&page, "trigger"), "manual");

    // The agent does not restart the rolled-back version.
    let out = tick(&agent, &policy, r + 320).await;
    assert!(matches!(action(&out), Action::Hold(_)), "{out:?}");
    let live = w.live(F).await;
    assert_eq!((live.stable.as_str(), live.weights.len()), ("2", 0));
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());

    // Commands that do not apply are usage errors (exit 2) that say why.
    let err = w.canary(&["promote", F]).await.expect_err("no canary");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("no canary in progress on notes-create:live"),
        "{err}"
    );
    let err = w
        .canary(&["pause", "notes-nope"])
        .await
        .expect_err("unknown");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string().contains("no policy for notes-nope"),
        "{err}"
    );
    let err = w
        .canary(&["start", F, "--version", "99"])
        .await
        .expect_err("no such version");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("has no version 99"), "{err}");
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());
    assert_eq!(
        w.live(F).await.weights.len(),
        0,
        "failed commands change nothing"
    );

    // start --version restarts the rejected version.
    w.canary(&["start", F, "--version", "3"])
        .await
        .expect("start");
    let live = w.live(F).await;
    assert_eq!(live.stable, "2");
    assert_eq!(live.weights, weights(&[("3", 0.1)]));
    assert_eq!(
        live.record.rejected,
        Some(3),
        "the newest rolled-back version is still remembered"
    );
    assert_eq!(
        one_message(&w).await.subject,
        "Canary started: notes-create v3 at 10% (stable v2)"
    );
}

#[tokio::test]
async fn a_paused_canary_still_rolls_back_on_a_regression() {
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 50, 100]", "");
    let agent = w.agent();
    let r = this_minute() + 60;
    assert_eq!(w.release(F).await, 2);
    tick(&agent, &policy, r).await;
    w.canary(&["pause", F]).await.expect("pause");
    w.inbox.drain().await;

    w.traffic(F, 1, 2, r, FAILING_CANARY).await;
    let out = tick(&agent, &policy, r + 30).await;
    assert!(
        matches!(
            action(&out),
            Action::Rollback {
                to: 1,
                rejected: Some(2),
                ..
            }
        ),
        "{out:?}"
    );
    let live = w.live(F).await;
    assert_eq!(live.stable, "1");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    let page = one_message(&w).await;
    assert!(
        page.subject
            .starts_with("ROLLED BACK notes-create v2 -> v1"),
        "{}",
        page.subject
    );
}

#[tokio::test]
async fn run_once_processes_the_valid_policies_beside_a_broken_one_and_exits_2() {
    let w = World::new().await;
    w.create_function(F).await;
    w.policy(F, "[10, 50, 100]", "");
    std::fs::write(
        w.dir().join("notes-get.yaml"),
        "function: notes-get\nerrors:\n  max_rate: 1.5\n",
    )
    .expect("write broken policy");
    assert_eq!(w.release(F).await, 2);

    let err = w
        .canary(&["run", "--once"])
        .await
        .expect_err("a broken policy file");
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("1 policy problem(s)"), "{err}");

    let live = w.live(F).await;
    assert_eq!(live.stable, "1");
    assert_eq!(live.weights, weights(&[("2", 0.1)]));
    assert_eq!(
        one_message(&w).await.subject,
        "Canary started: notes-create v2 at 10% (stable v1)"
    );
}

#[tokio::test]
async fn a_candidate_replaced_mid_canary_restarts_at_the_first_step_with_the_new_version() {
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 25, 50, 100]", "");
    let agent = w.agent();
    let t0 = an_hour_ago();
    assert_eq!(w.release(F).await, 2);
    tick(&agent, &policy, t0 + 5).await;
    // Healthy until step 2 (25%).
    let mut at_step_2 = false;
    for k in 1..6 {
        w.traffic(F, 1, 2, t0 + 60 * k, HEALTHY_CANARY).await;
        let out = tick(&agent, &policy, t0 + 60 * k + 30).await;
        if matches!(action(&out), Action::Step { step: 1, .. }) {
            at_step_2 = true;
            break;
        }
    }
    assert!(at_step_2, "v2 reached its second step");
    assert_eq!(w.live(F).await.weights, weights(&[("2", 0.25)]));
    w.inbox.drain().await;

    assert_eq!(w.release(F).await, 3);
    let out = tick(&agent, &policy, t0 + 600).await;
    assert_eq!(
        action(&out),
        &Action::Start {
            version: 3,
            weight: 10.0
        }
    );
    let live = w.live(F).await;
    assert_eq!(live.stable, "1");
    assert_eq!(live.weights, weights(&[("3", 0.1)]), "v2 gets no traffic");
    assert_eq!((live.record.canary, live.record.step), (Some(3), 0));
    assert_eq!(live.record.started, t0 + 600);
    assert_eq!(
        one_message(&w).await.subject,
        "Canary started: notes-create v3 at 10% (stable v1)"
    );
}

/// Issue 7, production conditions: a dependency both versions share fails while the canary is at
/// its first step. The agent reads the stable version's usual 5xx rate from CloudWatch (its hour
/// before the canary: 0%), so two minutes of both versions at 10% are an outage even though they
/// are every minute of the canary so far; the step holds through them instead of moving on, and
/// moves on after two calm minutes.
#[tokio::test]
async fn a_canary_holds_its_step_through_a_shared_outage_told_from_the_hour_before() {
    const OUTAGE_STABLE: Minute = Minute {
        invocations: 180.0,
        errors: 18.0,
        duration_ms: 100.0,
    };
    const OUTAGE_CANARY: Minute = Minute {
        invocations: 20.0,
        errors: 2.0,
        duration_ms: 100.0,
    };
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 50, 100]", "");
    let agent = w.agent();
    let t0 = an_hour_ago();
    // Half an hour of v1 alone before the deploy, without an error.
    w.lab.put_minutes(F, &[(1, BASELINE)], t0 - 1800, 30).await;
    assert_eq!(w.release(F).await, 2);
    let out = tick(&agent, &policy, t0 + 5).await;
    assert!(matches!(action(&out), Action::Start { .. }), "{out:?}");
    for minute in [t0 + 60, t0 + 120] {
        w.lab
            .put_minutes(F, &[(2, OUTAGE_CANARY), (1, OUTAGE_STABLE)], minute, 1)
            .await;
    }
    // The step's two minutes are up and it has its requests, but both versions fail alike.
    let out = tick(&agent, &policy, t0 + 190).await;
    let Action::Hold(why) = action(&out) else {
        panic!("{out:?}");
    };
    assert!(
        why.starts_with(canary_agent::judge::SHARED_OUTAGE) && why.contains("against its usual 0%"),
        "{why}"
    );
    assert_eq!(w.live(F).await.weights, weights(&[("2", 0.1)]));
    // Two calm minutes: the canary moves on.
    w.traffic(F, 1, 2, t0 + 180, HEALTHY_CANARY).await;
    w.traffic(F, 1, 2, t0 + 240, HEALTHY_CANARY).await;
    let out = tick(&agent, &policy, t0 + 310).await;
    assert!(
        matches!(action(&out), Action::Step { weight, .. } if *weight == 50.0),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_canary_without_traffic_holds_or_rolls_back_as_its_policy_says() {
    let w = World::new().await;
    let quiet_hold = "notes-list";
    let quiet_rollback = "notes-delete";
    let policies = vec![
        w.policy(
            quiet_hold,
            "[10, 50, 100]",
            "on_no_data: hold\nno_data_timeout: 5m\n",
        ),
        w.policy(
            quiet_rollback,
            "[10, 50, 100]",
            "on_no_data: rollback\nno_data_timeout: 3m\n",
        ),
    ];
    let agent = w.agent();
    for f in [quiet_hold, quiet_rollback] {
        w.create_function(f).await;
        assert_eq!(w.release(f).await, 2);
    }
    let t0 = an_hour_ago();
    let outs = agent.tick(&policies, t0 + 5).await;
    for out in &outs {
        assert!(
            matches!(action(out), Action::Start { version: 2, .. }),
            "{out:?}"
        );
    }
    w.inbox.drain().await;

    // Twenty minutes without a single datapoint of either version.
    let mut hold_actions = Vec::new();
    let mut rolled_back_at = None;
    for k in 1..=20 {
        let now = t0 + 5 + 60 * k;
        let outs = agent.tick(&policies, now).await;
        for out in &outs {
            assert_eq!(out.error, None, "{out:?}");
        }
        let j = outs[0].judgement.as_ref().expect("judged");
        assert!(
            matches!(&j.verdict, Verdict::NotEnoughData(why) if why.contains("0 of 10 canary requests")),
            "{j:?}"
        );
        hold_actions.push(action(&outs[0]).clone());
        if let Action::Rollback { why, .. } = action(&outs[1]) {
            assert!(rolled_back_at.is_none(), "rolled back once");
            assert!(why.contains("no canary traffic"), "{why}");
            rolled_back_at = Some(now);
        }
    }

    // on_no_data: hold — never promoted, never rolled back, on-call told once.
    assert!(
        hold_actions
            .iter()
            .all(|a| matches!(a, Action::Hold(_) | Action::NoData)),
        "{hold_actions:?}"
    );
    assert_eq!(
        hold_actions
            .iter()
            .filter(|a| **a == Action::NoData)
            .count(),
        1,
        "{hold_actions:?}"
    );
    let live = w.live(quiet_hold).await;
    assert_eq!(live.stable, "1");
    assert_eq!(live.weights, weights(&[("2", 0.1)]));
    // on_no_data: rollback — back on v1 once the timeout passed.
    let at = rolled_back_at.expect("the quiet canary was rolled back");
    assert!(at >= t0 + 5 + 180, "not before the timeout: {}", at - t0);
    let live = w.live(quiet_rollback).await;
    assert_eq!(live.stable, "1");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    assert_eq!(live.record.rejected, Some(2));

    let messages = w.inbox.drain().await;
    let mut by_function: BTreeMap<&str, Vec<&Delivered>> = BTreeMap::new();
    for m in &messages {
        by_function.entry(attr(m, "function")).or_default().push(m);
    }
    let hold = &by_function[quiet_hold];
    assert_eq!(hold.len(), 1, "{:?}", subjects(&messages));
    assert_eq!(attr(hold[0], "event"), "no_data");
    assert!(
        hold[0].subject.starts_with("Canary stuck: notes-list v2"),
        "{}",
        hold[0].subject
    );
    let rollback = &by_function[quiet_rollback];
    assert_eq!(rollback.len(), 1, "{:?}", subjects(&messages));
    assert!(
        rollback[0]
            .subject
            .starts_with("ROLLED BACK notes-delete v2 -> v1"),
        "{}",
        rollback[0].subject
    );
    assert!(
        rollback[0].message.contains("no canary traffic"),
        "{}",
        rollback[0].message
    );
}

#[tokio::test]
async fn status_reports_the_running_canary_without_changing_it() {
    let w = World::new().await;
    w.create_function(F).await;
    let policy = w.policy(F, "[10, 50, 100]", "");
    let agent = w.agent();
    let r = this_minute();
    assert_eq!(w.release(F).await, 2);
    // Started a minute ago: two minutes of traffic, as the latency test needs two periods
    // before the step may move on.
    tick(&agent, &policy, r - 60).await;
    w.inbox.drain().await;
    w.traffic(F, 1, 2, r - 60, HEALTHY_CANARY).await;
    w.traffic(F, 1, 2, r, HEALTHY_CANARY).await;

    let outs = agent.status(std::slice::from_ref(&policy), r + 30).await;
    let out = &outs[0];
    assert_eq!(out.error, None, "{out:?}");
    let before = out.before.as_ref().expect("alias read");
    assert_eq!(before.stable, 1);
    assert_eq!(
        before.canary,
        Some(Routing {
            version: 2,
            weight: 10.0
        })
    );
    let j = out.judgement.as_ref().expect("judged");
    assert_eq!((j.canary.requests, j.canary.errors), (40.0, 0.0));
    assert_eq!(
        (j.baseline.requests, j.baseline.latency_ms),
        (360.0, Some(100.0))
    );
    assert_eq!(j.verdict, Verdict::Healthy);
    assert!(
        matches!(action(out), Action::Hold(why) if why.starts_with("healthy")),
        "{out:?}"
    );

    w.canary(&["status", F, "--output", "json"])
        .await
        .expect("status --output json");
    w.canary(&["status"]).await.expect("status of every policy");
    let err = w
        .canary(&["status", "notes-nope"])
        .await
        .expect_err("unknown");
    assert_eq!(err.exit_code(), 2, "{err}");

    let live = w.live(F).await;
    assert_eq!(
        live.weights,
        weights(&[("2", 0.1)]),
        "status writes nothing"
    );
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());
}

#[tokio::test]
async fn a_rollback_stands_when_sns_is_down_and_the_page_is_resent_on_the_next_tick() {
    let w = World::new().await;
    w.create_function(F).await;
    let mut policy = w.policy(F, "[10, 50, 100]", "");
    let agent = w.agent();
    let t0 = an_hour_ago();
    assert_eq!(w.release(F).await, 2);
    tick(&agent, &policy, t0 + 5).await;
    w.inbox.drain().await;

    // SNS "down": the topic the policy names does not exist.
    policy.notify = Some(Notify {
        topic_arn: MISSING_TOPIC.into(),
    });
    w.traffic(F, 1, 2, t0 + 60, FAILING_CANARY).await;
    let out = tick(&agent, &policy, t0 + 90).await;
    assert!(
        matches!(
            action(&out),
            Action::Rollback {
                to: 1,
                rejected: Some(2),
                ..
            }
        ),
        "{out:?}"
    );
    let Some(Err(why)) = &out.notified else {
        panic!("the page cannot have been sent: {out:?}");
    };
    assert_eq!(
        why,
        &format!("no SNS topic {MISSING_TOPIC} (notify.topic_arn)")
    );
    let live = w.live(F).await;
    assert_eq!(live.stable, "1", "the rollback stands");
    assert!(live.weights.is_empty(), "{:?}", live.weights);
    assert_eq!(live.record.owed.len(), 1, "the page is owed");
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());

    // A tick with the topic back: the page is re-sent, once.
    policy.notify = Some(Notify {
        topic_arn: w.lab.topic_arn.clone(),
    });
    let out = tick(&agent, &policy, t0 + 150).await;
    assert!(matches!(action(&out), Action::Hold(_)), "{out:?}");
    assert_eq!(out.notified, Some(Ok(())));
    let retry = one_message(&w).await;
    assert!(
        retry
            .subject
            .starts_with("(re-sent) ROLLED BACK notes-create v2 -> v1"),
        "{}",
        retry.subject
    );
    // A subscription filtering on `event` still sees the re-send, with its own attributes.
    assert_eq!(attr(&retry, "event"), "rolled_back");
    assert_eq!(attr(&retry, "canary_version"), "2");
    assert_eq!(attr(&retry, "resend"), "true");
    assert_eq!(
        attr(&retry, "id"),
        format!("{F}:live:rolled_back:2:{}", t0 + 90)
    );
    assert!(w.live(F).await.record.owed.is_empty());
    let out = tick(&agent, &policy, t0 + 210).await;
    assert_eq!(out.notified, None);
    assert_eq!(subjects(&w.inbox.drain().await), Vec::<&str>::new());
}

/// Puts one high-resolution EMF datapoint set of `version`, as the notes handlers publish them.
async fn put_emf(w: &World, function: &str, version: u64, at: i64, requests: f64, errors: f64) {
    let datum = |name: &str, value: f64, unit: StandardUnit| {
        MetricDatum::builder()
            .metric_name(name)
            .timestamp(DateTime::from_secs(at))
            .value(value)
            .unit(unit)
            .storage_resolution(1)
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value(function)
                    .build(),
            )
            .dimensions(
                Dimension::builder()
                    .name("Version")
                    .value(version.to_string())
                    .build(),
            )
            .build()
    };
    w.lab
        .cloudwatch
        .put_metric_data()
        .namespace("NotesApi")
        .metric_data(datum("Requests", requests, StandardUnit::Count))
        .metric_data(datum("5xx", errors, StandardUnit::Count))
        .metric_data(datum("Latency", 40.0, StandardUnit::Milliseconds))
        .send()
        .await
        .expect("put EMF metric data");
}

/// The scheduled Lambda's job: one tick with the stack's topic, on real time and the handlers'
/// 10-second EMF metrics, under the shipped notes-create policy (its latency statistic switched
/// to Average and its `slow_ms` removed: moto computes no percentiles or percentile ranks, so
/// the automatic tail threshold, the stable version's p99, cannot be read and the tail test has
/// no data, which must not stop the rest of the judgement).
#[tokio::test]
async fn the_scheduled_tick_protects_notes_create_with_the_shipped_policy() {
    let w = World::new().await;
    w.create_function(F).await;
    let v2 = w.release(F).await;
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/notes-create.yaml"),
    )
    .expect("shipped policy");
    assert!(shipped.contains("stat: p50") && shipped.contains("  slow_ms: 400"));
    // moto computes neither percentiles nor percentile ranks (`PR(:400)` answers HTTP 500).
    let for_moto: String = shipped
        .replace("stat: p50", "stat: Average")
        .lines()
        .filter(|l| !l.trim_start().starts_with("slow_ms:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(w.dir().join("notes-create.yaml"), for_moto).expect("write policy");
    let tick = || {
        canary_agent::cli::lambda_tick_with(
            Some(&w.lab.sdk),
            Some(w.lab.topic_arn.clone()),
            w.dir(),
        )
    };

    let report = tick().await.expect("tick");
    assert_eq!(
        (report["policies"].as_u64(), report["errors"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    let live = w.live(F).await;
    assert_eq!(
        live.weights,
        weights(&[("2", 0.05)]),
        "first shipped step is 5%"
    );
    let started = one_message(&w).await;
    assert!(
        started
            .subject
            .starts_with("Release notes-api: Canary started: notes-create v2 at 5%"),
        "{}",
        started.subject
    );

    // The handlers report every request of v2 failing (and v1 healthy) in the next seconds:
    // 12 of 12, more than one burst of errors explains.
    let at = live.record.started;
    put_emf(&w, F, v2, at, 12.0, 12.0).await;
    put_emf(&w, F, 1, at, 228.0, 0.0).await;
    let report = tick().await.expect("tick");
    let live = w.live(F).await;
    assert_eq!(
        (live.stable.as_str(), live.weights.len()),
        ("1", 0),
        "{report}"
    );
    assert_eq!(live.record.rejected, Some(v2));
    let page = one_message(&w).await;
    assert!(
        page.subject
            .starts_with("ROLLED BACK release notes-api: notes-create v2 -> v1"),
        "{}",
        page.subject
    );
}

/// Issue 8, defect 4: an endpoint that accepts the connection and never answers made `status`
/// and `run --once` hang for more than ten minutes. Every call is now bounded by the SDK
/// timeouts the agent sets, and both commands fail with a message instead.
#[tokio::test]
async fn status_and_run_once_give_up_on_an_endpoint_that_never_answers() {
    // Accepts connections and keeps them open without ever answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing", "testing", None, None, "silent",
        ))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let dir = TempDir::new();
    std::fs::write(
        dir.0.join("notes-create.yaml"),
        "function: notes-create\nsteps: [10, 100]\n",
    )
    .expect("write policy");
    let d = dir.0.to_str().expect("utf-8").to_string();
    for args in [
        vec!["canary", "status", "--policies", &d],
        vec!["canary", "run", "--once", "--policies", &d],
    ] {
        let cli = Cli::try_parse_from(&args).expect("parse");
        // Generous guard: the agent's own bound is the SDK's 25 s operation timeout.
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            run_with(cli, Some(sdk.clone())),
        )
        .await
        .unwrap_or_else(|_| panic!("{args:?} hung"));
        let err = result.expect_err("nothing answered");
        assert_eq!(err.exit_code(), 1, "{args:?}: {err}");
    }
    silent.abort();
}

/// Issue 8, defect 10: the scheduled invocation reported success (`{"errors": 5}`) when policies
/// failed. It now fails, so Lambda's `Errors` metric (and an alarm on it) counts it.
#[tokio::test]
async fn the_scheduled_tick_fails_the_invocation_when_a_policy_fails() {
    let w = World::new().await;
    w.create_function(F).await;
    w.policy(F, "[10, 100]", "");
    std::fs::write(
        w.dir().join("missing.yaml"),
        "function: no-such-function\nsteps: [10, 100]\n",
    )
    .expect("write policy");
    let err = canary_agent::cli::lambda_tick_with(
        Some(&w.lab.sdk),
        Some(w.lab.topic_arn.clone()),
        w.dir(),
    )
    .await
    .expect_err("one policy failed");
    let text = err.to_string();
    assert!(text.contains("1 of 2 policies failed"), "{text}");
    assert!(text.contains("no function no-such-function"), "{text}");
}

/// `canary wait` as a CI job runs it after `sam deploy`: exit 0 when the deploy's version is
/// promoted, 1 when it is rolled back, 3 when neither happens in time; people's commands stand
/// in for the agent's ticks.
#[tokio::test]
async fn canary_wait_exits_0_on_promotion_1_on_rollback_and_3_on_timeout() {
    let w = World::new().await;
    w.create_function(F).await;
    w.policy(F, "[10, 50, 100]", "");
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(1500));

    // Promoted while waiting: the wait goes on through the bake, and ends with it.
    let v2 = w.release(F).await;
    let (waited, ()) = tokio::join!(
        w.canary(&["wait", F, "--timeout", "60s", "--interval", "1s"]),
        async {
            pause().await;
            w.canary(&["start", F]).await.expect("start");
            pause().await;
            w.canary(&["promote", F, "--full"])
                .await
                .expect("promote --full");
            pause().await;
            assert!(w.live(F).await.record.bake.is_some(), "v2 bakes");
            w.canary(&["promote", F]).await.expect("end the bake");
        }
    );
    waited.expect("promoted and baked: exit 0");
    assert_eq!(w.live(F).await.stable, v2.to_string());

    // Rolled back while waiting: in the canary, and during the bake (back to v2).
    for bake in [false, true] {
        let v = w.release(F).await;
        let (waited, ()) = tokio::join!(
            w.canary(&["wait", F, "--timeout", "60s", "--interval", "1s"]),
            async {
                pause().await;
                w.canary(&["start", F]).await.expect("start");
                pause().await;
                if bake {
                    w.canary(&["promote", F, "--full"]).await.expect("promote");
                    pause().await;
                }
                w.canary(&["rollback", F, "--reason", "bad build"])
                    .await
                    .expect("rollback");
            }
        );
        let err = waited.expect_err("rolled back");
        assert_eq!(err.exit_code(), 1, "bake {bake}: {err}");
        let live = w.live(F).await;
        assert_eq!(live.record.rejected, Some(v), "bake {bake}");
        assert_eq!(live.stable, v2.to_string(), "bake {bake}");
    }

    // Nothing happens: the timeout.
    w.release(F).await;
    let err = w
        .canary(&["wait", F, "--timeout", "2s", "--interval", "1s"])
        .await
        .expect_err("timed out");
    assert_eq!(err.exit_code(), 3, "{err}");
    assert!(err.to_string().contains("no outcome after 2s"), "{err}");

    // A version that already serves all traffic returns at once.
    w.canary(&["wait", F, "--version", &v2.to_string(), "--timeout", "5s"])
        .await
        .expect("v2 is live");
}
