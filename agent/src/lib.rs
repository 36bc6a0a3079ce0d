//! lambda-canary: progressive delivery for AWS Lambda aliases.
//!
//! The core is pure: [`policy`] parses the team's files, [`judge`] compares canary and baseline
//! metrics, [`rollout`] decides what the alias should do next, [`notify`] words announcements.
//! [`tick`] runs one pass over all policies through the [`ports`].

pub mod aws;
pub mod cli;
pub mod clock;
pub mod judge;
pub mod notify;
pub mod outage;
pub mod policy;
pub mod ports;
pub mod record;
pub mod rollout;
pub mod sim;
pub mod text;
pub mod tick;

/// A fresh, empty directory under the system temp dir for one test (`name`, the process and
/// the thread make it unique).
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "canary-test-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
