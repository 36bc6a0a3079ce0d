//! Test harness for the end-to-end tests: a `moto_server` (the AWS emulator from PyPI
//! `moto[server]`) on loopback, and SDK configuration that points at it.
//!
//! ```ignore
//! let moto = lambda_canary_tests::Moto::start();
//! let sdk = moto.sdk_config().await;
//! let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
//! ```

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often [`Moto::start`] checks whether the server is up.
const POLL: Duration = Duration::from_millis(50);
/// How long [`Moto::start`] waits for the server before giving up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How to install moto, for error messages.
const INSTALL_HINT: &str =
    "install it with `python3 -m venv .venv && .venv/bin/pip install 'moto[server]==5.2.5'` \
     in the workspace root, or set MOTO_SERVER to the moto_server executable";

/// A running `moto_server` on 127.0.0.1, killed (and waited for) on drop. Its output goes to
/// `target/<profile>/moto-logs/`, kept only for failing tests.
#[derive(Debug)]
pub struct Moto {
    /// Base URL of the server, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
}

/// Where `moto_server` is looked for: `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` if it
/// exists, else `moto_server` on `PATH`.
fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory for moto logs: next to the test binary under `target/`, else the temp dir.
fn log_dir() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        // target/<profile>/deps/<test-binary>
        exe.parent()
            .and_then(Path::parent)
            .map(|p| p.join("moto-logs"))
    });
    let dir = from_exe.unwrap_or_else(|| std::env::temp_dir().join("lambda-canary-moto-logs"));
    if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"))
        .port()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Moto {
    /// Starts `moto_server` on 127.0.0.1 on a free port and waits (polling every 50 ms, up to 30 s)
    /// until it accepts connections. Its output goes to a log file under `target/`.
    ///
    /// # Panics
    /// If `moto_server` cannot be found or started (the message names the path tried and how to
    /// install it), or if it exits or does not answer within 30 s.
    #[must_use]
    pub fn start() -> Moto {
        let program = moto_server_path();
        // A port picked by the OS may be taken again before moto binds it; retry a few times.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = log_dir().join(format!("moto-{}-{port}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("cannot create moto log {}: {e}", log.display()));
            let log_err = log_file
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot clone moto log handle: {e}"));
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "moto_server not found (tried {}): {INSTALL_HINT}",
                    program.display()
                ),
                Err(e) => panic!("cannot start moto_server ({}): {e}", program.display()),
            };
            let mut moto = Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
                log,
            };
            match moto.wait_ready(port) {
                Ok(()) => return moto,
                Err(why) => last_failure = why,
            }
        }
        panic!(
            "moto_server ({}) did not start: {last_failure}",
            program.display()
        );
    }

    /// Waits until the port accepts connections. On failure the child is killed on drop.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited with {status}; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            if TcpStream::connect_timeout(&addr, POLL).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "moto_server did not answer on {} within {}s; log {}:\n{}",
                    self.endpoint,
                    STARTUP_TIMEOUT.as_secs(),
                    self.log.display(),
                    tail(&self.log)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SDK configuration for this server: region `us-east-1`, static test credentials and
    /// `endpoint_url` = [`Moto::endpoint`]. The programmatic endpoint takes precedence over any
    /// `AWS_ENDPOINT_URL*` variable or profile setting, so clients built from it never reach AWS.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "moto-test",
            ))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// Path of this server's log file (under `target/`; removed on drop unless the test panics).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Moto {
    /// Kills and reaps the server. Its log is kept only if the test is failing (panicking).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
