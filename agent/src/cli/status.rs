//! What `canary status` prints: a table a person reads, or stable JSON for scripts.

use super::{now, Output};
use crate::judge::{pct, Judgement};
use crate::policy::Policy;
use crate::rollout::{baking, rechecking, AliasState};
use crate::text::clock;
use crate::tick::{human_duration, Outcome};

fn status_json(policy: &Policy, out: &Outcome) -> serde_json::Value {
    use serde_json::json;
    let totals = |t: &crate::judge::Totals| json!({"requests": t.requests, "errors": t.errors, "error_rate": t.error_rate(), "latency_ms": t.latency_ms});
    let state = out.before.as_ref();
    let record = state.map(|s| &s.record);
    json!({
        "function": out.function,
        "alias": out.alias,
        "stable_version": state.map(|s| s.stable),
        "candidate_version": state.and_then(|s| s.candidate),
        "canary": state.and_then(|s| s.canary).map(|c| json!({
            "version": c.version,
            "weight": c.weight,
            "step": record.map_or(0, |r| r.step).saturating_add(1),
            "steps": policy.steps,
            "step_started_at": record.map(|r| r.since),
            "canary_started_at": record.map(|r| r.started),
        })),
        "bake": state.and_then(baking).map(|b| json!({
            "version": b.version,
            "previous_version": b.previous,
            "promoted_at": record.map(|r| r.since),
            "until": b.until,
        })),
        "recheck": state.and_then(rechecking).map(|r| json!({
            "rolled_back_version": r.version,
            "version": r.stable,
            "rolled_back_at": r.from,
            "until": r.until,
        })),
        "release": policy.release.as_ref().map(|name| json!({
            "name": name,
            "started_at": record.and_then(|r| r.release).map(|m| m.id),
            "rolled_back": record.and_then(|r| r.release).is_some_and(|m| m.rolled_back),
            "rolled_back_with_another_member": record.and_then(|r| r.release).is_some_and(|m| m.rolled_back && m.follower),
        })),
        "paused": record.is_some_and(|r| r.paused),
        "rejected_version": record.and_then(|r| r.rejected),
        "metrics": out.judgement.as_ref().map(|j| json!({
            "canary": totals(&j.canary),
            "baseline": totals(&j.baseline),
            "latency_stat": policy.latency.stat.cloudwatch_name(),
            "canary_requests_at_step": j.canary_requests_at_step,
        })),
        "verdict": out.judgement.as_ref().map(|j| j.verdict.to_string()),
        "next_action": out.decision.as_ref().map(|d| d.action.to_string()),
        "last_decision": record.and_then(|r| r.last.clone()),
        "owed_announcements": record.map(|r| r.owed.iter().map(|o| o.id(&policy.function, &policy.alias)).collect::<Vec<_>>()),
        "unjudged_since": record.and_then(|r| r.unjudged_since),
        "record_repaired": out.problems,
        "error": out.error,
    })
}

/// Prints each alias's status; with `release`, a first line about the release as a whole.
pub(super) fn print_status(shown: &[(Policy, Outcome)], release: Option<&str>, output: Output) {
    if output == Output::Json {
        let items: Vec<_> = shown.iter().map(|(p, o)| status_json(p, o)).collect();
        let mut doc = serde_json::json!({ "aliases": items });
        if let Some(name) = release {
            doc["release"] = serde_json::json!(name);
        }
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    let t = now();
    if let Some(name) = release {
        say!("{}", release_line(name, shown));
    }
    for (p, o) in shown {
        say!("{}:{}", o.function, o.alias);
        if let (Some(name), Some(m)) =
            (&p.release, o.before.as_ref().and_then(|s| s.record.release))
        {
            let how = match (m.rolled_back, m.follower) {
                (false, _) => String::new(),
                (true, false) => ", rolled back".to_string(),
                (true, true) => ", rolled back with another member".to_string(),
            };
            say!("  release: {name} (started {}{how})", clock(m.id));
        }
        if let Some(e) = &o.error {
            say!("  error: {e}");
        }
        let Some(s) = &o.before else { continue };
        for problem in &o.problems {
            say!("  record repaired on next tick: {problem}");
        }
        let r = &s.record;
        say!("{}", alias_line(p, s, t));
        if let Some(j) = &o.judgement {
            for line in metric_rows(p, s, j) {
                say!("{line}");
            }
        }
        if let Some(d) = &o.decision {
            say!("  next tick: {}", d.action);
        }
        if let Some(rej) = r.rejected {
            say!(
                "  rolled back: v{rej} (no version up to v{rej} is started automatically; a newer candidate is)"
            );
        }
        if let Some(u) = r.unjudged_since {
            say!(
                "  UNPROTECTED: not judged for {}",
                human_duration(t.saturating_sub(u))
            );
        }
        if !r.owed.is_empty() {
            say!(
                "  owed announcements: {} (re-sent by the next tick)",
                r.owed.len()
            );
        }
        if let Some(last) = &r.last {
            say!("  last decision: {last}");
        }
    }
}

/// The release in one line: how many members are under way, and the newest release's start.
fn release_line(name: &str, shown: &[(Policy, Outcome)]) -> String {
    let states: Vec<&AliasState> = shown
        .iter()
        .filter_map(|(_, o)| o.before.as_ref())
        .collect();
    let under_way = states
        .iter()
        .filter(|s| crate::rollout::judged(s).is_some())
        .count();
    let started = states
        .iter()
        .filter_map(|s| s.record.release.map(|m| m.id))
        .max();
    let back = states
        .iter()
        .filter(|s| {
            s.record
                .release
                .is_some_and(|m| m.rolled_back && Some(m.id) == started)
        })
        .count();
    let mut line = format!(
        "release {name}: {} members, {under_way} under way",
        shown.len()
    );
    if let Some(id) = started {
        line.push_str(&format!("; last release started {}", clock(id)));
        if back > 0 {
            line.push_str(&format!(", {back} member(s) rolled back"));
        }
    }
    line
}

/// The alias in one line: its versions, the canary's step or the bake, and a pause.
fn alias_line(p: &Policy, s: &AliasState, t: i64) -> String {
    let r = &s.record;
    let paused = if r.paused { "  PAUSED" } else { "" };
    let candidate = s
        .candidate
        .filter(|&c| c != s.stable)
        .map_or(String::new(), |c| format!("; candidate v{c}"));
    match (s.canary, baking(s)) {
        (Some(c), _) => format!(
            "  stable v{}  canary v{} at {}% (step {}/{}, {} at step){paused}",
            s.stable,
            c.version,
            c.weight,
            r.step.saturating_add(1),
            p.steps.len(),
            human_duration(t.saturating_sub(r.since)),
        ),
        (None, Some(b)) => format!(
            "  stable v{} at 100%, BAKING until {} ({} left) against v{}{candidate}{paused}",
            s.stable,
            clock(b.until),
            human_duration(b.until.saturating_sub(t).max(0)),
            b.previous
        ),
        (None, None) => match rechecking(s) {
            Some(rc) => format!(
                "  stable v{} at 100%, RECHECK until {} ({} left): v{} was rolled back in its bake; if v{} fails alike, v{} is canaried again{candidate}{paused}",
                s.stable,
                clock(rc.until),
                human_duration(rc.until.saturating_sub(t).max(0)),
                rc.version,
                s.stable,
                rc.version
            ),
            None => format!(
                "  stable v{} at 100%, no canary{candidate}{paused}",
                s.stable
            ),
        },
    }
}

/// Requests, 5xx and latency per version: the canary against the baseline, or during a bake
/// the promoted version since its promotion against the previous version before the canary.
fn metric_rows(p: &Policy, s: &AliasState, j: &Judgement) -> Vec<String> {
    let row = |name: &str, v: u64, t: &crate::judge::Totals, when: &str| {
        format!(
            "  {name:<8} v{v:<4} {:>8.0} req  5xx {:>7}  {} {}{when}",
            t.requests,
            t.error_rate().map_or("-".to_string(), pct),
            p.latency.stat.cloudwatch_name(),
            t.latency_ms
                .map_or("-".to_string(), |l| format!("{l:.0} ms"))
        )
    };
    let mut rows = Vec::new();
    match (s.canary, baking(s)) {
        (None, Some(b)) => {
            rows.push(row(
                "promoted",
                b.version,
                &j.canary,
                "  (since the promotion)",
            ));
            rows.push(row(
                "previous",
                b.previous,
                &j.baseline,
                "  (the hour before the canary)",
            ));
        }
        (None, None) if rechecking(s).is_some() => {
            rows.push(row("now", s.stable, &j.canary, "  (since the rollback)"));
            rows.push(row(
                "before",
                s.stable,
                &j.baseline,
                "  (the hour before the canary)",
            ));
        }
        (canary, _) => {
            if let Some(c) = canary {
                rows.push(row("canary", c.version, &j.canary, ""));
            }
            rows.push(row("baseline", s.stable, &j.baseline, ""));
        }
    }
    rows.push(format!("  verdict: {}", j.verdict));
    rows
}
