//! What happened, in words: the subject and first paragraph of each announcement, by its action
//! or event (the numbers, commands and links follow in `notify`).

use super::{held, Context, Trigger};
use crate::judge::{pct, Judgement};
use crate::policy::Policy;
use crate::record::{EventKind, Owed, Version};
use crate::rollout::Action;
use crate::text::{clock, human_duration, one_line};

/// The short comparison behind a rollback for its subject: "5xx 100% vs 0.1%" when the reason is
/// about errors, "p50 240 ms vs 80 ms" when it is about latency, empty otherwise.
fn headline(policy: &Policy, j: Option<&Judgement>, why: &str) -> String {
    let Some(j) = j else { return String::new() };
    if why.contains("5xx") {
        return match (j.canary.error_rate(), j.baseline.error_rate()) {
            (Some(c), Some(b)) => format!("5xx {} vs {}", pct(c), pct(b)),
            (Some(c), None) => format!("5xx {}", pct(c)),
            _ => String::new(),
        };
    }
    let stat = policy.latency.stat.cloudwatch_name();
    match (j.canary.latency_ms, j.baseline.latency_ms) {
        (Some(c), Some(b)) if why.contains(stat) => format!("{stat} {c:.0} ms vs {b:.0} ms"),
        (Some(c), None) if why.contains(stat) => format!("{stat} {c:.0} ms"),
        _ => String::new(),
    }
}

/// Subject and "what happened" of an event, from the owed entry alone (re-sends, and events
/// that are not the decision's action).
pub(super) fn plain_words(policy: &Policy, o: &Owed) -> (String, String) {
    let (f, a) = (&policy.function, &policy.alias);
    let s = o.stable;
    let v = o.version.map_or(String::new(), |v| format!("v{v}"));
    match o.event {
        EventKind::Started => (
            format!("Canary started: {f} {v} (stable v{s})"),
            format!("{f} {v} started receiving part of {a}'s traffic; v{s} serves the rest."),
        ),
        EventKind::Stepped => (
            format!("Canary step: {f} {v} (stable v{s})"),
            format!("{f} {v} moved to a larger share of {a}'s traffic."),
        ),
        EventKind::Promoted => (
            format!("Promoted {f} {v} to 100%"),
            format!("{f}:{a} sends all traffic to v{s}."),
        ),
        EventKind::RolledBack => (
            format!("ROLLED BACK {f} {v} -> v{s}"),
            format!(
                "{f}:{a} was pointed back at v{s}; {v} will not be started again until the {} alias points at a newer version.",
                policy.candidate_alias
            ),
        ),
        EventKind::NoData => (
            format!("Canary stuck: {f} {v} has had no traffic"),
            format!("The canary of {f} is holding because {v} receives no requests (on_no_data: hold)."),
        ),
        EventKind::Paused => (
            format!("Paused {f}: canary frozen"),
            format!("Forward moves of {f}:{a} are frozen; rollback protection stays on."),
        ),
        EventKind::Resumed => (
            format!("Resumed {f}: canary moves again"),
            format!("Forward moves of {f}:{a} are allowed again."),
        ),
        EventKind::Unprotected => (
            format!("CANARY UNPROTECTED: {f} {v} cannot be judged"),
            format!(
                "The agent cannot judge {f} {v} (its metrics cannot be read); it holds the canary's weight and cannot roll it back on evidence until it can."
            ),
        ),
        EventKind::Protected => (
            format!("Canary protected again: {f} {v} is judged again"),
            format!("The agent reads {f} {v}'s metrics again; rollback protection is back."),
        ),
        EventKind::Baked => (
            format!("Baked {f} {v}: the release is done"),
            format!(
                "{f}:{a} kept {v} at 100% through its bake; the agent no longer compares it with the version before it."
            ),
        ),
        EventKind::SharedFailure => shared_words(policy, o, None),
    }
}

/// The version back on the alias after a rollback in the bake fails alike (`why`, the judge's
/// reasons, when known): the rollback is lifted and the rolled-back version canaried again.
fn shared_words(policy: &Policy, o: &Owed, why: Option<&str>) -> (String, String) {
    let (f, a) = (&policy.function, &policy.alias);
    let s = o.stable;
    let v = o.version.map_or(String::new(), |v| format!("v{v}"));
    let why = why.map_or(String::new(), |w| format!(" ({w})"));
    (
        format!("SHARED FAILURE {f}: v{s} fails like {v} did; {v} not rejected"),
        format!(
            "After {v} was rolled back in its bake, v{s}, back on {a}, regressed against its own numbers from before the canary too{why}. Both versions fail alike, so the cause is most likely shared (a dependency, the load, the account), not {v}. {v} no longer counts as rolled back: the agent canaries it again from the first step, side by side with v{s}, where a shared cause counts against neither (`canary pause {f}` keeps it back). A second rollback of {v} in its bake stands."
        ),
    )
}

/// Subject and "what happened" of the decision's own action, with its weights and numbers.
pub(super) fn action_words(policy: &Policy, o: &Owed, ctx: &Context<'_>) -> (String, String) {
    let f = &policy.function;
    let a = &policy.alias;
    let stable = ctx.before.stable;
    match ctx.action {
        Action::Start { version, weight } => (
            format!("Canary started: {f} v{version} at {weight}% (stable v{stable})"),
            format!("{f} v{version} now receives {weight}% of {a}'s traffic; v{stable} serves the rest."),
        ),
        Action::Step { version, weight, .. } => (
            format!("Canary step: {f} v{version} to {weight}% (stable v{stable})"),
            format!("{f} v{version} now receives {weight}% of {a}'s traffic."),
        ),
        Action::Promote { version } => promoted_words(policy, o, stable, *version),
        Action::Baked { version } => {
            let how = if *ctx.trigger == Trigger::Agent {
                "its bake is over with no regression"
            } else {
                "a person ended its bake early"
            };
            (
                format!("Baked {f} v{version}: the release is done"),
                format!("{f}:{a} keeps v{version} at 100%: {how}. New candidates may start."),
            )
        }
        Action::Rollback { to, rejected, why } => {
            rollback_words(policy, o, ctx, (*to, *rejected), why)
        }
        Action::NoData => held::words(policy, ctx, o),
        Action::Unprotected { version, since } => {
            unprotected_words(policy, o, ctx, *version, *since)
        }
        Action::Lift { why, .. } => shared_words(policy, o, Some(why)),
        Action::Pause | Action::Resume | Action::Hold(_) => plain_words(policy, o),
    }
}

/// A promotion: all traffic on `version`, and the bake that watches it (or `stable` retired).
fn promoted_words(
    policy: &Policy,
    o: &Owed,
    stable: Version,
    version: Version,
) -> (String, String) {
    let (f, a) = (&policy.function, &policy.alias);
    let bake = policy.bake_secs();
    let watch = if bake > 0 {
        format!(
            " It bakes until {} ({}): a regression against v{stable}'s numbers from before the canary points {a} back at v{stable}.",
            clock(o.at.saturating_add(bake)),
            human_duration(bake)
        )
    } else {
        format!(" v{stable} is retired.")
    };
    (
        format!("Promoted {f} v{version} to 100% (was v{stable})"),
        format!("{f}:{a} now sends all traffic to v{version}.{watch}"),
    )
}

/// A rollback to `to` (`rejected` not started again), headlined by the judge's numbers when the
/// agent decided it.
fn rollback_words(
    policy: &Policy,
    o: &Owed,
    ctx: &Context<'_>,
    (to, rejected): (Version, Option<Version>),
    why: &str,
) -> (String, String) {
    let (f, a) = (&policy.function, &policy.alias);
    let from = o.version.map_or(String::new(), |r| format!("v{r} "));
    let h = headline(policy, ctx.judgement, why);
    let tail = if h.is_empty() || *ctx.trigger != Trigger::Agent {
        one_line(why, 60)
    } else {
        h
    };
    let kept = match (rejected, ctx.recheck) {
        (Some(r), Some(check)) => format!(
            "; v{r} will not be started again unless v{to}, judged against the same numbers until {}, fails alike (a shared cause: then v{r} is canaried again), or the {} alias points at a newer version",
            clock(check.until),
            policy.candidate_alias
        ),
        (Some(r), None) => format!(
            "; v{r} will not be started again until the {} alias points at a newer version",
            policy.candidate_alias
        ),
        (None, _) => String::new(),
    };
    (
        format!("ROLLED BACK {f} {from}-> v{to}: {tail}"),
        format!("{f}:{a} was pointed back at v{to}{kept}. Why: {why}"),
    )
}

/// The running `version` could not be judged since `since`: for how long, and the last error.
fn unprotected_words(
    policy: &Policy,
    o: &Owed,
    ctx: &Context<'_>,
    version: Version,
    since: i64,
) -> (String, String) {
    let (subject, what) = plain_words(policy, o);
    let waited = human_duration(o.at.saturating_sub(since));
    (
        format!("{subject} for {waited}"),
        format!(
            "{what} Not judged since {since} (epoch seconds), {waited} ago. Last error: {}. v{version} stays at {}%.",
            ctx.problem.map_or("unknown".to_string(), |p| one_line(p, 300)),
            // With no canary, the version is the one baking at 100%.
            ctx.before.canary.map_or(100.0, |c| c.weight)
        ),
    )
}
