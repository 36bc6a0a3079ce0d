//! `canary demo`: the classic bad deploy, told in seconds on a simulated AWS.
//!
//! A healthy release of two functions (create and get) is live; a deploy changes both, and the
//! new get handler fails every request. The agent starts both as one release at the first step,
//! judges get on the first visible datapoints, rolls both back and pages on-call once; the fix
//! (a new get only) then walks every step to 100% with create's new version, and bakes.

use super::traffic::{Build, Traffic};
use super::{agent, block_on, Shared, SimAgent, World};
use crate::policy::Policy;
use crate::tick::Outcome;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The policy of the functions in the story: used for create as given, and for get with
    /// its function name changed (both in one release).
    pub policy: Policy,
    /// Requests per second to each alias.
    pub rps: f64,
    /// Seconds between agent ticks.
    pub tick: i64,
    /// Seed of the traffic model.
    pub seed: u64,
}

/// Where the story starts: 2026-11-23 10:00:20 UTC (ticks 20 s after the minute).
const START: i64 = 1_795_428_020;

fn clock(t: i64) -> String {
    let d = t - START;
    format!("T+{:02}:{:02}", d / 60, d % 60)
}

fn weights(world: &World, i: usize) -> String {
    let f = &world.functions[i];
    match f.canary {
        Some(c) => format!(
            "v{} {:>3}% | v{} {:>3}%",
            f.stable,
            100.0 - c.weight,
            c.version,
            c.weight
        ),
        None => format!("v{} 100%           ", f.stable),
    }
}

fn describe(out: &Outcome) -> String {
    let numbers = out
        .judgement
        .as_ref()
        .map_or(String::new(), |j| format!("\n{:>44}{}", "", j.summary()));
    let what = match (&out.error, &out.decision) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(d)) => d.action.to_string(),
        (None, None) => "-".to_string(),
    };
    format!("{what}{numbers}")
}

/// The story's two functions: create (the policy as given) and get, in one release.
fn release_of(policy: &Policy) -> Vec<Policy> {
    let release = policy
        .release
        .clone()
        .unwrap_or_else(|| "notes-api".to_string());
    let mut create = policy.clone();
    create.release = Some(release.clone());
    let mut get = create.clone();
    get.function = if create.function.ends_with("-create") {
        create.function.replace("-create", "-get")
    } else {
        format!("{}-get", create.function)
    };
    vec![create, get]
}

/// The story's world, agent and timeline.
struct Demo {
    policies: Vec<Policy>,
    shared: Shared,
    agent: SimAgent,
    /// Seconds between agent ticks.
    tick: i64,
    lines: Vec<String>,
}

impl Demo {
    /// Both functions live and healthy on v1, the agent paging the policy's topic, the clock at
    /// [`START`].
    fn new(config: &DemoConfig) -> Self {
        let policies = release_of(&config.policy);
        let policy = &policies[0];
        let delay = super::visibility_delay(policy);
        let mut world = World::new(
            START - 4200,
            Traffic::steady(config.rps),
            delay,
            config.seed,
        );
        world.serve_healthy(&policies, START - 4200);
        let shared = Shared::new(world);
        let mut agent = agent(&shared);
        agent.topic_override = Some(policy.notify.as_ref().map_or(
            "arn:aws:sns:us-east-1:123456789012:canary-alerts".to_string(),
            |n| n.topic_arn.clone(),
        ));
        let (create, get) = (&policies[0].function, &policies[1].function);
        let lines = vec![
            format!(
                "lambda-canary demo: release {} ({create} and {get}) at {} req/s each, steps {:?}%, {}-second metrics visible {} s after each period, agent tick every {} s",
                policy.release.clone().unwrap_or_default(),
                config.rps,
                policy.steps,
                policy.metrics.period().as_secs(),
                delay,
                config.tick
            ),
            String::new(),
        ];
        shared.lock().advance(START);
        Self {
            policies,
            shared,
            agent,
            tick: config.tick,
            lines,
        }
    }

    /// One agent tick: every change is shown when it happens, holds once a minute (every five
    /// during a bake), and every page with a rollback's body; then the clock moves on.
    fn tick(&mut self) {
        let now = self.shared.lock().now;
        let before: Vec<String> = (0..self.policies.len())
            .map(|i| weights(&self.shared.lock(), i))
            .collect();
        let outs = block_on(self.agent.tick(&self.policies, now));
        for (i, out) in outs.iter().enumerate() {
            let hold = matches!(
                out.decision.as_ref().map(|d| &d.action),
                Some(crate::rollout::Action::Hold(_))
            );
            let baking = out
                .before
                .as_ref()
                .and_then(crate::rollout::baking)
                .is_some();
            let every = if baking { 300 } else { 60 };
            if !hold || (now - START) % every == 0 {
                self.lines.push(format!(
                    "{}  {:<13} {}  {}",
                    clock(now),
                    out.function,
                    before[i],
                    describe(out)
                ));
            }
        }
        for (_, page) in self.agent.notifier.take() {
            self.lines
                .push(format!("{:>10}>>> SNS to on-call: {}", "", page.subject));
            if page.subject.starts_with("ROLLED BACK") {
                self.lines
                    .extend(page.body.lines().map(|l| format!("{:>14}{l}", "| ")));
            }
        }
        self.shared.lock().advance(now + self.tick);
    }

    /// Act 1: one deploy publishes v2 of both; get's v2 fails every request. Both are rolled
    /// back together.
    fn bad_deploy(&mut self) {
        let get = self.policies[1].function.clone();
        self.lines.push(format!(
            "1. v1 of both is live and healthy. One deploy publishes v2 of both; {get}'s v2 fails every request (the classic `gibberish.what;` build):"
        ));
        {
            let mut w = self.shared.lock();
            w.functions[0].deploy(Build::healthy());
            w.functions[1].deploy(Build {
                error_rate: 1.0,
                ..Build::healthy()
            });
        }
        for _ in 0..20 {
            self.tick();
            let w = self.shared.lock();
            if w.functions.iter().all(|f| f.canary.is_none())
                && w.functions[1].served.contains_key(&2)
            {
                break;
            }
        }
        for _ in 0..2 {
            self.tick();
        }
        let (failed_v2, served_v2) = {
            let w = self.shared.lock();
            let f = &w.functions[1];
            (
                f.failed.get(&2).copied().unwrap_or(0),
                f.served.get(&2).copied().unwrap_or(0),
            )
        };
        self.lines.push(format!(
            "   {get} v2 answered {served_v2} requests ({failed_v2} failed) before both aliases were back on v1: no mixed release is left behind."
        ));
        self.lines.push(String::new());
    }

    /// Act 2: the fix (get v3) ships with create's v2, walks every step and bakes. Whether
    /// both ended baked.
    fn fix(&mut self) -> bool {
        let bake = self.policies[0].bake_secs();
        let (create, get) = (&self.policies[0].function, &self.policies[1].function);
        self.lines.push(format!(
            "2. The fix is deployed as {get} v3 ({create} is unchanged: its v2 was rolled back only because of {get}). Both walk every step to 100% together, then bake for {} (judged against v1's numbers from before the canary):",
            crate::text::human_duration(bake)
        ));
        self.shared.lock().functions[1].deploy(Build::healthy());
        let done = |w: &World| {
            w.functions[0].stable == 2
                && w.functions[1].stable == 3
                && w.functions
                    .iter()
                    .all(|f| crate::rollout::baking(&f.alias_state()).is_none())
        };
        for _ in 0..(bake + 3600) / self.tick.max(1) {
            self.tick();
            if done(&self.shared.lock()) {
                break;
            }
        }
        let baked = done(&self.shared.lock());
        baked
    }
}

/// Runs the story and returns the timeline, line by line.
#[must_use]
pub fn run(config: &DemoConfig) -> Vec<String> {
    let mut demo = Demo::new(config);
    demo.bad_deploy();
    let baked = demo.fix();
    let (create, get) = (&demo.policies[0].function, &demo.policies[1].function);
    let w = demo.shared.lock();
    let line = format!(
        "Done: {create} is on v{}, {get} on v{}{}. Same agent, same judge, same state machine as `canary run`; only the ports are in memory.",
        w.functions[0].stable,
        w.functions[1].stable,
        if baked { ", baked" } else { "" }
    );
    drop(w);
    demo.lines.push(String::new());
    demo.lines.push(line);
    demo.lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_rolls_back_the_release_as_one_and_ships_its_fix_as_one() {
        let lines = run(&DemoConfig {
            policy: Policy::with_defaults("notes-create"),
            rps: 10.0,
            tick: 60,
            seed: 1,
        });
        let text = lines.join("\n");
        let pages: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("SNS to on-call"))
            .collect();
        let rollbacks: Vec<&&String> = pages.iter().filter(|l| l.contains("ROLLED BACK")).collect();
        assert_eq!(
            rollbacks.len(),
            1,
            "one page for the release's rollback:\n{text}"
        );
        assert!(
            rollbacks[0].contains("ROLLED BACK release notes-api: notes-get v2 -> v1"),
            "{text}"
        );
        assert!(
            text.contains("notes-create v2 -> v1; notes-get v2 -> v1"),
            "{text}"
        );
        assert!(
            text.contains("Done: notes-create is on v2, notes-get on v3, baked"),
            "{text}"
        );
        assert!(
            text.contains(
                "SNS to on-call: Release notes-api baked: the release is done (2 functions)"
            ),
            "{text}"
        );
        let rollback = lines
            .iter()
            .position(|l| l.contains("roll back to v1"))
            .expect("rolled back");
        let start = lines
            .iter()
            .position(|l| l.contains("start v2"))
            .expect("started");
        assert!(rollback - start <= 8, "judged within a few ticks:\n{text}");
    }
}
