//! The `canary` binary as a process: what a shell and a CI job see of it.

use std::process::{Command, Stdio};

const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");

#[test]
fn a_reader_that_goes_away_ends_the_command_with_141_and_no_panic() {
    // `canary policy check policies | head -0`, without the race: the reader is gone before
    // the command writes its first line.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["policy", "check", POLICIES])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("canary runs");
    let out = child.wait_with_output().expect("canary ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "quiet, as `cat` is: {stderr}");

    // The same command with its reader there prints and succeeds.
    let out = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["policy", "check", POLICIES])
        .output()
        .expect("canary runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("policies valid"));
}
