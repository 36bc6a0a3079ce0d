//! What on-call reads: subject, body and attributes of every announcement, and the same in chat
//! form ([`chat`], for AWS Chatbot). Pure.
//!
//! Every announcement is first an [`Owed`] entry in the alias record, written with the decision
//! it announces. The tick that made the decision sends the full text ([`announcement`]); a later
//! tick that finds it still owed re-sends it from the record alone ([`notice`] with
//! `resend: true`). Both carry the same attributes, including the same `id`, plus `resend=true`
//! on a re-send, so a subscription filter on `event` sees both and duplicates can be dropped.

use crate::judge::{pct, Judgement, Totals};
use crate::outage::Outage;
use crate::policy::Policy;
use crate::ports::Notification;
use crate::record::{EventKind, Owed};
use crate::rollout::{Action, AliasState, Recheck};
use crate::text::{ascii_subject, human_duration, one_line};

pub mod chat;
mod held;
mod words;
use words::{action_words, plain_words};

/// SNS's limit on a subject: fewer than this many characters.
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
}

/// The release a decision is part of, for the one announcement of the release's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseNote {
    /// The release's name.
    pub name: String,
    /// What happened to each member in the same tick or command, e.g.
    /// `(RolledBack, "notes-get v7 -> v6")`.
    pub members: Vec<(EventKind, String)>,
}

/// Everything the tick that made a decision knows about it, beyond the owed entry.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The alias as it was before the decision.
    pub before: &'a AliasState,
    /// The decision's action.
    pub action: &'a Action,
    /// The judge's numbers, if the canary was judged.
    pub judgement: Option<&'a Judgement>,
    /// Who caused it.
    pub trigger: &'a Trigger,
    /// What failed, for an "unprotected" announcement.
    pub problem: Option<&'a str>,
    /// The release whose decision this announcement tells, with its members.
    pub release: Option<&'a ReleaseNote>,
    /// The recheck a rollback in the bake started, if it started one.
    pub recheck: Option<Recheck>,
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

/// Which periods a decision's numbers cover.
#[derive(Clone, Copy)]
enum Window {
    /// Since the canary started, against the stable version at the same time.
    Canary,
    /// Since the promotion, against the previous version's hour before the canary.
    Bake,
    /// Since the rollback in the bake, the version back on the alias against its own hour
    /// before the canary.
    Recheck,
}

/// The numbers behind a decision, for the body, over the periods `window` says.
fn numbers(
    policy: &Policy,
    version: Option<u64>,
    stable: u64,
    window: Window,
    j: &Judgement,
) -> Vec<String> {
    let stat = policy.latency.stat.cloudwatch_name();
    let lat = |t: &Totals| {
        t.latency_ms
            .map_or("no data".to_string(), |l| format!("{l:.0} ms"))
    };
    let rate = |t: &Totals| {
        t.error_rate().map_or("no requests".to_string(), |r| {
            format!("{:.0} requests, 5xx {}", t.requests, pct(r))
        })
    };
    vec![
        String::new(),
        match window {
            Window::Canary => "Numbers since the canary started:".to_string(),
            Window::Bake => format!(
                "Numbers since the promotion, against v{stable} in the hour before the canary:"
            ),
            Window::Recheck => format!(
                "Numbers since the rollback, against v{stable} itself in the hour before the canary:"
            ),
        },
        format!(
            "  {}v{}: {}, {stat} {}",
            match window {
                Window::Recheck => "now      ",
                _ => "canary   ",
            },
            version.unwrap_or_default(),
            rate(&j.canary),
            lat(&j.canary)
        ),
        format!("  baseline v{stable}: {}, {stat} {}", rate(&j.baseline), lat(&j.baseline)),
        format!(
            "  limits: 5xx ≤ {} and ≤ baseline + {}; {stat} ≤ {:.0} ms and ≤ {}× baseline (+{:.0} ms); confidence {}",
            pct(policy.errors.max_rate),
            pct(policy.errors.max_increase),
            policy.latency.max_ms,
            policy.latency.max_ratio,
            policy.latency.min_increase_ms,
            pct(policy.confidence)
        ),
    ]
}

/// The commands on-call may want next.
fn commands(policy: &Policy, o: &Owed) -> Vec<String> {
    let f = &policy.function;
    let mut cmds = vec![format!("canary status {f}")];
    match o.event {
        EventKind::RolledBack => {
            if let Some(r) = o.version {
                cmds.push(format!(
                    "canary start {f} --version {r}    # try v{r} again"
                ));
            }
        }
        EventKind::Promoted if policy.bake_secs() > 0 => {
            cmds.push(format!(
                "canary rollback {f} --reason \"...\"    # during the bake: back to the previous version"
            ));
            cmds.push(format!("canary promote {f}    # end the bake now"));
        }
        EventKind::Promoted => {
            cmds.push(format!(
                "canary rollback {f} --to <previous version> --reason \"...\""
            ));
        }
        EventKind::Paused => cmds.push(format!("canary resume {f}")),
        EventKind::SharedFailure => {
            cmds.push(format!(
                "canary pause {f}    # keep v{} back until you resume",
                o.version.unwrap_or_default()
            ));
        }
        _ => {
            cmds.push(format!("canary rollback {f} --reason \"...\""));
            cmds.push(format!("canary promote {f} [--full]"));
            cmds.push(format!("canary pause {f}"));
        }
    }
    if let Some(r) = &policy.release {
        cmds.push(format!(
            "canary status --release {r}    # every member of the release"
        ));
        match o.event {
            EventKind::RolledBack => cmds.push(format!(
                "canary start --release {r}    # try the release again"
            )),
            EventKind::Started | EventKind::Stepped | EventKind::Promoted => {
                cmds.push(format!(
                    "canary rollback --release {r} --reason \"...\"    # every member"
                ));
            }
            _ => {}
        }
    }
    cmds
}

/// The link to the alias's metrics, in the topic's region.
fn metrics_link(policy: &Policy) -> String {
    let region = policy
        .notify
        .as_ref()
        .and_then(|n| region_of(&n.topic_arn))
        .unwrap_or("us-east-1");
    console_link(policy, region)
}

/// The finished message from its parts: the text form (`lines`, the commands to override, the
/// metrics link and the id) and the chat form of the same parts ([`chat::message`]).
fn finish(
    policy: &Policy,
    o: &Owed,
    subject: &str,
    lines: Vec<String>,
    resend: bool,
) -> Notification {
    let subject = ascii_subject(subject, SUBJECT_LIMIT);
    let commands = commands(policy, o);
    let metrics = metrics_link(policy);
    let attributes = attributes(policy, o, resend);
    let chat = chat::message(&chat::Parts {
        subject: &subject,
        lines: &lines,
        commands: &commands,
        metrics: &metrics,
        attributes: &attributes,
    });
    let mut body = lines;
    body.push(String::new());
    body.push("To override:".to_string());
    body.extend(commands.iter().map(|c| format!("  {c}")));
    body.push(String::new());
    body.push(format!("Metrics: {metrics}"));
    body.push(format!("Id: {}", o.id(&policy.function, &policy.alias)));
    Notification {
        subject,
        body: body.join("\n"),
        attributes,
        chat,
    }
}

/// Message attributes for subscription filter policies: the same on the first send and on
/// re-sends, which add `resend=true`.
fn attributes(policy: &Policy, o: &Owed, resend: bool) -> Vec<(String, String)> {
    let mut attributes = vec![
        ("event".to_string(), o.event.as_str().to_string()),
        ("function".to_string(), policy.function.clone()),
        ("alias".to_string(), policy.alias.clone()),
        ("stable_version".to_string(), o.stable.to_string()),
        (
            "trigger".to_string(),
            if o.manual { "manual" } else { "agent" }.to_string(),
        ),
        ("id".to_string(), o.id(&policy.function, &policy.alias)),
    ];
    if let Some(v) = o.version {
        attributes.push(("canary_version".to_string(), v.to_string()));
    }
    if let Some(r) = &policy.release {
        attributes.push(("release".to_string(), r.clone()));
    }
    if resend {
        attributes.push(("resend".to_string(), "true".to_string()));
    }
    attributes
}

/// The subject and members' line of the one announcement of a release's decision.
fn release_words(r: &ReleaseNote, event: EventKind, subject: String) -> (String, String) {
    let lines: Vec<&str> = r
        .members
        .iter()
        .filter(|(e, _)| *e == event)
        .map(|(_, l)| l.as_str())
        .collect();
    let name = &r.name;
    let n = lines.len();
    let subject = match event {
        EventKind::RolledBack => format!(
            "ROLLED BACK release {name}: {}",
            subject.strip_prefix("ROLLED BACK ").unwrap_or(&subject)
        ),
        _ if n <= 1 => format!("Release {name}: {subject}"),
        EventKind::Started => format!("Release {name}: canary started ({n} functions)"),
        EventKind::Stepped => format!("Release {name}: canary step ({n} functions)"),
        EventKind::Promoted => format!("Release {name}: promoted to 100% ({n} functions)"),
        EventKind::Baked => format!("Release {name} baked: the release is done ({n} functions)"),
        _ => format!("Release {name}: {subject}"),
    };
    let what = match event {
        EventKind::RolledBack => format!(
            "Release {name} is rolled back as one: every member under way goes back to its stable version: {}.",
            lines.join("; ")
        ),
        _ => format!("Release {name}, as one: {}.", lines.join("; ")),
    };
    (subject, what)
}

/// The full announcement of a decision's own event, by the tick that made it.
#[must_use]
pub fn announcement(policy: &Policy, o: &Owed, ctx: &Context<'_>) -> Notification {
    let (subject, what) = action_words(policy, o, ctx);
    let (subject, members) = match ctx.release {
        Some(r) => {
            let (subject, members) = release_words(r, o.event, subject);
            (subject, Some(members))
        }
        None => (subject, None),
    };
    let mut body = vec![format!("What happened: {what}")];
    body.extend(members);
    body.push(match ctx.trigger {
        Trigger::Agent => "By: the canary agent.".to_string(),
        Trigger::Manual { command } => format!("By: a person, with `{}`.", one_line(command, 300)),
    });
    if let Some(j) = ctx.judgement {
        let (before, recheck) = (ctx.before, crate::rollout::rechecking(ctx.before));
        body.extend(match (crate::rollout::baking(before), recheck) {
            (Some(b), _) => numbers(policy, Some(b.version), b.previous, Window::Bake, j),
            (None, Some(r)) => numbers(policy, Some(r.stable), r.stable, Window::Recheck, j),
            (None, None) => {
                let version = before.canary.map(|c| c.version).or(o.version);
                numbers(policy, version, before.stable, Window::Canary, j)
            }
        });
    }
    finish(policy, o, &subject, body, false)
}

/// An announcement from its owed entry alone: an event that is not the decision's action (e.g.
/// "protected again"), or a re-send (`resend`) of one a previous tick could not publish. `last`
/// is the record's last decision, for context.
#[must_use]
pub fn notice(policy: &Policy, o: &Owed, last: Option<&str>, resend: bool) -> Notification {
    let (subject, what) = plain_words(policy, o);
    let mut body = vec![format!("What happened: {what}")];
    body.push(format!(
        "By: {}, at {} (epoch seconds).",
        if o.manual {
            "a person"
        } else {
            "the canary agent"
        },
        o.at
    ));
    if resend {
        body.push(
            "This announcement could not be published when it happened; this is the agent's re-send (same id)."
                .to_string(),
        );
    }
    if let Some(last) = last {
        body.push(format!(
            "Last decision on {}:{}: {}",
            policy.function,
            policy.alias,
            one_line(last, 300)
        ));
    }
    let subject = if resend {
        format!("(re-sent) {subject}")
    } else {
        subject
    };
    finish(policy, o, &subject, body, resend)
}

/// The page about an alias the agent cannot read or write ([`crate::outage`]): "unprotected"
/// when it has lasted the policy's `unprotected_after` (`back: false`), "protected again" when
/// the agent wrote it (`back: true`). Remembered by the process, not the record, so it is never
/// re-sent by another process; the id (first failure's time) lets duplicates be recognised.
#[must_use]
pub fn outage(policy: &Policy, o: &Outage, now: i64, back: bool) -> Notification {
    let (f, a) = (&policy.function, &policy.alias);
    let owed = Owed {
        event: if back {
            EventKind::Protected
        } else {
            EventKind::Unprotected
        },
        version: o.canary.map(|(v, _)| v),
        stable: o.stable,
        at: o.since,
        manual: false,
        lease: 0,
    };
    let verb = o.reach.verb();
    let lasted = human_duration(now.saturating_sub(o.since));
    let (subject, what) = if back {
        (
            format!("Canary protected again: the agent writes {f}:{a} again"),
            format!("The agent could not {verb} {f}:{a} for {lasted} and now writes it again; rollback protection is back."),
        )
    } else {
        let stake = match o.canary {
            Some((v, w)) => format!(
                "v{v} keeps {w}% of {a}'s traffic and the agent can neither move it on nor roll it back"
            ),
            None => format!(
                "no canary was running when it last read the alias, so no user is at risk, but no new version of {f} can start"
            ),
        };
        (
            format!("CANARY UNPROTECTED: the agent cannot {verb} {f}:{a} for {lasted}"),
            format!(
                "Every attempt to {verb} {f}:{a} since {} (epoch seconds), {lasted} ago, has failed; {stake}. Last error: {}. Check the agent's permissions (lambda:ListAliases and lambda:UpdateAlias on {f}:{a}) and its log group.",
                o.since,
                one_line(&o.error, 300)
            ),
        )
    };
    let body = vec![
        format!("What happened: {what}"),
        "By: the canary agent.".to_string(),
    ];
    finish(policy, &owed, &subject, body, false)
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
            ceiling_evidence: 1e9,
            increase_evidence: 1e9,
            ..Judgement::fixture(Verdict::Healthy, Some(0))
        }
    }

    fn owed(event: EventKind, manual: bool) -> Owed {
        Owed {
            event,
            version: Some(7),
            stable: 6,
            at: 1_795_428_020,
            manual,
            lease: 0,
        }
    }

    fn ctx<'a>(
        before: &'a AliasState,
        action: &'a Action,
        j: Option<&'a Judgement>,
        trigger: &'a Trigger,
    ) -> Context<'a> {
        Context {
            before,
            action,
            judgement: j,
            trigger,
            problem: None,
            release: None,
            recheck: None,
        }
    }

    fn attr<'a>(n: &'a Notification, name: &str) -> Option<&'a str> {
        n.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one `NoData` notice of a canary held at its step for `held` seconds, with `j`'s
    /// numbers, under `p`.
    fn held_notice_under(p: &Policy, held: i64, j: &Judgement) -> Notification {
        let mut b = before();
        b.record.since = 1_795_428_020 - held;
        b.record.started = b.record.since;
        let o = owed(EventKind::NoData, false);
        announcement(p, &o, &ctx(&b, &Action::NoData, Some(j), &Trigger::Agent))
    }

    /// Asserts that the body of `n` contains every one of `texts`.
    fn says(n: &Notification, texts: &[&str]) {
        for text in texts {
            assert!(n.body.contains(text), "{text}: {}", n.body);
        }
    }

    /// [`held_notice_under`] the defaults.
    fn held_notice(held: i64, j: &Judgement) -> Notification {
        held_notice_under(&Policy::with_defaults("notes-create"), held, j)
    }

    #[test]
    fn a_starved_canary_says_how_many_requests_it_got_and_what_to_change() {
        let mut j = judgement();
        j.verdict = Verdict::NotEnoughData("3 of 100 canary requests at this step".into());
        j.canary_requests_at_step = 3.0;
        let n = held_notice(900, &j);
        assert_eq!(
            n.subject,
            "Canary stuck: notes-create v7 has had 3 of 100 requests in 15m"
        );
        says(
            &n,
            &[
                "holding at 10%",
                "about 0.20 requests a minute",
                "min_requests (100) takes about 8h20m",
                "canary policy check --rate",
                "canary promote notes-create",
            ],
        );
        // No canary request yet while the stable version has traffic (a low-traffic alias):
        // the rate its weight brings. 900 stable requests in 15 minutes at 90% of the alias:
        // 66.67 a minute to the alias, 6.67 to the canary at 10%.
        j.canary_requests_at_step = 0.0;
        j.baseline.requests = 900.0;
        let n = held_notice(900, &j);
        assert_eq!(
            n.subject,
            "Canary stuck: notes-create v7 has had 0 of 100 requests in 15m"
        );
        says(
            &n,
            &[
                "no request yet",
                "about 66.67 requests a minute",
                "about 6.67 a minute",
                "takes about 15m",
                "lower min_requests",
            ],
        );
        // No traffic at all, on either version, keeps the no-traffic wording.
        j.baseline.requests = 0.0;
        let n = held_notice(900, &j);
        assert!(n.subject.contains("has had no traffic"), "{}", n.subject);
    }

    #[test]
    fn a_canary_with_its_requests_but_no_latency_past_the_warm_up_says_what_is_missing() {
        let mut j = judgement();
        j.latency_seen = crate::judge::LatencySeen::default();
        j.verdict = Verdict::NotEnoughData(j.latency_seen.waiting(120));
        j.canary_requests_at_step = 900.0;
        let n = held_notice(900, &j);
        assert_eq!(
            n.subject,
            "Canary stuck: notes-create v7 has had no latency past its 2m warm-up in 15m"
        );
        says(
            &n,
            &[
                "holding at 10%",
                "it has seen 0 and 0",
                "latency.warmup (2m after each weight increase)",
                "canary promote notes-create",
            ],
        );
        // With no warm-up (EMF), the statistic itself is what is missing.
        j.verdict = Verdict::NotEnoughData(j.latency_seen.waiting(0));
        let mut emf = Policy::with_defaults("notes-create");
        emf.latency.warmup = Some(std::time::Duration::ZERO);
        let n = held_notice_under(&emf, 900, &j);
        assert_eq!(
            n.subject,
            "Canary stuck: notes-create v7 has had no latency statistic in 15m"
        );
        // Short of min_requests too: the requests are what it says is missing.
        j.canary_requests_at_step = 3.0;
        let n = held_notice(900, &j);
        assert!(n.subject.contains("3 of 100 requests"), "{}", n.subject);
    }

    #[test]
    fn a_canary_held_through_a_shared_outage_says_since_when_why_and_how_to_decide() {
        let mut j = judgement();
        j.verdict = Verdict::NotEnoughData(format!(
            "{} (3.1% 5xx): holding",
            crate::judge::SHARED_OUTAGE
        ));
        j.canary_requests_at_step = 5000.0;
        j.outage_since = Some(1_795_428_020 - 960);
        let n = held_notice(1800, &j);
        assert_eq!(
            n.subject,
            "Canary held: notes-create v6 has been failing too for 16m"
        );
        says(
            &n,
            &[
                "holding at 10%",
                "v6 has been failing too since",
                "moves on when the outage passes",
                "canary rollback notes-create",
                "canary promote notes-create",
            ],
        );
    }

    #[test]
    fn rollback_page_says_what_why_numbers_and_how_to_override() {
        let p = Policy::with_defaults("notes-create");
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "canary 5xx 100% (12 of 12) is above the 1% ceiling".into(),
        };
        let (b, j) = (before(), judgement());
        let o = owed(EventKind::RolledBack, false);
        let n = announcement(&p, &o, &ctx(&b, &action, Some(&j), &Trigger::Agent));
        assert_eq!(
            n.subject,
            "ROLLED BACK notes-create v7 -> v6: 5xx 100% vs 0.10%"
        );
        says(
            &n,
            &[
                "v7 will not be started again",
                "canary   v7: 12 requests, 5xx 100%",
                "canary start notes-create --version 7",
                "console.aws.amazon.com/lambda",
                "Id: notes-create:live:rolled_back:7:1795428020",
            ],
        );
        assert_eq!(attr(&n, "event"), Some("rolled_back"));
        assert_eq!(attr(&n, "canary_version"), Some("7"));
        assert_eq!(attr(&n, "stable_version"), Some("6"));
        assert_eq!(attr(&n, "resend"), None);
    }

    #[test]
    fn a_resend_keeps_the_event_attributes_and_id_and_marks_itself() {
        let p = Policy::with_defaults("notes-create");
        let o = owed(EventKind::RolledBack, true);
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "x".into(),
        };
        let (b, t) = (
            before(),
            Trigger::Manual {
                command: "canary rollback notes-create".into(),
            },
        );
        let first = announcement(&p, &o, &ctx(&b, &action, None, &t));
        let again = notice(&p, &o, Some("rolled back v7 to v6: x"), true);
        assert!(again
            .subject
            .starts_with("(re-sent) ROLLED BACK notes-create v7 -> v6"));
        for name in [
            "event",
            "function",
            "alias",
            "stable_version",
            "canary_version",
            "trigger",
            "id",
        ] {
            assert_eq!(attr(&first, name), attr(&again, name), "{name}");
        }
        assert_eq!(attr(&again, "trigger"), Some("manual"));
        assert_eq!(attr(&again, "resend"), Some("true"));
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
        let b = before();
        let n = announcement(
            &p,
            &owed(EventKind::RolledBack, false),
            &ctx(&b, &action, Some(&j), &Trigger::Agent),
        );
        assert_eq!(
            n.subject,
            "ROLLED BACK notes-get v7 -> v6: p99 240 ms vs 80 ms"
        );
    }

    #[test]
    fn subjects_follow_sns_rules_whatever_the_reason() {
        let p = Policy::with_defaults(&"f".repeat(64));
        let action = Action::Rollback {
            to: 6,
            rejected: Some(7),
            why: "line one\nline two\r\n\u{7}".to_string() + &"x".repeat(300),
        };
        let manual = Trigger::Manual {
            command: "canary rollback".into(),
        };
        let b = before();
        let n = announcement(
            &p,
            &owed(EventKind::RolledBack, true),
            &ctx(&b, &action, None, &manual),
        );
        assert!(n.subject.len() < SUBJECT_LIMIT, "{}", n.subject);
        assert!(
            n.subject.chars().all(|c| c.is_ascii() && !c.is_control()),
            "{}",
            n.subject
        );
        for event in [
            EventKind::Unprotected,
            EventKind::Protected,
            EventKind::NoData,
        ] {
            let n = notice(&p, &owed(event, false), None, true);
            assert!(n.subject.len() < SUBJECT_LIMIT, "{}", n.subject);
        }
    }

    #[test]
    fn an_alias_the_agent_cannot_write_pages_with_the_error_and_what_is_at_stake() {
        use crate::outage::{Outage, Reach};
        let p = Policy::with_defaults("notes-create");
        let o = Outage {
            since: 1_000,
            last_at: 1_300,
            reach: Reach::Write,
            error: "AccessDeniedException: not authorized to perform lambda:UpdateAlias\n".into(),
            stable: 6,
            canary: Some((7, 10.0)),
            paged: false,
        };
        let n = outage(&p, &o, 1_300, false);
        assert!(
            n.subject
                .starts_with("CANARY UNPROTECTED: the agent cannot write notes-create:live for 5m"),
            "{}",
            n.subject
        );
        assert!(
            n.body.contains("v7 keeps 10% of live's traffic"),
            "{}",
            n.body
        );
        assert!(n.body.contains("AccessDeniedException"), "{}", n.body);
        assert_eq!(attr(&n, "event"), Some("unprotected"));
        assert_eq!(attr(&n, "canary_version"), Some("7"));
        assert_eq!(attr(&n, "id"), Some("notes-create:live:unprotected:7:1000"));
        let back = outage(&p, &Outage { paged: true, ..o }, 1_900, true);
        assert_eq!(attr(&back, "event"), Some("protected"));
        assert!(
            back.subject.starts_with("Canary protected again"),
            "{}",
            back.subject
        );
        assert!(back.body.contains("for 15m"), "{}", back.body);
        let idle = outage(
            &p,
            &Outage {
                canary: None,
                reach: Reach::Read,
                since: 0,
                last_at: 0,
                stable: 6,
                error: String::new(),
                paged: false,
            },
            i64::MAX,
            false,
        );
        assert!(idle.body.contains("no user is at risk"), "{}", idle.body);
        assert!(idle.subject.len() < SUBJECT_LIMIT);
        assert_eq!(attr(&idle, "canary_version"), None);
    }
}
