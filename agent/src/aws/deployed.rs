//! Asking the deployed agent what it runs: one synchronous `Invoke` of its function with
//! [`POLICIES_REQUEST`] (`canary policy show --deployed`).

use super::{default_endpoint, sdk_failure, service_code, timeouts};
use crate::ports::PortError;
use aws_config::SdkConfig;
use std::time::Duration;

/// The payload that asks the deployed agent for its policy files instead of a tick.
pub const POLICIES_REQUEST: &str = r#"{"canary":"policies"}"#;

/// How long [`ask_agent`] keeps asking while the agent's one reserved slot is busy with a tick
/// (a tick takes at most 50 s).
const BUSY_WAIT: Duration = Duration::from_secs(90);

/// A Lambda client from a loaded configuration, with the adapters' [`timeouts`].
#[must_use]
pub fn lambda_client(conf: &SdkConfig) -> aws_sdk_lambda::Client {
    let conf = conf
        .to_builder()
        .timeout_config(timeouts(conf.timeout_config()))
        .build();
    aws_sdk_lambda::Client::new(&conf)
}

/// Asks the deployed agent `agent` for its policy files (one synchronous invocation, asked
/// again every `pause` while the agent is busy with a tick) and returns its JSON answer.
///
/// # Errors
/// [`PortError::Failed`] naming the agent and what Lambda or the agent answered.
pub async fn ask_agent(
    client: &aws_sdk_lambda::Client,
    agent: &str,
    pause: Duration,
) -> Result<serde_json::Value, PortError> {
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
                if service_code(&e) == Some("TooManyRequestsException")
                    && started.elapsed() < BUSY_WAIT =>
            {
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                let endpoint = default_endpoint(client.config().region(), "lambda");
                return Err(PortError::Failed(format!(
                    "could not ask the agent {agent}: {}",
                    sdk_failure("Lambda", &endpoint, "Invoke", &e)
                )));
            }
        };
        let body = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if let Some(kind) = out.function_error() {
            return Err(PortError::Failed(format!(
                "the agent {agent} failed to answer ({kind}): {text}; is it a lambda-canary agent of this version?"
            )));
        }
        return serde_json::from_str(&text).map_err(|e| {
            PortError::Failed(format!(
                "the agent {agent} answered something that is not JSON ({e}): {text}"
            ))
        });
    }
}
