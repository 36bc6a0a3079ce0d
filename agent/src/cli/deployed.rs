//! What the deployed agent runs: the policy files it reads (its layer's `/opt/policies`), asked
//! for by `canary policy show --deployed` through a `{"canary": "policies"}` invocation
//! ([`crate::aws::deployed::ask_agent`]) and compared, file by file, with a local policy
//! directory.

use super::{CliError, Output};
use crate::policy;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::aws::deployed::POLICIES_REQUEST;

/// Policy files larger than this are not read into an answer (a policy is a few kilobytes; a
/// synchronous invocation answers at most 6 MB).
const MAX_FILE_BYTES: usize = 256 * 1024;

/// What one invocation of the scheduled agent asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// One tick (the schedule's events, and anything without a `canary` key).
    Tick,
    /// The policy files the agent runs.
    Policies,
}

/// Reads an invocation's event: `{"canary": "policies"}` asks for the policy files; any event
/// without a `canary` key (EventBridge's scheduled event) is a tick.
///
/// # Errors
/// A `canary` key with any other value, named in the message.
pub fn request_of(event: &serde_json::Value) -> Result<Request, String> {
    match event.get("canary") {
        None => Ok(Request::Tick),
        Some(serde_json::Value::String(s)) if s == "policies" => Ok(Request::Policies),
        Some(other) => Err(format!(
            "unknown request {{\"canary\": {other}}}; the agent answers {POLICIES_REQUEST} and runs a tick on any event without a \"canary\" key"
        )),
    }
}

/// One policy file as the agent (or a local directory) has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// File name within the directory.
    pub file: String,
    /// `FUNCTION:ALIAS` when the file is a valid policy.
    pub policy: Option<String>,
    /// Its problems, as `canary policy check` prints them.
    pub problems: Vec<String>,
    /// The file's text (empty when it could not be read).
    pub text: String,
}

/// The policy files of a directory: what the deployed agent answers to [`POLICIES_REQUEST`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFiles {
    /// The directory.
    pub dir: String,
    /// Every policy file, in name order.
    pub files: Vec<PolicyFile>,
    /// Every problem, the directory's own included, as `canary policy check` prints them.
    pub problems: Vec<String>,
}

/// Every policy file of a directory ([`policy::read_dir`]: the files the agent loads, each read
/// once), with its text and what `canary policy check` says of it.
#[must_use]
pub fn policy_files(dir: &Path) -> PolicyFiles {
    let (texts, listed) = policy::read_dir(dir);
    let files: Vec<(String, String)> = texts
        .iter()
        .map(|(path, text)| {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let text = text
                .as_ref()
                .ok()
                .filter(|t| t.len() <= MAX_FILE_BYTES)
                .cloned()
                .unwrap_or_default();
            (name, text)
        })
        .collect();
    let report = policy::load_texts(texts, listed);
    let named = |p: &Path, name: &str| p.file_name().is_some_and(|n| n.to_string_lossy() == name);
    PolicyFiles {
        dir: dir.display().to_string(),
        files: files
            .into_iter()
            .map(|(file, text)| PolicyFile {
                policy: report
                    .policies
                    .iter()
                    .find(|p| named(&p.source, &file))
                    .map(|p| format!("{}:{}", p.function, p.alias)),
                problems: report
                    .problems
                    .iter()
                    .filter(|p| named(&p.file, &file))
                    .map(ToString::to_string)
                    .collect(),
                text,
                file,
            })
            .collect(),
        problems: report.problems.iter().map(ToString::to_string).collect(),
    }
}

/// A deployed agent's answer to [`POLICIES_REQUEST`].
fn answer_of(answer: &serde_json::Value) -> Result<PolicyFiles, CliError> {
    PolicyFiles::deserialize(answer).map_err(|e| {
        CliError::Failed(format!(
            "the agent's answer is not a list of policy files ({e}); is it a lambda-canary agent of this version?"
        ))
    })
}

/// How a deployed file compares with the local directory's.
fn compare(deployed: &PolicyFile, local: &[PolicyFile]) -> &'static str {
    match local.iter().find(|l| l.file == deployed.file) {
        Some(l) if l.text == deployed.text => "same",
        Some(_) => "differs",
        None => "only deployed",
    }
}

/// `canary policy show`: the local directory's policy files, or (`deployed`) the answer of the
/// deployed agent compared file by file with them.
///
/// # Errors
/// [`CliError::Usage`] when nothing can be shown, [`CliError::Failed`] when the agent's answer is
/// unreadable.
pub fn print_show(
    local_dir: &Path,
    deployed: Option<(&str, &serde_json::Value)>,
    output: Output,
) -> Result<(), CliError> {
    let local = policy_files(local_dir);
    let Some((agent, answer)) = deployed else {
        if local.files.is_empty() {
            return Err(CliError::Usage(format!(
                "no policy files (*.yaml) in {}",
                local_dir.display()
            )));
        }
        match output {
            Output::Json => say!("{}", serde_json::json!(local)),
            Output::Text => {
                for f in &local.files {
                    say!("{}  {}", f.file, f.policy.as_deref().unwrap_or("INVALID"));
                }
            }
        }
        return Ok(());
    };
    let answer = answer_of(answer)?;
    match output {
        Output::Json => {
            let mut json = serde_json::json!(answer);
            if let Some(list) = json["files"].as_array_mut() {
                for (entry, file) in list.iter_mut().zip(&answer.files) {
                    entry["local"] = compare(file, &local.files).into();
                }
            }
            json["agent"] = agent.into();
            say!("{json}");
        }
        Output::Text => {
            say!(
                "{agent} runs {} policy file(s) from {} (compared with {}):",
                answer.files.len(),
                answer.dir,
                local_dir.display()
            );
            for f in &answer.files {
                say!(
                    "  {}  {}  {}",
                    f.file,
                    f.policy.as_deref().unwrap_or("INVALID"),
                    compare(f, &local.files)
                );
                for p in &f.problems {
                    say!("      {p}");
                }
            }
            for l in local
                .files
                .iter()
                .filter(|l| !answer.files.iter().any(|f| f.file == l.file))
            {
                say!(
                    "  {}  not deployed (only in {})",
                    l.file,
                    local_dir.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedules_events_tick_and_only_the_policies_request_answers_files() {
        let scheduled = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(request_of(&scheduled), Ok(Request::Tick));
        assert_eq!(request_of(&serde_json::Value::Null), Ok(Request::Tick));
        let ask: serde_json::Value = serde_json::from_str(POLICIES_REQUEST).expect("json");
        assert_eq!(request_of(&ask), Ok(Request::Policies));
        let err = request_of(&serde_json::json!({"canary": "rollback"})).expect_err("unknown");
        assert!(
            err.contains("\"rollback\"") && err.contains(POLICIES_REQUEST),
            "{err}"
        );
    }

    #[test]
    fn the_answer_holds_every_file_its_text_and_validity_and_compares_with_a_local_directory() {
        let dir = crate::test_dir("deployed-answer");
        std::fs::write(dir.join("a.yaml"), "function: a\n").expect("write");
        std::fs::write(dir.join("b.yaml"), "function: b\nsteps: [50, 20]\n").expect("write");
        std::fs::write(dir.join("notes.txt"), "not a policy").expect("write");
        let answer = serde_json::json!(policy_files(&dir));
        let files = answer_of(&answer).expect("files").files;
        assert_eq!(
            files.iter().map(|f| f.file.as_str()).collect::<Vec<_>>(),
            ["a.yaml", "b.yaml"]
        );
        assert_eq!(files[0].policy.as_deref(), Some("a:live"));
        assert_eq!(files[0].text, "function: a\n");
        assert!(files[0].problems.is_empty());
        assert_eq!(files[1].policy, None);
        assert!(
            files[1].problems[0].contains("steps"),
            "{:?}",
            files[1].problems
        );
        // A local directory where a changed, b is the same and c is new.
        let local_dir = crate::test_dir("deployed-local");
        std::fs::write(local_dir.join("a.yaml"), "function: a\nsteps: [10, 100]\n").expect("write");
        std::fs::write(local_dir.join("b.yaml"), "function: b\nsteps: [50, 20]\n").expect("write");
        std::fs::write(local_dir.join("c.yaml"), "function: c\n").expect("write");
        let local = policy_files(&local_dir).files;
        assert_eq!(compare(&files[0], &local), "differs");
        assert_eq!(compare(&files[1], &local), "same");
        let gone = PolicyFile {
            file: "z.yaml".into(),
            policy: None,
            problems: vec![],
            text: String::new(),
        };
        assert_eq!(compare(&gone, &local), "only deployed");
        assert!(print_show(&local_dir, Some(("lambda-canary", &answer)), Output::Text).is_ok());
        assert!(print_show(&local_dir, Some(("lambda-canary", &answer)), Output::Json).is_ok());
        let err = print_show(
            &local_dir,
            Some(("old-agent", &serde_json::json!({"decisions": []}))),
            Output::Text,
        )
        .expect_err("not an answer");
        assert!(
            err.to_string().contains("not a list of policy files")
                && err.to_string().contains("missing field"),
            "{err}"
        );
        let empty = crate::test_dir("deployed-empty");
        assert_eq!(
            print_show(&empty, None, Output::Text)
                .expect_err("nothing")
                .exit_code(),
            2
        );
        for d in [dir, local_dir, empty] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
