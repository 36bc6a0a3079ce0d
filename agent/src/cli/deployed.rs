//! What the deployed agent runs: the policy files it reads (its layer's `/opt/policies`), asked
//! for by `canary policy show --deployed` through a `{"canary": "policies"}` invocation and
//! compared, file by file, with a local policy directory.

use super::{CliError, Output};
use crate::policy;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The payload that asks the deployed agent for its policy files instead of a tick.
pub const POLICIES_REQUEST: &str = r#"{"canary":"policies"}"#;

/// Policy files larger than this are not read into an answer (a policy is a few kilobytes; a
/// synchronous invocation answers at most 6 MB).
const MAX_FILE_BYTES: u64 = 256 * 1024;

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

/// Every policy file of a directory (`*.yaml`, `*.yml`), in name order, with its text and what
/// `canary policy check` says of it. What the deployed agent answers to [`POLICIES_REQUEST`].
#[must_use]
pub fn policy_files(dir: &Path) -> serde_json::Value {
    let report = policy::load_dir(dir);
    let mut files: Vec<PolicyFile> = Vec::new();
    let names = std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .collect();
            names.sort();
            names
        },
    );
    for name in names {
        let path = dir.join(&name);
        let same = |p: &Path| p.file_name().is_some_and(|n| n.to_string_lossy() == name);
        let text = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() <= MAX_FILE_BYTES)
            .and_then(|_| std::fs::read_to_string(&path).ok())
            .unwrap_or_default();
        files.push(PolicyFile {
            policy: report
                .policies
                .iter()
                .find(|p| same(&p.source))
                .map(|p| format!("{}:{}", p.function, p.alias)),
            problems: report
                .problems
                .iter()
                .filter(|p| same(&p.file))
                .map(ToString::to_string)
                .collect(),
            text,
            file: name,
        });
    }
    serde_json::json!({
        "dir": dir.display().to_string(),
        "files": files,
        "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The files of a [`policy_files`] answer.
fn files_of(answer: &serde_json::Value) -> Result<Vec<PolicyFile>, CliError> {
    serde_json::from_value(answer.get("files").cloned().unwrap_or_default()).map_err(|e| {
        CliError::Failed(format!(
            "the agent's answer has no readable \"files\" list ({e}); is it a lambda-canary agent of this version?"
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
    let local = files_of(&policy_files(local_dir))?;
    let Some((agent, answer)) = deployed else {
        if local.is_empty() {
            return Err(CliError::Usage(format!(
                "no policy files (*.yaml) in {}",
                local_dir.display()
            )));
        }
        match output {
            Output::Json => println!("{}", policy_files(local_dir)),
            Output::Text => {
                for f in &local {
                    println!("{}  {}", f.file, f.policy.as_deref().unwrap_or("INVALID"));
                }
            }
        }
        return Ok(());
    };
    let files = files_of(answer)?;
    match output {
        Output::Json => {
            let mut answer = answer.clone();
            if let Some(list) = answer.get_mut("files").and_then(|f| f.as_array_mut()) {
                for (entry, file) in list.iter_mut().zip(&files) {
                    entry["local"] = compare(file, &local).into();
                }
            }
            answer["agent"] = agent.into();
            println!("{answer}");
        }
        Output::Text => {
            let dir = answer.get("dir").and_then(|d| d.as_str()).unwrap_or("?");
            println!(
                "{agent} runs {} policy file(s) from {dir} (compared with {}):",
                files.len(),
                local_dir.display()
            );
            for f in &files {
                println!(
                    "  {}  {}  {}",
                    f.file,
                    f.policy.as_deref().unwrap_or("INVALID"),
                    compare(f, &local)
                );
                for p in &f.problems {
                    println!("      {p}");
                }
            }
            for l in local
                .iter()
                .filter(|l| !files.iter().any(|f| f.file == l.file))
            {
                println!(
                    "  {}  not deployed (only in {})",
                    l.file,
                    local_dir.display()
                );
            }
        }
    }
    Ok(())
}

/// How long `policy show --deployed` keeps asking while the agent's one reserved slot is busy
/// with a tick (a tick takes at most 50 s).
const BUSY_WAIT: Duration = Duration::from_secs(90);

/// Asks the deployed agent `agent` for its policy files (one synchronous invocation, retried
/// while the agent is busy with a tick).
///
/// # Errors
/// [`CliError::Failed`] naming the agent and what Lambda or the agent answered.
pub async fn ask_agent(
    client: &aws_sdk_lambda::Client,
    agent: &str,
    pause: Duration,
) -> Result<serde_json::Value, CliError> {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let started = std::time::Instant::now();
    loop {
        let sent = client
            .invoke()
            .function_name(agent)
            .payload(aws_smithy_types::Blob::new(POLICIES_REQUEST))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e)
                if e.code() == Some("TooManyRequestsException")
                    && started.elapsed() < BUSY_WAIT =>
            {
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                return Err(CliError::Failed(format!(
                    "could not ask the agent {agent}: {}",
                    e.message().map_or_else(
                        || aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                        str::to_string
                    )
                )))
            }
        };
        let body = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if let Some(kind) = out.function_error() {
            return Err(CliError::Failed(format!(
                "the agent {agent} failed to answer ({kind}): {text}; is it a lambda-canary agent of this version?"
            )));
        }
        return serde_json::from_str(&text).map_err(|e| {
            CliError::Failed(format!(
                "the agent {agent} answered something that is not JSON ({e}): {text}"
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("canary-deployed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

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
        let dir = temp_dir("answer");
        std::fs::write(dir.join("a.yaml"), "function: a\n").expect("write");
        std::fs::write(dir.join("b.yaml"), "function: b\nsteps: [50, 20]\n").expect("write");
        std::fs::write(dir.join("notes.txt"), "not a policy").expect("write");
        let answer = policy_files(&dir);
        let files = files_of(&answer).expect("files");
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
        let local_dir = temp_dir("local");
        std::fs::write(local_dir.join("a.yaml"), "function: a\nsteps: [10, 100]\n").expect("write");
        std::fs::write(local_dir.join("b.yaml"), "function: b\nsteps: [50, 20]\n").expect("write");
        std::fs::write(local_dir.join("c.yaml"), "function: c\n").expect("write");
        let local = files_of(&policy_files(&local_dir)).expect("local");
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
        assert!(err.to_string().contains("\"files\""), "{err}");
        let empty = temp_dir("empty");
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
