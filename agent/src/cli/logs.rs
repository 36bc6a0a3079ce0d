//! Where the agent's log lines go and how many there are: quiet on a terminal (the AWS SDK's own
//! warnings only with `-v`), colour only when stderr is a terminal, and in Lambda the level and
//! format the function's logging configuration sets (`AWS_LAMBDA_LOG_LEVEL`,
//! `AWS_LAMBDA_LOG_FORMAT`).

use std::io::IsTerminal;

/// Crates whose warnings a person at a terminal does not need: the SDK explains a missing region
/// or credentials in kilobytes before our one-line message says the same.
const SDK_TARGETS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_cloudwatch",
    "aws_sdk_lambda",
    "aws_sdk_sns",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "hyper",
    "hyper_util",
    "rustls",
];

/// Where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person's command: `verbose` is how many `-v` were given.
    Command {
        /// Count of `-v`.
        verbose: u8,
    },
    /// The scheduled Lambda.
    Lambda,
}

/// The `tracing` filter directives. `RUST_LOG` wins when set; in Lambda `AWS_LAMBDA_LOG_LEVEL`
/// (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) comes next, then `info`; at a terminal, warnings of
/// our own and errors of the SDK, `-v` adds our info and the SDK's warnings, `-vv` debug.
#[must_use]
pub fn filter(mode: Mode, rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    if let Some(r) = rust_log.filter(|r| !r.trim().is_empty()) {
        return r.to_string();
    }
    match mode {
        Mode::Lambda => lambda_level
            .map(|l| match l.trim().to_ascii_uppercase().as_str() {
                "TRACE" => "trace",
                "DEBUG" => "debug",
                "WARN" => "warn",
                "ERROR" | "FATAL" => "error",
                _ => "info",
            })
            .unwrap_or("info")
            .to_string(),
        Mode::Command { verbose } => {
            let (ours, sdk) = match verbose {
                0 => ("warn", "error"),
                1 => ("info", "warn"),
                _ => ("debug", "debug"),
            };
            std::iter::once(ours.to_string())
                .chain(SDK_TARGETS.iter().map(|t| format!("{t}={sdk}")))
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// Whether lines are JSON: in Lambda unless `AWS_LAMBDA_LOG_FORMAT` is `Text`; never at a
/// terminal.
#[must_use]
pub fn json(mode: Mode, lambda_format: Option<&str>) -> bool {
    mode == Mode::Lambda && !lambda_format.is_some_and(|f| f.trim().eq_ignore_ascii_case("text"))
}

/// Sets up the process's log lines on stderr.
pub fn init(mode: Mode) {
    let var = |k: &str| std::env::var(k).ok();
    let directives = filter(
        mode,
        var("RUST_LOG").as_deref(),
        var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
    );
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = mode != Mode::Lambda
        && std::io::stderr().is_terminal()
        && var("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    if json(mode, var("AWS_LAMBDA_LOG_FORMAT").as_deref()) {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time()
            .init();
    } else {
        builder.compact().init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_hears_the_sdk_only_with_v_and_rust_log_always_wins() {
        let quiet = filter(Mode::Command { verbose: 0 }, None, None);
        assert!(
            quiet.starts_with("warn,") && quiet.contains("aws_config=error"),
            "{quiet}"
        );
        let v = filter(Mode::Command { verbose: 1 }, None, None);
        assert!(
            v.starts_with("info,") && v.contains("aws_smithy_runtime=warn"),
            "{v}"
        );
        assert!(filter(Mode::Command { verbose: 2 }, None, None).starts_with("debug,"));
        assert_eq!(
            filter(Mode::Command { verbose: 0 }, Some("trace"), None),
            "trace"
        );
        // Every directive parses (an invalid one would silently fall back to "warn").
        for d in [quiet, v] {
            assert!(tracing_subscriber::EnvFilter::try_new(&d).is_ok(), "{d}");
        }
    }

    #[test]
    fn in_lambda_the_functions_logging_configuration_sets_level_and_format() {
        assert_eq!(filter(Mode::Lambda, None, None), "info");
        assert_eq!(filter(Mode::Lambda, None, Some("DEBUG")), "debug");
        assert_eq!(filter(Mode::Lambda, None, Some("FATAL")), "error");
        assert_eq!(filter(Mode::Lambda, None, Some("WARN")), "warn");
        assert_eq!(
            filter(Mode::Lambda, Some("canary_agent=trace"), Some("WARN")),
            "canary_agent=trace"
        );
        assert!(json(Mode::Lambda, None) && json(Mode::Lambda, Some("JSON")));
        assert!(!json(Mode::Lambda, Some("Text")));
        assert!(!json(Mode::Command { verbose: 0 }, None));
    }
}
