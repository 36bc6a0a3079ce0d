//! What on-call reads: subject, body and attributes of every announcement. Pure.

use crate::judge::{pct, Judgement};
use crate::policy::Policy;
use crate::ports::Notification;
use crate::rollout::{Action, AliasState, EventKind};

/// SNS's limit on a subject.
pub const SUBJECT_LIMIT: usize = 100;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The agent, on its own judgement.
    Agent,
    /// A person, with the command they ran and their reason.
    Manual {
        /// The command, e.g. `canary pause notes-create`.
        command: String,
    },
    /// A re-send of an announcement whose first publish failed.
    Retry,
}

/// The region an SNS topic ARN names, if it is well formed.
#[must_use]
pub fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// Link to the alias's monitoring tab in the Lambda console.
#[must_use]
pub fn console_link(policy: &Policy, region: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/lambda/home?region={region}#/functions/{}/aliases/{}?tab=monitoring",
        policy.function, policy.alias
    )
}

fn truncate(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_string();
    }
    let mut t: String = s.chars().take(limit - 1).collect();
    t.push('…');
    t
}

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

/// Builds the announcement of `action`, taken on `before` under `policy`.
#[must_use]
pub fn announcement(
    policy: &Policy,
    before: &AliasState,
    action: &Action,
    judgement: Option<&Judgement>,
    trigger: &Trigger,
) -> Option<Notification> {
    let kind = action.event()?;
    let f = &policy.function;
    let stable = before.stable;
    let canary = before.canary.map(|c| c.version);
    let (subject, what) = match action {
        Action::Start { version, weight } => (
            format!("Canary started: {f} v{version} at {weight}% (stable v{stable})"),
            format!("{f} v{version} now receives {weight}% of {}'s traffic; v{stable} serves the rest.", policy.alias),
        ),
        Action::Step { version, weight, .. } => (
            format!("Canary step: {f} v{version} to {weight}% (stable v{stable})"),
            format!("{f} v{version} now receives {weight}% of {}'s traffic.", policy.alias),
        ),
        Action::Promote { version } => (
            format!("Promoted {f} v{version} to 100% (was v{stable})"),
            format!("{f}:{} now sends all traffic to v{version}; v{stable} is retired.", policy.alias),
        ),
        Action::Rollback { to, rejected, why } => {
            let from = rejected.or(canary).map_or(String::new(), |r| format!("v{r} "));
            let h = headline(policy, judgement, why);
            let tail = if h.is_empty() || *trigger != Trigger::Agent {
                truncate(why, 60)
            } else {
                h
            };
            (
                format!("ROLLED BACK {f} {from}→ v{to}: {tail}"),
                format!(
                    "{f}:{} was pointed back at v{to}{}. Why: {why}",
                    policy.alias,
                    rejected.map_or(String::new(), |r| format!("; v{r} will not be started again until the {} alias points at a new version", policy.candidate_alias))
                ),
            )
        }
        Action::NoData => (
            format!(
                "Canary stuck: {f} v{} has had no traffic for {}",
                canary.unwrap_or_default(),
                crate::tick::human_duration(policy.no_data_timeout_secs())
            ),
            format!(
                "The canary of {f} is holding at {}% because its version receives no requests (on_no_data: hold). Nothing is at risk; it moves on when traffic returns.",
                before.canary.map_or(0.0, |c| c.weight)
            ),
        ),
        Action::Pause => (
            format!("Paused {f}: canary frozen"),
            format!("Forward moves of {f}:{} are frozen; rollback protection stays on.", policy.alias),
        ),
        Action::Resume => (
            format!("Resumed {f}: canary moves again"),
            format!("Forward moves of {f}:{} are allowed again.", policy.alias),
        ),
        Action::Hold(_) => return None,
    };
    let subject = match trigger {
        Trigger::Retry => format!("(retry) {subject}"),
        _ => subject,
    };
    let mut body = vec![format!("What happened: {what}")];
    body.push(match trigger {
        Trigger::Agent => "By: the canary agent.".to_string(),
        Trigger::Manual { command } => format!("By: a person, with `{command}`."),
        Trigger::Retry => {
            "By: the canary agent (this announcement failed to send earlier).".to_string()
        }
    });
    if let Some(j) = judgement {
        let lat = |t: &crate::judge::Totals| {
            t.latency_ms
                .map_or("no data".to_string(), |l| format!("{l:.0} ms"))
        };
        let rate = |t: &crate::judge::Totals| {
            t.error_rate().map_or("no requests".to_string(), |r| {
                format!("{:.0} requests, 5xx {}", t.requests, pct(r))
            })
        };
        body.push(String::new());
        body.push("Numbers since the canary started:".to_string());
        body.push(format!(
            "  canary   v{}: {}, {} {}",
            canary.unwrap_or_default(),
            rate(&j.canary),
            policy.latency.stat.cloudwatch_name(),
            lat(&j.canary)
        ));
        body.push(format!(
            "  baseline v{stable}: {}, {} {}",
            rate(&j.baseline),
            policy.latency.stat.cloudwatch_name(),
            lat(&j.baseline)
        ));
        body.push(format!(
            "  limits: 5xx ≤ {} and ≤ baseline + {}; {} ≤ {:.0} ms and ≤ {}× baseline (+{:.0} ms); confidence {}",
            pct(policy.errors.max_rate),
            pct(policy.errors.max_increase),
            policy.latency.stat.cloudwatch_name(),
            policy.latency.max_ms,
            policy.latency.max_ratio,
            policy.latency.min_increase_ms,
            pct(policy.confidence)
        ));
    }
    body.push(String::new());
    body.push("To override:".to_string());
    let mut cmds = vec![format!("canary status {f}")];
    match kind {
        EventKind::RolledBack => {
            if let Some(r) = canary.or(match action {
                Action::Rollback { rejected, .. } => *rejected,
                _ => None,
            }) {
                cmds.push(format!(
                    "canary start {f} --version {r}    # try v{r} again"
                ));
            }
        }
        EventKind::Promoted => cmds.push(format!(
            "canary rollback {f} --to {stable} --reason \"...\""
        )),
        EventKind::Paused => cmds.push(format!("canary resume {f}")),
        _ => {
            cmds.push(format!("canary rollback {f} --reason \"...\""));
            cmds.push(format!("canary promote {f} [--full]"));
            cmds.push(format!("canary pause {f}"));
        }
    }
    body.extend(cmds.into_iter().map(|c| format!("  {c}")));
    let region = policy
        .notify
        .as_ref()
        .and_then(|n| region_of(&n.topic_arn))
        .unwrap_or("us-east-1");
    body.push(String::new());
    body.push(format!("Metrics: {}", console_link(policy, region)));

    let mut attributes = vec![
        ("event".to_string(), kind.as_str().to_string()),
        ("function".to_string(), f.clone()),
        ("alias".to_string(), policy.alias.clone()),
        ("stable_version".to_string(), stable.to_string()),
        (
            "trigger".to_string(),
            match trigger {
                Trigger::Agent | Trigger::Retry => "agent",
                Trigger::Manual { .. } => "manual",
            }
            .to_string(),
        ),
    ];
    let canary_attr = match action {
        Action::Start { version, .. }
        | Action::Step { version, .. }
        | Action::Promote { version } => Some(*version),
        Action::Rollback { rejected, .. } => rejected.or(canary),
        _ => canary,
    };
    if let Some(c) = canary_attr {
        attributes.push(("canary_version".to_string(), c.to_string()));
    }
    Some(Notification {
        subject: truncate(&subject, SUBJECT_LIMIT),
        body: body.join("\n"),
        attributes,
    })
}

/// Re-sends an announcement a previous tick could not publish, from what the alias record kept.
#[must_use]
pub fn retry(policy: &Policy, state: &AliasState) -> Notification {
    let last = state.record.last.clone().unwrap_or_default();
    Notification {
        subject: truncate(&format!("(retry) {}: {last}", policy.function), SUBJECT_LIMIT),
        body: format!(
            "An announcement about {}:{} could not be published when it happened. Last decision: {last}\n\nSee: canary status {}",
            policy.function, policy.alias, policy.function
        ),
        attributes: vec![
            ("event".to_string(), "retry".to_string()),
            ("function".to_string(), policy.function.clone()),
            ("stable_version".to_string(), state.stable.to_string()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{Totals, Verdict};
    use crate::rollout::{Record, Routing};

    fn before() -> AliasState {
        AliasState {
            stable: 6,
            canary: Some(Routing {
                version: 7,
                weight: 10.0,
            }),
            candidate: Some(7),
            record: Record::default(),
        }
    }

    fn judgement() -> Judgement {
        Judgement {
            verdict: Verdict::Regressed(vec![
                "canary 5xx 100% (12 of 12) is above the 1% ceiling".into()
            ]),
            canary: Totals {
                requests: 12.0,
                errors: 12.0,
                latency_ms: None,
            },
            baseline: Totals {
                requests: 1000.0,
                errors: 1.0,
                latency_ms: Some(120.0),
            },
            canary_requests_at_step: 12.0,
            last_canary_traffic: Some(0),
            ceiling_evidence: 1e9,
            increase_evidence: 1e9,
            latency_evidence: 1.0,
            threshold: 300.0,
        }
    }

    #[test]
    fn rollback_page_says_what_why_numbers_and_how_to_override() {
        let p = Policy::with_defaults("notes-create");
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "canary 5xx 100% (12 of 12) is above the 1% ceiling".into(),
        };
        let n = announcement(&p, &before(), &action, Some(&judgement()), &Trigger::Agent)
            .expect("announced");
        assert_eq!(
            n.subject,
            "ROLLED BACK notes-create v7 → v6: 5xx 100% vs 0.10%"
        );
        assert!(
            n.body.contains("v7 will not be started again"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("canary   v7: 12 requests, 5xx 100%"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("canary start notes-create --version 7"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("console.aws.amazon.com/lambda"),
            "{}",
            n.body
        );
        assert!(n
            .attributes
            .contains(&("event".into(), "rolled_back".into())));
        assert!(n
            .attributes
            .contains(&("canary_version".into(), "7".into())));
    }

    #[test]
    fn a_latency_rollback_says_latency_in_its_subject() {
        let p = Policy::with_defaults("notes-get");
        let mut j = judgement();
        j.canary = Totals {
            requests: 500.0,
            errors: 0.0,
            latency_ms: Some(240.0),
        };
        j.baseline.latency_ms = Some(80.0);
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "canary p99 240 ms vs baseline 80 ms over 6 periods".into(),
        };
        let n = announcement(&p, &before(), &action, Some(&j), &Trigger::Agent).expect("announced");
        assert_eq!(
            n.subject,
            "ROLLED BACK notes-get v7 → v6: p99 240 ms vs 80 ms"
        );
    }

    #[test]
    fn subjects_fit_sns_limit_and_holds_are_silent() {
        let p = Policy::with_defaults(&"f".repeat(64));
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "x".repeat(300),
        };
        let manual = Trigger::Manual {
            command: "canary rollback".into(),
        };
        let n = announcement(&p, &before(), &action, None, &manual).expect("announced");
        assert!(n.subject.chars().count() <= SUBJECT_LIMIT, "{}", n.subject);
        assert!(announcement(
            &p,
            &before(),
            &Action::Hold("x".into()),
            None,
            &Trigger::Agent
        )
        .is_none());
    }
}
