//! `canary demo`: the classic bad deploy, told in seconds on a simulated AWS.
//!
//! A healthy build is live; a build whose create handler fails every request is deployed; the agent
//! starts it at the first step, judges it on the first visible datapoint, rolls it back and pages
//! on-call; the fixed build then walks every step to 100% and bakes.

use super::traffic::{Build, Traffic};
use super::{agent, block_on, Shared, SimFunction, World};
use crate::policy::Policy;
use crate::tick::Outcome;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The policy of the function the story happens to.
    pub policy: Policy,
    /// Requests per second to the alias.
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

fn weights(world: &World) -> String {
    let f = &world.functions[0];
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
        .map_or(String::new(), |j| format!("\n{:>32}{}", "", j.summary()));
    let what = match (&out.error, &out.decision) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(d)) => d.action.to_string(),
        (None, None) => "-".to_string(),
    };
    format!("{what}{numbers}")
}

/// Runs the story and returns the timeline, line by line.
#[must_use]
pub fn run(config: &DemoConfig) -> Vec<String> {
    let policy = config.policy.clone();
    let delay = super::visibility_delay(&policy);
    let mut world = World::new(START - 600, Traffic::steady(config.rps), delay, config.seed);
    world.functions.push(SimFunction::new(
        policy.clone(),
        Build::healthy(),
        START - 600,
    ));
    let shared = Shared::new(world);
    let mut agent = agent(&shared);
    agent.topic_override = Some(policy.notify.as_ref().map_or(
        "arn:aws:sns:us-east-1:123456789012:canary-alerts".to_string(),
        |n| n.topic_arn.clone(),
    ));
    let policies = vec![policy.clone()];
    let mut lines = vec![
        format!(
            "lambda-canary demo: {} at {} req/s, steps {:?}%, {}-second metrics visible {} s after each period, agent tick every {} s",
            policy.function,
            config.rps,
            policy.steps,
            policy.metrics.period().as_secs(),
            delay,
            config.tick
        ),
        String::new(),
    ];
    let tick = |lines: &mut Vec<String>, label: &str| {
        let now = shared.lock().now;
        let before = weights(&shared.lock());
        let outs = block_on(agent.tick(&policies, now));
        for out in &outs {
            let hold = matches!(
                out.decision.as_ref().map(|d| &d.action),
                Some(crate::rollout::Action::Hold(_))
            );
            // Holds are shown once a minute (every five during a bake); every change is shown
            // when it happens.
            let baking = out
                .before
                .as_ref()
                .and_then(crate::rollout::baking)
                .is_some();
            let every = if baking { 300 } else { 60 };
            if !hold || (now - START) % every == 0 {
                lines.push(format!(
                    "{}  {before}  {label}{}",
                    clock(now),
                    describe(out)
                ));
            }
        }
        for (_, page) in agent.notifier.take() {
            lines.push(format!("{:>10}>>> SNS to on-call: {}", "", page.subject));
            if page.subject.starts_with("ROLLED BACK") {
                lines.extend(page.body.lines().map(|l| format!("{:>14}{l}", "| ")));
            }
        }
        let next = now + config.tick;
        shared.lock().advance(next);
    };
    shared.lock().advance(START);

    lines.push("1. v1 is live and healthy. A deploy publishes v2, whose create handler fails every request (the classic `gibberish.what;` build):".to_string());
    let bad = Build {
        error_rate: 1.0,
        ..Build::healthy()
    };
    shared.lock().functions[0].deploy(bad);
    for _ in 0..20 {
        tick(&mut lines, "");
        if shared.lock().functions[0].canary.is_none()
            && shared.lock().functions[0].served.contains_key(&2)
        {
            break;
        }
    }
    for _ in 0..2 {
        tick(&mut lines, "");
    }
    let (failed_v2, served_v2) = {
        let w = shared.lock();
        let f = &w.functions[0];
        (
            f.failed.get(&2).copied().unwrap_or(0),
            f.served.get(&2).copied().unwrap_or(0),
        )
    };
    lines.push(format!(
        "   v2 answered {served_v2} requests ({failed_v2} failed) before the alias was back on v1; v2 will not be started again."
    ));
    lines.push(String::new());
    lines.push(format!(
        "2. The fix is deployed as v3; it walks every step to 100%, then bakes for {} (judged against v1's numbers from before its canary):",
        crate::text::human_duration(policy.bake_secs())
    ));
    shared.lock().functions[0].deploy(Build::healthy());
    let done = |w: &World| {
        let f = &w.functions[0];
        f.stable == 3 && crate::rollout::baking(&f.alias_state()).is_none()
    };
    let ticks = (policy.bake_secs() + 3600) / config.tick.max(1);
    for _ in 0..ticks {
        tick(&mut lines, "");
        if done(&shared.lock()) {
            break;
        }
    }
    let w = shared.lock();
    lines.push(String::new());
    lines.push(format!(
        "Done: live is on v{}{}. Same agent, same judge, same state machine as `canary run`; only the ports are in memory.",
        w.functions[0].stable,
        if done(&w) { ", baked" } else { "" }
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_rolls_back_the_bad_build_and_promotes_the_fix() {
        let lines = run(&DemoConfig {
            policy: Policy::with_defaults("notes-create"),
            rps: 10.0,
            tick: 60,
            seed: 1,
        });
        let text = lines.join("\n");
        assert!(text.contains("ROLLED BACK notes-create v2 -> v1"), "{text}");
        assert!(text.contains("promote v3 to 100%"), "{text}");
        assert!(text.contains("Done: live is on v3, baked"), "{text}");
        assert!(
            text.contains("SNS to on-call: Baked notes-create v3"),
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
        assert!(rollback - start <= 4, "judged within a few ticks:\n{text}");
    }
}
