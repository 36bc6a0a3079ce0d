//! The ports on the AWS SDK: aliases on Lambda, metrics on CloudWatch, notifications on SNS
//! (and their ledger on DynamoDB).
//!
//! ```text
//! sdk_config(region, profile).await?  standard configuration chain (AWS_REGION, profiles, AWS_ENDPOINT_URL)
//! AwsPorts::from_conf(&conf)          the three adapters from a loaded SdkConfig
//! DynamoLedger::new(&conf, table)     the notifier's ledger of pages (SnsNotifier::with_ledger)
//! LambdaAliases::new(client)          one adapter from its SDK client (tests inject mock clients)
//! ```
//!
//! Every SDK call keeps the SDK's default retry configuration (standard mode, 3 attempts), so a
//! throttled or flaky call is retried a bounded number of times and then reported as a
//! [`PortError`] that reads like a tool's message ("throttled by Lambda after retries", "could not
//! reach CloudWatch at http://127.0.0.1:5000: ...", "no AWS credentials: ..."). Every call is
//! also bounded in time ([`timeouts`]): an endpoint that accepts the connection and never
//! answers costs at most [`OPERATION_TIMEOUT`], never a hang.

mod aliases;
pub mod deployed;
mod history;
mod ledger;
mod metrics;
mod notifier;
#[cfg(test)]
mod tests;

pub use aliases::{LambdaAliases, Pace};
pub use ledger::DynamoLedger;
pub use metrics::CloudWatchMetrics;
pub use notifier::SnsNotifier;

use crate::ports::PortError;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Time to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time to wait for the first byte of an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for one attempt of a call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a call with all its retries: below a tick's budget, so one slow call never takes a
/// whole tick.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(25);

/// The timeouts every agent client uses; values the loaded configuration sets win.
#[must_use]
pub fn timeouts(configured: Option<&TimeoutConfig>) -> TimeoutConfig {
    let ours = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT);
    match configured {
        Some(c) => c.to_builder().take_unset_from(ours).build(),
        None => ours.build(),
    }
}
use aws_sdk_lambda::error::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The three ports on real AWS clients, built once and shared by every tick.
#[derive(Debug, Clone)]
pub struct AwsPorts {
    /// Production and candidate aliases (Lambda).
    pub aliases: LambdaAliases,
    /// Per-version metrics (CloudWatch `GetMetricData`).
    pub metrics: CloudWatchMetrics,
    /// On-call notifications (SNS).
    pub notifier: SnsNotifier,
}

impl AwsPorts {
    /// Builds the three adapters from a loaded configuration (region, credentials, endpoint),
    /// with [`timeouts`] on every call.
    #[must_use]
    pub fn from_conf(conf: &SdkConfig) -> Self {
        let conf = &conf
            .to_builder()
            .timeout_config(timeouts(conf.timeout_config()))
            .build();
        Self {
            aliases: LambdaAliases::new(aws_sdk_lambda::Client::new(conf))
                .with_endpoint(endpoint_label(conf, "lambda")),
            metrics: CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(conf))
                .with_endpoint(endpoint_label(conf, "monitoring")),
            notifier: SnsNotifier::new(aws_sdk_sns::Client::new(conf))
                .with_endpoint(endpoint_label(conf, "sns")),
        }
    }
}

/// Loads the standard AWS configuration chain (environment, profiles, `AWS_ENDPOINT_URL`,
/// container and instance credentials), with the command line's `--region` and `--profile`
/// (when given) taking precedence over the environment's.
///
/// # Errors
/// [`PortError::Failed`] when no region is configured. Missing credentials are only noticed
/// at the first call (the chain resolves them lazily), as
/// "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".
pub async fn sdk_config(
    region: Option<&str>,
    profile: Option<&str>,
) -> Result<SdkConfig, PortError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    let conf = loader.load().await;
    if conf.region().is_none() {
        return Err(PortError::Failed(
            "no AWS region: pass --region, or set AWS_REGION or a profile region".to_string(),
        ));
    }
    Ok(conf)
}

/// Where a service's calls go, for "could not reach" messages: the endpoint override when one is
/// configured, else the service's regional endpoint.
fn endpoint_label(conf: &SdkConfig, prefix: &str) -> String {
    match (conf.endpoint_url(), conf.region()) {
        (Some(url), _) => url.to_string(),
        (None, Some(region)) => format!("https://{prefix}.{region}.amazonaws.com"),
        (None, None) => format!("the {prefix} endpoint (no region configured)"),
    }
}

/// The regional endpoint of a client built without an endpoint label.
fn default_endpoint(region: Option<&aws_config::Region>, prefix: &str) -> String {
    match region {
        Some(region) => format!("https://{prefix}.{region}.amazonaws.com"),
        None => format!("the {prefix} endpoint (no region configured)"),
    }
}

/// Error codes AWS services use for throttling (the SDK retries these before giving up).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

/// Error codes for credentials AWS rejected (as opposed to no credentials at all).
const REJECTED_CREDENTIALS_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
];

/// Whether a service error is throttling.
fn is_throttling(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

/// The HTTP response type every SDK client of this module shares.
type HttpResponse = aws_sdk_lambda::config::http::HttpResponse;

/// Describes an SDK failure the way a command-line tool would.
///
/// `service` is the name a person knows ("Lambda"), `endpoint` where the calls go, `operation`
/// the API call ("GetAlias"). Not-found and precondition failures are mapped by the callers,
/// which know what was not found; everything here is [`PortError::Failed`]. The full error
/// (with the SDK's debug details) goes to the debug log.
fn sdk_failure<E>(
    service: &str,
    endpoint: &str,
    operation: &str,
    err: &SdkError<E, HttpResponse>,
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::debug!(service, operation, "{}", DisplayErrorContext(err));
    let context = chain(err);
    let message = match err {
        SdkError::ServiceError(service_err) => {
            let e = service_err.err();
            let code = e.code();
            let detail = match (code, e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, _) => format!("HTTP {}: {}", service_err.raw().status().as_u16(), chain(e)),
            };
            if is_throttling(code) {
                format!("throttled by {service} after retries ({operation}: {detail})")
            } else if code.is_some_and(|c| REJECTED_CREDENTIALS_CODES.contains(&c)) {
                format!(
                    "{service} rejected the AWS credentials ({detail}); check AWS_PROFILE or \
                     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                )
            } else {
                format!("{service} {operation} failed: {detail}")
            }
        }
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
            if mentions_credentials(&context) =>
        {
            format!(
                "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
                 ({context})"
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("could not reach {service} at {endpoint}: {context}")
        }
        SdkError::ResponseError(_) => {
            format!("{service} {operation} returned an answer the agent cannot read: {context}")
        }
        _ => format!("{service} {operation} failed: {context}"),
    };
    PortError::Failed(message)
}

/// An error and its sources, `outer: inner: innermost` (DisplayErrorContext without the debug
/// dump).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        // Some layers repeat their source's text; say it once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Whether an SDK error chain is about missing credentials (identity resolution failed).
fn mentions_credentials(context: &str) -> bool {
    let lower = context.to_ascii_lowercase();
    lower.contains("credentials") || lower.contains("no valid identity")
}

/// The error code of a service error, if the call got that far.
fn service_code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}
