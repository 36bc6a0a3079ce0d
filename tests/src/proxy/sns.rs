//! SNS's rules the emulator does not enforce: subject and message checks on `Publish`, and the
//! record of every accepted message.

use std::collections::BTreeMap;

use super::faults::query_error;
use super::faults::Service;
use super::http::form_pairs;
use super::http::{Request, Response};
use super::{lock, Published, RejectedSubject, Shared};

/// SNS's `Publish` subject limit: subjects must be shorter than this many characters.
pub const SNS_SUBJECT_LIMIT: usize = 100;
/// SNS's message size limit (bytes of the message; attributes count too, not checked here).
pub const SNS_MESSAGE_LIMIT: usize = 262_144;

/// Which subjects SNS `Publish` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectRule {
    /// ASCII printable text (`' '..='~'`) that begins with a letter, number or punctuation mark and
    /// is shorter than 100 characters (SNS's long-standing error text for a bad subject).
    #[default]
    Ascii,
    /// UTF-8 text with no line breaks or control characters, shorter than 100 characters (the
    /// wording of the current `Publish` API reference).
    Utf8,
}

/// Checks an SNS `Publish` message and its `MessageStructure`; `Ok` holds the per-protocol
/// messages of a `json` structure (empty for a plain message), `Err` says what SNS would refuse.
///
/// # Errors
/// The message is over [`SNS_MESSAGE_LIMIT`] bytes, the structure is not `json`, or a `json`
/// message is not a JSON object whose values are strings with a `default` entry.
pub fn check_message(
    message: &str,
    structure: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    if message.len() > SNS_MESSAGE_LIMIT {
        return Err(format!(
            "the message is {} bytes; SNS takes at most {SNS_MESSAGE_LIMIT}",
            message.len()
        ));
    }
    match structure {
        None => return Ok(BTreeMap::new()),
        Some("json") => {}
        Some(other) => return Err(format!("MessageStructure {other:?} is not \"json\"")),
    }
    let value: serde_json::Value = serde_json::from_str(message)
        .map_err(|e| format!("Message Structure - JSON message body failed to parse: {e}"))?;
    let object = value
        .as_object()
        .ok_or("Message Structure - the JSON message body is not an object")?;
    let mut out = BTreeMap::new();
    for (protocol, text) in object {
        let text = text.as_str().ok_or(format!(
            "Message Structure - the {protocol:?} entry is not a string"
        ))?;
        out.insert(protocol.clone(), text.to_string());
    }
    if !out.contains_key("default") {
        return Err("Message Structure - No default entry in JSON message body".to_string());
    }
    Ok(out)
}

/// Checks an SNS `Publish` subject; `Err` says what is wrong.
///
/// # Errors
/// The subject breaks `rule` (empty, too long, a control character or line break, a non-ASCII
/// character under [`SubjectRule::Ascii`], or a first character that is not a letter, number or
/// punctuation mark).
pub fn check_subject(subject: &str, rule: SubjectRule) -> Result<(), String> {
    let chars = subject.chars().count();
    if chars == 0 {
        return Err("the subject is empty".to_string());
    }
    if chars >= SNS_SUBJECT_LIMIT {
        return Err(format!(
            "the subject is {chars} characters long; it must be shorter than {SNS_SUBJECT_LIMIT}"
        ));
    }
    if let Some(c) = subject.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the subject contains a line break or control character ({:?})",
            c
        ));
    }
    if rule == SubjectRule::Ascii {
        if let Some(c) = subject.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "the subject contains {c:?}, which is not printable ASCII"
            ));
        }
        if subject
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii_alphanumeric() && !c.is_ascii_punctuation())
        {
            return Err(
                "the subject must begin with a letter, number or punctuation mark".to_string(),
            );
        }
    }
    Ok(())
}

impl Shared {
    pub(super) fn check_publish(&self, request: &Request) -> Option<Response> {
        let pairs = form_pairs(&request.body);
        if !pairs.iter().any(|(k, v)| k == "Action" && v == "Publish") {
            return None;
        }
        let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let subject = field("Subject");
        let message = field("Message").map_or("", String::as_str);
        let structure = field("MessageStructure").map(String::as_str);
        let by_protocol = match check_message(message, structure) {
            Ok(by_protocol) => by_protocol,
            Err(why) => {
                self.count(|s| s.message_rejected += 1);
                return Some(query_error(
                    Service::Sns,
                    400,
                    "Sender",
                    "InvalidParameter",
                    &format!("Invalid parameter: {why}"),
                ));
            }
        };
        let refused =
            subject.and_then(|s| Some((s, check_subject(s, self.config.subject_rule).err()?)));
        let Some((subject, why)) = refused else {
            lock(&self.published).push(Published {
                subject: subject.cloned(),
                message: message.to_string(),
                by_protocol,
            });
            return None;
        };
        self.count(|s| s.subject_rejected += 1);
        lock(&self.rejected_subjects).push(RejectedSubject {
            subject: subject.clone(),
            why,
        });
        Some(query_error(
            Service::Sns,
            400,
            "Sender",
            "InvalidParameter",
            "Invalid parameter: Subject",
        ))
    }
}
