//! The chat form of an announcement: an AWS Chatbot (Amazon Q Developer in chat applications)
//! custom notification, sent to the topic's `https` subscribers. Pure.
//!
//! Format: <https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html>
//! (`version` "1.0", `source` "custom", `content` with a markdown title, description, next
//! steps and keywords, `metadata` with a thread id, summary, event type and extra context).
//! Everything on-call needs from the text form is here, in the same words.

use serde_json::{json, Map, Value};

use crate::text::cut;

/// Longest title kept (characters); the subject is already shorter.
pub const TITLE_LIMIT: usize = 250;
/// Longest description kept (characters), well inside SNS's 256 KB message limit.
pub const DESCRIPTION_LIMIT: usize = 8000;
/// At most this many next steps.
pub const STEPS_LIMIT: usize = 10;

/// What a chat message is made of; the same parts make the text form.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The subject line.
    pub subject: &'a str,
    /// The "What happened", "By" and numbers lines.
    pub lines: &'a [String],
    /// The commands on-call may want next.
    pub commands: &'a [String],
    /// The link to the alias's metrics.
    pub metrics: &'a str,
    /// The message attributes (`event`, `function`, `alias`, `id`, ...).
    pub attributes: &'a [(String, String)],
}

/// The value of attribute `name`, if present.
fn attribute<'a>(parts: &Parts<'a>, name: &str) -> Option<&'a str> {
    parts
        .attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A Slack/Teams emoji shortcode that tells the kind of event at a glance.
fn mark(event: Option<&str>) -> &'static str {
    match event {
        Some("rolled_back" | "unprotected") => ":rotating_light:",
        Some("no_data" | "paused" | "shared_failure") => ":warning:",
        Some("promoted" | "baked" | "protected") => ":white_check_mark:",
        _ => ":arrow_forward:",
    }
}

/// The thread the message belongs to: one per release, or one per canary of a version, so a
/// canary's start, steps and end read as one conversation.
fn thread(parts: &Parts<'_>) -> String {
    if let Some(release) = attribute(parts, "release") {
        return format!("lambda-canary/release/{release}");
    }
    let function = attribute(parts, "function").unwrap_or("");
    let alias = attribute(parts, "alias").unwrap_or("");
    match attribute(parts, "canary_version") {
        Some(v) => format!("lambda-canary/{function}:{alias}/v{v}"),
        None => format!("lambda-canary/{function}:{alias}"),
    }
}

/// The description: the text form's lines as markdown (indented lines as list items).
fn description(lines: &[String]) -> String {
    let text: Vec<String> = lines
        .iter()
        .map(|l| match l.strip_prefix("  ") {
            Some(rest) => format!("• {}", rest.trim_start()),
            None => l.clone(),
        })
        .collect();
    cut(&text.join("\n"), DESCRIPTION_LIMIT)
}

/// The custom-notification JSON for `parts`.
#[must_use]
pub fn message(parts: &Parts<'_>) -> String {
    let event = attribute(parts, "event");
    let mut steps: Vec<String> = parts
        .commands
        .iter()
        .take(STEPS_LIMIT.saturating_sub(1))
        .map(|c| match c.split_once("    # ") {
            Some((cmd, why)) => format!("`{}` ({why})", cmd.trim_end()),
            None => format!("`{c}`"),
        })
        .collect();
    // A bare URL: Slack and Teams both link it, whatever their markdown.
    steps.push(format!("Metrics: {}", parts.metrics));
    let keywords: Vec<&str> = ["function", "alias", "event", "release"]
        .iter()
        .filter_map(|k| attribute(parts, k))
        .collect();
    let context: Map<String, Value> = parts
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let title = format!("{} {}", mark(event), parts.subject);
    json!({
        "version": "1.0",
        "source": "custom",
        "id": attribute(parts, "id").unwrap_or(""),
        "content": {
            "textType": "client-markdown",
            "title": cut(&title, TITLE_LIMIT),
            "description": description(parts.lines),
            "nextSteps": steps,
            "keywords": keywords,
        },
        "metadata": {
            "threadId": thread(parts),
            "summary": parts.subject,
            "eventType": event.unwrap_or("announcement"),
            "additionalContext": context,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_chat_message_is_a_custom_notification_with_the_same_words() {
        let lines = vec![
            "What happened: notes-get:live was pointed back at v6.".to_string(),
            "Numbers:".to_string(),
            "  canary 5xx 100% (12 of 12)".to_string(),
        ];
        let commands = vec![
            "canary status notes-get".to_string(),
            "canary start notes-get --version 7    # try v7 again".to_string(),
        ];
        let attributes = attrs(&[
            ("event", "rolled_back"),
            ("function", "notes-get"),
            ("alias", "live"),
            ("canary_version", "7"),
            ("id", "notes-get:live:rolled_back:1"),
        ]);
        let parts = Parts {
            subject: "ROLLED BACK notes-get v7 -> v6",
            lines: &lines,
            commands: &commands,
            metrics: "https://example/console",
            attributes: &attributes,
        };
        let v: Value = serde_json::from_str(&message(&parts)).expect("JSON");
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["source"], "custom");
        assert_eq!(v["id"], "notes-get:live:rolled_back:1");
        assert_eq!(v["content"]["textType"], "client-markdown");
        assert_eq!(
            v["content"]["title"],
            ":rotating_light: ROLLED BACK notes-get v7 -> v6"
        );
        let description = v["content"]["description"].as_str().expect("a description");
        assert!(description.starts_with("What happened: notes-get:live"));
        assert!(description.ends_with("• canary 5xx 100% (12 of 12)"));
        assert_eq!(
            v["content"]["nextSteps"],
            json!([
                "`canary status notes-get`",
                "`canary start notes-get --version 7` (try v7 again)",
                "Metrics: https://example/console"
            ])
        );
        assert_eq!(
            v["content"]["keywords"],
            json!(["notes-get", "live", "rolled_back"])
        );
        assert_eq!(v["metadata"]["threadId"], "lambda-canary/notes-get:live/v7");
        assert_eq!(v["metadata"]["eventType"], "rolled_back");
        assert_eq!(v["metadata"]["additionalContext"]["canary_version"], "7");
    }

    #[test]
    fn a_release_threads_by_release_and_long_text_is_cut() {
        let lines = vec!["x".repeat(DESCRIPTION_LIMIT * 2)];
        let commands: Vec<String> = (0..30).map(|i| format!("canary status f{i}")).collect();
        let attributes = attrs(&[("event", "started"), ("release", "r1")]);
        let subject = "s".repeat(400);
        let parts = Parts {
            subject: &subject,
            lines: &lines,
            commands: &commands,
            metrics: "m",
            attributes: &attributes,
        };
        let v: Value = serde_json::from_str(&message(&parts)).expect("JSON");
        assert_eq!(v["metadata"]["threadId"], "lambda-canary/release/r1");
        let count = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .expect("a string")
                .chars()
                .count()
        };
        assert_eq!(count("/content/title"), TITLE_LIMIT);
        assert_eq!(count("/content/description"), DESCRIPTION_LIMIT);
        assert_eq!(
            v["content"]["nextSteps"].as_array().expect("steps").len(),
            STEPS_LIMIT
        );
    }
}
