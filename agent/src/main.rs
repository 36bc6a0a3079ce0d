//! `canary`: thin entry point. Parses arguments, runs the command, maps errors to exit codes
//! (0 ok, 2 bad usage or invalid policy, 1 anything else). With `CANARY_LAMBDA=1` (set by
//! template.yaml) it runs as the scheduled Lambda instead: one tick per invocation.

use canary_agent::cli::{self, Cli};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var("CANARY_LAMBDA").is_ok_and(|v| v == "1") {
        cli::logs::init(cli::logs::Mode::Lambda);
        // Built once per execution environment: warm invocations reuse the clients and what
        // the agent remembers between ticks.
        let ticker = match cli::LambdaTicker::from_env().await {
            Ok(t) => std::sync::Arc::new(t),
            Err(e) => {
                eprintln!("canary: {e}");
                return ExitCode::FAILURE;
            }
        };
        let handler = lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
                let ticker = std::sync::Arc::clone(&ticker);
                async move {
                    let now_ms = canary_agent::clock::now_millis();
                    let budget = cli::tick_budget(event.context.deadline, now_ms);
                    Box::pin(ticker.handle(&event.payload, budget))
                        .await
                        .map_err(|e| lambda_runtime::Error::from(e.to_string()))
                }
            },
        );
        return match lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("canary: lambda runtime failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    cli::logs::init(cli::logs::Mode::Command {
        verbose: cli.verbose,
    });
    match Box::pin(cli::run(cli)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canary: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
