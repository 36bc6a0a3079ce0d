//! The adapters against mocked SDK responses (aws-smithy-mocks): request shapes, answer parsing,
//! throttling after bounded retries, precondition failures, partial CloudWatch failures.

use super::*;
use crate::judge::{ColdStarts, Sample};
use crate::policy::{LatencyStat, MetricsSource, Policy};
use crate::ports::{Aliases, Metrics, MetricsQuery, Notification, Notifier, Series};
use crate::rollout::{AliasState, Record, Routing};
use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataInput, GetMetricDataOutput};
use aws_sdk_cloudwatch::types::{MetricDataResult, MetricStat, ScanBy, StatusCode};
use aws_sdk_lambda::operation::get_function_configuration::{
    GetFunctionConfigurationError, GetFunctionConfigurationOutput,
};
use aws_sdk_lambda::operation::list_aliases::{ListAliasesError, ListAliasesOutput};
use aws_sdk_lambda::operation::update_alias::{UpdateAliasError, UpdateAliasOutput};
use aws_sdk_lambda::types::error::{PreconditionFailedException, ResourceNotFoundException};
use aws_sdk_lambda::types::{AliasConfiguration, AliasRoutingConfiguration};
use aws_sdk_sns::operation::publish::{PublishError, PublishOutput};
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::DateTime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SDK's default retry behaviour (standard, 3 attempts) with millisecond backoff.
fn fast_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(2))
}

/// A client of `$sdk` answering from `$rules` (aws-smithy-mocks' `mock_client!` needs the SDK's
/// `test-util` feature; this is the same thing with explicit test credentials and region).
macro_rules! mock_client {
    ($sdk:ident, $mode:expr, $rules:expr) => {{
        let mut interceptor = MockResponseInterceptor::new().rule_mode($mode);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .credentials_provider($sdk::config::Credentials::new(
                    "AKIDTEST", "secret", None, None, "test",
                ))
                .http_client(create_mock_http_client())
                .interceptor(interceptor)
                .retry_config(fast_retries())
                .build(),
        )
    }};
}

fn lambda(rules: &[&Rule]) -> LambdaAliases {
    LambdaAliases::new(mock_client!(aws_sdk_lambda, RuleMode::MatchAny, rules))
}

fn cloudwatch(rules: &[&Rule]) -> CloudWatchMetrics {
    CloudWatchMetrics::new(mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, rules))
}

/// A canary of v7 over v6 starting at `T0` on p50, with `slow_ms` set (so no p99 is read): the
/// wander tests' query.
fn wander_query() -> MetricsQuery {
    MetricsQuery {
        canary_start: Some(T0),
        slow_ms: Some(400.0),
        ..lambda_query(6, 7, LatencyStat::P50)
    }
}

/// The series `rule` answers for one query.
async fn fetch_one(rule: &Rule, query: MetricsQuery) -> Series {
    cloudwatch(&[rule]).fetch(&[query]).await[0]
        .clone()
        .expect("answered")
}

fn sns(rules: &[&Rule]) -> SnsNotifier {
    SnsNotifier::new(mock_client!(aws_sdk_sns, RuleMode::MatchAny, rules))
}

fn policy() -> Policy {
    Policy::with_defaults("notes-create")
}

// ---------------------------------------------------------------------------------------------
// Lambda aliases

fn alias(
    version: &str,
    weights: &[(&str, f64)],
    description: &str,
    revision: &str,
) -> AliasConfiguration {
    let mut out = AliasConfiguration::builder()
        .name("live")
        .function_version(version)
        .description(description)
        .revision_id(revision);
    if !weights.is_empty() {
        out = out.routing_config(
            AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(
                    weights
                        .iter()
                        .map(|(v, w)| ((*v).to_string(), *w))
                        .collect(),
                ))
                .build(),
        );
    }
    out.build()
}

/// `alias` renamed (the builder above names every alias `live`).
fn named(name: &str, mut a: AliasConfiguration) -> AliasConfiguration {
    a.name = Some(name.to_string());
    a
}

/// `ListAliases` of notes-create answering these aliases.
fn list_rule(aliases: Vec<AliasConfiguration>) -> Rule {
    mock!(aws_sdk_lambda::Client::list_aliases)
        .match_requests(|r| r.function_name() == Some("notes-create"))
        .then_output(move || {
            ListAliasesOutput::builder()
                .set_aliases(Some(aliases.clone()))
                .build()
        })
}

/// `ListAliases` of a function that does not exist.
fn function_not_found() -> Rule {
    mock!(aws_sdk_lambda::Client::list_aliases).then_error(|| {
        ListAliasesError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Function not found")
                .meta(
                    ErrorMetadata::builder()
                        .code("ResourceNotFoundException")
                        .build(),
                )
                .build(),
        )
    })
}

fn record() -> Record {
    Record {
        canary: Some(7),
        step: 0,
        since: 1_763_900_000,
        started: 1_763_900_000,
        last: Some("started v7 at 10%".into()),
        ..Record::default()
    }
}

#[tokio::test]
async fn read_parses_stable_routing_record_and_revision() {
    let both = list_rule(vec![
        alias("6", &[("7", 0.1)], &record().encode(), "rev-1"),
        named("candidate", alias("7", &[], "", "rev-c")),
    ]);
    let snap = lambda(&[&both]).read(&policy()).await.expect("reads");
    assert_eq!(snap.revision, "rev-1");
    assert_eq!(snap.state.stable, 6);
    // 0.1 * 100 is 10.000000000000002 in f64: rounded to a clean percent.
    assert_eq!(
        snap.state.canary,
        Some(Routing {
            version: 7,
            weight: 10.0
        })
    );
    assert_eq!(snap.state.candidate, Some(7));
    assert_eq!(snap.state.record, record());
    assert_eq!(both.num_calls(), 1, "one ListAliases reads both aliases");
}

#[tokio::test]
async fn read_without_routing_or_record_or_candidate() {
    let live = list_rule(vec![alias("3", &[], "Production alias", "rev-9")]);
    let snap = lambda(&[&live]).read(&policy()).await.expect("reads");
    assert_eq!(snap.state.stable, 3);
    assert_eq!(snap.state.canary, None);
    assert_eq!(
        snap.state.candidate, None,
        "a missing candidate alias is no candidate"
    );
    assert_eq!(
        snap.state.record,
        Record::default(),
        "someone else's description"
    );
    // An empty routing map is no canary either.
    let with_empty_map = list_rule(vec![AliasConfiguration::builder()
        .name("live")
        .function_version("3")
        .routing_config(
            AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(HashMap::new()))
                .build(),
        )
        .revision_id("r")
        .build()]);
    let snap = lambda(&[&with_empty_map])
        .read(&policy())
        .await
        .expect("reads");
    assert_eq!(snap.state.canary, None);
}

#[tokio::test]
async fn a_function_with_many_aliases_is_read_page_by_page() {
    let pages = mock!(aws_sdk_lambda::Client::list_aliases)
        .sequence()
        .output(|| {
            ListAliasesOutput::builder()
                .aliases(named("blue", alias("1", &[], "", "b")))
                .next_marker("page-2")
                .build()
        })
        .output(|| {
            ListAliasesOutput::builder()
                .aliases(alias("5", &[], "", "rev-5"))
                .aliases(named("candidate", alias("6", &[], "", "c")))
                .build()
        })
        .build();
    let snap = lambda(&[&pages]).read(&policy()).await.expect("reads");
    assert_eq!((snap.state.stable, snap.state.candidate), (5, Some(6)));
    assert_eq!(snap.revision, "rev-5");
    assert_eq!(pages.num_calls(), 2);
}

#[tokio::test]
async fn latest_and_several_routed_versions_are_unsupported() {
    let latest = list_rule(vec![alias("$LATEST", &[], "", "r")]);
    let err = lambda(&[&latest])
        .read(&policy())
        .await
        .expect_err("$LATEST");
    assert!(
        matches!(&err, PortError::Unsupported(m) if m.contains("$LATEST") && m.contains("publish")),
        "{err:?}"
    );

    let two = list_rule(vec![alias("6", &[("7", 0.1), ("8", 0.2)], "", "r")]);
    let err = lambda(&[&two])
        .read(&policy())
        .await
        .expect_err("two routed versions");
    assert!(
        matches!(&err, PortError::Unsupported(m) if m.contains("2 extra versions (7, 8)")),
        "{err:?}"
    );
}

#[tokio::test]
async fn read_without_revision_fails() {
    let live = list_rule(vec![AliasConfiguration::builder()
        .name("live")
        .function_version("1")
        .build()]);
    let err = lambda(&[&live])
        .read(&policy())
        .await
        .expect_err("no revision");
    assert!(
        matches!(&err, PortError::Failed(m) if m.contains("RevisionId")),
        "{err:?}"
    );
}

fn function_configuration(exists: bool) -> Rule {
    let rule = mock!(aws_sdk_lambda::Client::get_function_configuration)
        .match_requests(|r| r.function_name() == Some("notes-create"));
    if exists {
        rule.then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .version("$LATEST")
                .build()
        })
    } else {
        rule.then_error(|| {
            GetFunctionConfigurationError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Function not found")
                    .build(),
            )
        })
    }
}

#[tokio::test]
async fn missing_alias_and_missing_function_are_named() {
    let only_candidate = list_rule(vec![named("candidate", alias("2", &[], "", "r"))]);
    let err = lambda(&[&only_candidate])
        .read(&policy())
        .await
        .expect_err("no alias");
    assert_eq!(
        err,
        PortError::NotFound("notes-create has no alias live".into())
    );

    let err = lambda(&[&function_not_found()])
        .read(&policy())
        .await
        .expect_err("no function");
    assert_eq!(err, PortError::NotFound("no function notes-create".into()));
}

#[tokio::test]
async fn version_exists_asks_for_the_qualified_version() {
    let rule = mock!(aws_sdk_lambda::Client::get_function_configuration)
        .match_requests(|r| r.qualifier() == Some("7"))
        .then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .version("7")
                .build()
        });
    let aliases = lambda(&[&rule, &function_configuration(false)]);
    assert_eq!(aliases.version_exists(&policy(), 7).await, Ok(true));
    assert_eq!(aliases.version_exists(&policy(), 8).await, Ok(false));
}

/// An `UpdateAlias` rule that records every request and answers with `rev-2`.
fn recording_update() -> (
    Rule,
    Arc<Mutex<Vec<aws_sdk_lambda::operation::update_alias::UpdateAliasInput>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let rule = mock!(aws_sdk_lambda::Client::update_alias).then_compute_output(move |input| {
        sink.lock().expect("lock").push(input.clone());
        UpdateAliasOutput::builder().revision_id("rev-2").build()
    });
    (rule, seen)
}

#[tokio::test]
async fn write_sends_one_conditional_update_with_routing_and_record() {
    let (rule, seen) = recording_update();
    let next = AliasState {
        stable: 6,
        canary: Some(Routing {
            version: 7,
            weight: 25.0,
        }),
        candidate: Some(7),
        record: Record {
            step: 1,
            ..record()
        },
    };
    let revision = lambda(&[&rule])
        .write(&policy(), &next, "rev-1")
        .await
        .expect("writes");
    assert_eq!(revision, "rev-2");
    assert_eq!(rule.num_calls(), 1, "one UpdateAlias");
    let seen = seen.lock().expect("lock");
    let input = &seen[0];
    assert_eq!(input.function_name(), Some("notes-create"));
    assert_eq!(input.name(), Some("live"));
    assert_eq!(input.function_version(), Some("6"));
    assert_eq!(input.revision_id(), Some("rev-1"));
    assert_eq!(input.description(), Some(next.record.encode().as_str()));
    let weights = input
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
        .expect("routing sent");
    assert_eq!(weights, &HashMap::from([("7".to_string(), 0.25)]));
}

#[tokio::test]
async fn write_without_canary_clears_the_routing_with_an_empty_map() {
    let (rule, seen) = recording_update();
    let next = AliasState {
        stable: 7,
        canary: None,
        candidate: Some(7),
        record: Record::default(),
    };
    lambda(&[&rule])
        .write(&policy(), &next, "rev-1")
        .await
        .expect("writes");
    let seen = seen.lock().expect("lock");
    let weights = seen[0]
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
        .expect("an explicit map, not an absent field");
    assert!(weights.is_empty());
    assert_eq!(seen[0].function_version(), Some("7"));
}

#[tokio::test]
async fn a_revision_mismatch_is_a_conflict() {
    let rule = mock!(aws_sdk_lambda::Client::update_alias).then_error(|| {
        UpdateAliasError::PreconditionFailedException(
            PreconditionFailedException::builder()
                .message("The Revision Id provided does not match the latest Revision Id.")
                .build(),
        )
    });
    let next = AliasState {
        stable: 1,
        canary: None,
        candidate: None,
        record: Record::default(),
    };
    let err = lambda(&[&rule])
        .write(&policy(), &next, "stale")
        .await
        .expect_err("conflict");
    assert_eq!(err, PortError::Conflict);
    assert_eq!(rule.num_calls(), 1, "a conflict is not retried");
}

/// A restJson1 error as Lambda sends it (the SDK reads the code from `__type`).
fn lambda_error_body(code: &str) -> String {
    format!(r#"{{"__type":"{code}","message":"Rate exceeded"}}"#)
}

#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times_then_reported() {
    for (status, code) in [
        (429, "TooManyRequestsException"),
        (400, "ThrottlingException"),
    ] {
        let rule = mock!(aws_sdk_lambda::Client::list_aliases)
            .sequence()
            .http_status(status, Some(lambda_error_body(code)))
            .repeatedly()
            .build();
        let err = lambda(&[&rule])
            .read(&policy())
            .await
            .expect_err("throttled");
        assert!(
            matches!(&err, PortError::Failed(m) if m.starts_with("throttled by Lambda after retries") && m.contains(code)),
            "{err:?}"
        );
        assert_eq!(
            rule.num_calls(),
            3,
            "standard retry mode: 3 attempts, then give up"
        );
    }
}

#[tokio::test]
async fn throttling_that_clears_up_within_the_retries_succeeds() {
    let rule = mock!(aws_sdk_lambda::Client::list_aliases)
        .sequence()
        .http_status(429, Some(lambda_error_body("TooManyRequestsException")))
        .times(2)
        .output(|| {
            ListAliasesOutput::builder()
                .aliases(alias("4", &[], "", "r"))
                .build()
        })
        .build();
    let snap = lambda(&[&rule])
        .read(&policy())
        .await
        .expect("third attempt succeeds");
    assert_eq!(snap.state.stable, 4);
    assert_eq!(rule.num_calls(), 3);
}

// ---------------------------------------------------------------------------------------------
// Error wording

#[test]
fn sdk_errors_read_like_a_tool() {
    use aws_smithy_types::body::SdkBody;
    type Raw = aws_sdk_lambda::config::http::HttpResponse;

    let throttled: SdkError<ListAliasesError, Raw> = SdkError::service_error(
        ListAliasesError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("slow down")
                .build(),
        ),
        Raw::new(400.try_into().expect("status"), SdkBody::empty()),
    );
    let m = sdk_failure("CloudWatch", "https://x", "GetMetricData", &throttled).to_string();
    assert_eq!(
        m,
        "throttled by CloudWatch after retries (GetMetricData: Throttling: slow down)"
    );

    let denied: SdkError<ListAliasesError, Raw> = SdkError::service_error(
        ListAliasesError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: lambda:ListAliases")
                .build(),
        ),
        Raw::new(403.try_into().expect("status"), SdkBody::empty()),
    );
    let m = sdk_failure("Lambda", "https://x", "ListAliases", &denied).to_string();
    assert_eq!(
        m,
        "Lambda ListAliases failed: AccessDeniedException: not authorized to perform: lambda:ListAliases"
    );

    let refused: SdkError<ListAliasesError, Raw> =
        SdkError::dispatch_failure(aws_smithy_runtime_api_shim::connector_error());
    let m = sdk_failure("Lambda", "http://127.0.0.1:9", "ListAliases", &refused).to_string();
    assert!(
        m.starts_with("could not reach Lambda at http://127.0.0.1:9: "),
        "{m}"
    );
    assert!(m.contains("Connection refused"), "{m}");
}

/// Building a `ConnectorError` without depending on aws-smithy-runtime-api directly.
mod aws_smithy_runtime_api_shim {
    use aws_sdk_lambda::error::ConnectorError;

    pub(super) fn connector_error() -> ConnectorError {
        ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error: Connection refused (os error 111)",
        )))
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    let client = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            // Port 9 (discard) on loopback: nothing listens, the connection is refused.
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(fast_retries())
            .build(),
    );
    let err = LambdaAliases::new(client)
        .with_endpoint("http://127.0.0.1:9")
        .read(&policy())
        .await
        .expect_err("unreachable");
    assert!(
        matches!(&err, PortError::Failed(m) if m.starts_with("could not reach Lambda at http://127.0.0.1:9: ")),
        "{err:?}"
    );
}

/// A credentials chain that finds nothing, like the default chain on a machine without any.
// aws-config's profile-file aliases are deprecated in favour of aws-runtime types this crate
// does not depend on.
#[allow(deprecated)]
fn no_credentials() -> aws_config::meta::credentials::CredentialsProviderChain {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    let empty_profiles = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_files(
            ProfileFiles::builder()
                .with_contents(ProfileFileKind::Credentials, "")
                .build(),
        )
        .profile_name("default")
        .build();
    aws_config::meta::credentials::CredentialsProviderChain::first_try("Profile", empty_profiles)
}

#[tokio::test]
async fn missing_credentials_say_how_to_set_them() {
    let client = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(no_credentials())
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(fast_retries())
            .build(),
    );
    let err = LambdaAliases::new(client)
        .read(&policy())
        .await
        .expect_err("no credentials");
    assert!(
        matches!(&err, PortError::Failed(m) if m.starts_with("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// CloudWatch metrics

const T0: i64 = 1_763_900_040;

fn lambda_query(stable: u64, canary: u64, stat: LatencyStat) -> MetricsQuery {
    MetricsQuery {
        function: "notes-create".into(),
        alias: "live".into(),
        stable,
        canary,
        source: MetricsSource::LAMBDA,
        stat,
        slow_ms: None,
        limits: Policy::with_defaults("notes-create").latency,
        canary_start: None,
        from: T0,
        to: T0 + 600,
    }
}

fn emf_query() -> MetricsQuery {
    MetricsQuery {
        source: MetricsSource::Emf {
            namespace: "NotesApi".into(),
            period: Duration::from_secs(10),
        },
        ..lambda_query(1, 2, LatencyStat::P99)
    }
}

fn result(id: &str, points: &[(i64, f64)], status: StatusCode) -> MetricDataResult {
    MetricDataResult::builder()
        .id(id)
        .set_timestamps(Some(
            points
                .iter()
                .map(|(t, _)| DateTime::from_secs(*t))
                .collect(),
        ))
        .set_values(Some(points.iter().map(|(_, v)| *v).collect()))
        .status_code(status)
        .build()
}

/// A `GetMetricData` answer with `points` for the listed ids, complete and empty for the others.
fn answer(
    input: &GetMetricDataInput,
    data: &HashMap<&str, Vec<(i64, f64)>>,
) -> GetMetricDataOutput {
    GetMetricDataOutput::builder()
        .set_metric_data_results(Some(
            input
                .metric_data_queries()
                .iter()
                .map(|q| {
                    let id = q.id().unwrap_or_default();
                    result(
                        id,
                        data.get(id).map_or(&[][..], Vec::as_slice),
                        StatusCode::Complete,
                    )
                })
                .collect(),
        ))
        .build()
}

/// A `GetMetricData` rule that answers `data` (see [`answer`]) to every call and records each
/// call's input.
fn recording(
    data: HashMap<&'static str, Vec<(i64, f64)>>,
) -> (Rule, Arc<Mutex<Vec<GetMetricDataInput>>>) {
    recording_by(move |_| data.clone())
}

/// A `GetMetricData` rule that answers each call with the data `data_for` gives its input, and
/// records each call's input.
fn recording_by(
    data_for: impl Fn(&GetMetricDataInput) -> HashMap<&'static str, Vec<(i64, f64)>>
        + Send
        + Sync
        + 'static,
) -> (Rule, Arc<Mutex<Vec<GetMetricDataInput>>>) {
    let seen: Arc<Mutex<Vec<GetMetricDataInput>>> = Arc::default();
    let sink = seen.clone();
    let rule =
        mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |input| {
            sink.lock().expect("lock").push(input.clone());
            answer(input, &data_for(input))
        });
    (rule, seen)
}

/// The metric and statistic of a `GetMetricData` call's first query.
fn first_stat(input: &GetMetricDataInput) -> &MetricStat {
    input.metric_data_queries()[0]
        .metric_stat()
        .expect("metric stat")
}

/// A metric's name, statistic and period.
type NameStatPeriod<'a> = (Option<&'a str>, Option<&'a str>, Option<i32>);

/// A metric stat's metric name, statistic and period.
fn name_stat_period(m: &MetricStat) -> NameStatPeriod<'_> {
    (
        m.metric().and_then(|m| m.metric_name()),
        m.stat(),
        m.period(),
    )
}

/// The cold-start queries of a call (ids ending `_cn`, `_cp`): id, metric name, statistic and
/// period, in the call's order.
fn cold_queries(input: &GetMetricDataInput) -> Vec<(&str, NameStatPeriod<'_>)> {
    input
        .metric_data_queries()
        .iter()
        .filter(|q| {
            q.id()
                .is_some_and(|id| id.ends_with("_cn") || id.ends_with("_cp"))
        })
        .filter_map(|q| Some((q.id()?, name_stat_period(q.metric_stat()?))))
        .collect()
}

/// The dimensions (name, value) of a `GetMetricData` call's first metric query.
fn first_dimensions(input: &GetMetricDataInput) -> Vec<(&str, &str)> {
    first_stat(input)
        .metric()
        .map(|m| m.dimensions())
        .unwrap_or_default()
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect()
}

fn sample(start: i64, requests: f64, errors: f64, latency_ms: Option<f64>) -> Sample {
    Sample {
        start,
        requests,
        errors,
        latency_ms,
        slow: None,
    }
}

#[tokio::test]
async fn the_tail_test_reads_the_percentile_rank_and_counts_requests_over_the_threshold() {
    let (rule, seen) = recording(HashMap::from([
        ("q0_c_req", vec![(T0, 200.0), (T0 + 10, 100.0)]),
        ("q0_c_lat", vec![(T0, 80.0), (T0 + 10, 82.0)]),
        // 97% of the canary's requests at or under 400 ms: 6 of 200 over it.
        ("q0_c_pr", vec![(T0, 97.0)]),
        ("q0_b_req", vec![(T0, 1800.0)]),
        ("q0_b_pr", vec![(T0, 99.5)]),
    ]));
    let query = MetricsQuery {
        slow_ms: Some(400.0),
        ..emf_query()
    };
    let series = fetch_one(&rule, query).await;
    let slow: Vec<Option<f64>> = series.canary.iter().map(|s| s.slow).collect();
    // No rank published for the second period: no tail evidence from it, never zero.
    assert_eq!(slow, [Some(6.0), None]);
    assert_eq!(series.baseline[0].slow, Some(9.0));
    let seen = seen.lock().expect("lock");
    let ranks: Vec<_> = seen[0]
        .metric_data_queries()
        .iter()
        .filter(|q| q.id().is_some_and(|id| id.ends_with("_pr")))
        .map(|q| {
            let m = q.metric_stat().expect("metric stat");
            (q.id().unwrap_or_default(), name_stat_period(m))
        })
        .collect();
    assert_eq!(
        ranks,
        [
            ("q0_c_pr", (Some("Latency"), Some("PR(:400)"), Some(10))),
            ("q0_b_pr", (Some("Latency"), Some("PR(:400)"), Some(10))),
        ]
    );
}

#[tokio::test]
async fn with_no_slow_ms_the_tail_threshold_is_the_stable_versions_p99_in_the_hour_before() {
    let (rule, seen) = recording(HashMap::from([
        ("h0", vec![(T0 - 3600, 263.5)]),
        ("h0n", vec![(T0 - 3600, 36_000.0)]),
        ("h0k", vec![(T0 - 3600, 36.0)]),
        ("q0_c_req", vec![(T0, 100.0)]),
        ("q0_c_pr", vec![(T0, 96.0)]),
        ("q0_b_req", vec![(T0, 900.0)]),
        ("q0_b_pr", vec![(T0, 99.0)]),
    ]));
    let query = MetricsQuery {
        canary_start: Some(T0 + 25),
        ..lambda_query(6, 7, LatencyStat::P99)
    };
    let series = fetch_one(&rule, query).await;
    assert_eq!(series.slow_ms, Some(263.5));
    // Its usual 5xx rate: 36 of 36,000.
    assert_eq!(series.stable_error_rate, Some(0.001));
    assert_eq!(series.canary[0].slow, Some(4.0));
    assert_eq!(series.baseline[0].slow, Some(9.0));
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        5,
        "the history first (the hour's p99, its 5xx rate, wander, over all versions: too few minutes), then the window"
    );
    let history = &seen[0];
    assert_eq!(history.start_time(), Some(&DateTime::from_secs(T0 - 3600)));
    assert_eq!(history.end_time(), Some(&DateTime::from_secs(T0)));
    let h = first_stat(history);
    assert_eq!((h.stat(), h.period()), (Some("p99"), Some(3600)));
    let dims = first_dimensions(history);
    assert!(dims.contains(&("ExecutedVersion", "6")), "{dims:?}");
    // The counts in a call of their own: a p99 the endpoint cannot compute must not take them
    // down with it.
    let rate = &seen[1];
    assert_eq!(rate.start_time(), Some(&DateTime::from_secs(T0 - 3600)));
    let hour: Vec<_> = rate
        .metric_data_queries()
        .iter()
        .map(|q| {
            let m = q.metric_stat().expect("metric stat");
            let dims: Vec<_> = m
                .metric()
                .map(|m| m.dimensions().iter().filter_map(|d| d.value()).collect())
                .unwrap_or_default();
            (q.id().unwrap_or_default(), name_stat_period(m), dims)
        })
        .collect();
    let stable = vec!["notes-create", "notes-create:live", "6"];
    assert_eq!(
        hour,
        [
            (
                "h0n",
                (Some("Invocations"), Some("Sum"), Some(3600)),
                stable.clone()
            ),
            ("h0k", (Some("Errors"), Some("Sum"), Some(3600)), stable),
        ]
    );
    let stats: Vec<Option<&str>> = seen[4]
        .metric_data_queries()
        .iter()
        .filter(|q| q.id().is_some_and(|id| id.ends_with("_pr")))
        .map(|q| q.metric_stat().and_then(|m| m.stat()))
        .collect();
    assert_eq!(stats, [Some("PR(:263.5)"), Some("PR(:263.5)")]);
}

#[tokio::test]
async fn the_stable_versions_wander_is_fitted_on_its_minutes_over_six_hours_before() {
    // Six hours of the stable version's p50 per minute, its level stepping every 5 minutes.
    let minutes: Vec<(i64, f64)> = (0..360)
        .map(|m| {
            (
                T0 - 21_600 + m * 60,
                if (m / 5) % 2 == 0 { 100.0 } else { 120.0 },
            )
        })
        .collect();
    let points = minutes.clone();
    let (rule, seen) = recording_by(move |input| {
        let per_minute = first_stat(input).period() == Some(60);
        let h0 = if per_minute {
            points.clone()
        } else {
            vec![(T0 - 3600, 263.5)]
        };
        HashMap::from([("h0", h0)])
    });
    let series = fetch_one(&rule, wander_query()).await;
    let expected = crate::judge::wander(&minutes, 60).expect("enough points");
    assert!(expected > 0.0);
    assert_eq!(series.latency_wander, Some(expected));
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        3,
        "the hour's 5xx rate (slow_ms is set: no p99), the wander, then the window"
    );
    let wander = &seen[1];
    assert_eq!(wander.start_time(), Some(&DateTime::from_secs(T0 - 21_600)));
    assert_eq!(wander.end_time(), Some(&DateTime::from_secs(T0)));
    assert_eq!(
        name_stat_period(first_stat(wander)),
        (Some("Duration"), Some("p50"), Some(60))
    );
}

#[tokio::test]
async fn a_stable_version_with_too_few_minutes_takes_the_wander_of_every_version_behind_the_alias()
{
    // The stable version was promoted 20 minutes before the canary; the alias served for six hours.
    let own: Vec<(i64, f64)> = (340..360).map(|m| (T0 - 21_600 + m * 60, 100.0)).collect();
    let alias: Vec<(i64, f64)> = (0..360)
        .map(|m| {
            (
                T0 - 21_600 + m * 60,
                if (m / 7) % 2 == 0 { 100.0 } else { 130.0 },
            )
        })
        .collect();
    let (own_points, alias_points) = (own.clone(), alias.clone());
    let (rule, seen) = recording_by(move |input| {
        let versioned = first_dimensions(input)
            .iter()
            .any(|&(name, _)| name == "ExecutedVersion");
        let h0 = if versioned {
            own_points.clone()
        } else {
            alias_points.clone()
        };
        HashMap::from([("h0", h0)])
    });
    let series = fetch_one(&rule, wander_query()).await;
    assert_eq!(
        crate::judge::wander(&own, 60),
        None,
        "20 minutes are too few"
    );
    let expected = crate::judge::wander(&alias, 60).expect("enough points");
    assert_eq!(series.latency_wander, Some(expected));
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        4,
        "the hour's 5xx rate, the stable version's wander, every version's, the window"
    );
    assert_eq!(
        first_dimensions(&seen[2]),
        [
            ("FunctionName", "notes-create"),
            ("Resource", "notes-create:live")
        ]
    );
    assert_eq!(
        seen[2].start_time(),
        Some(&DateTime::from_secs(T0 - 21_600))
    );
}

#[tokio::test]
async fn a_settled_history_is_read_once_per_process_and_a_recent_one_every_tick() {
    let (rule, seen) = recording(HashMap::from([("h0", vec![(T0 - 3600, 263.5)])]));
    let metrics = cloudwatch(&[&rule]);
    let history_calls = |seen: &Arc<Mutex<Vec<GetMetricDataInput>>>| {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|i| {
                i.metric_data_queries()[0]
                    .id()
                    .is_some_and(|id| id.starts_with('h'))
            })
            .count()
    };
    // A canary that started long ago: its hour before is final, read once.
    let old = MetricsQuery {
        canary_start: Some(T0),
        ..lambda_query(6, 7, LatencyStat::P99)
    };
    for _ in 0..3 {
        let series = metrics.fetch(std::slice::from_ref(&old)).await[0]
            .clone()
            .expect("answered");
        assert_eq!(series.slow_ms, Some(263.5));
    }
    // The hour's p99 and 5xx rate, the wander and the wander over all versions (here too few
    // minutes for either: settled as none all the same).
    assert_eq!(history_calls(&seen), 4);
    // One that started a moment ago: late datapoints may still arrive, so read again.
    let fresh = MetricsQuery {
        canary_start: Some(crate::clock::now_secs()),
        ..lambda_query(6, 7, LatencyStat::P99)
    };
    metrics.fetch(std::slice::from_ref(&fresh)).await;
    metrics.fetch(std::slice::from_ref(&fresh)).await;
    assert_eq!(history_calls(&seen), 12);
}

#[tokio::test]
async fn emf_queries_read_the_stable_cold_start_before_the_canary_and_the_canarys_cold_starts() {
    let (rule, seen) = recording(HashMap::from([
        ("h0", vec![(T0 - 86_400, 600.0)]),
        ("q0_c_req", vec![(T0, 30.0), (T0 + 10, 30.0)]),
        ("q0_c_cn", vec![(T0, 4.0), (T0 + 10, 0.0)]),
        // A quarter of the canary's cold starts within the limit: 3 of 4 over it.
        ("q0_c_cp", vec![(T0, 25.0)]),
        ("q0_b_req", vec![(T0, 300.0)]),
    ]));
    let query = MetricsQuery {
        slow_ms: Some(400.0),
        canary_start: Some(T0),
        ..emf_query()
    };
    let series = fetch_one(&rule, query).await;
    assert_eq!(series.stable_cold_ms, Some(600.0));
    // A period without cold starts is no evidence either way: left out.
    assert_eq!(
        series.cold,
        [ColdStarts {
            start: T0,
            count: 4.0,
            slow: 3.0
        }]
    );
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        5,
        "the hour's 5xx rate, the day before, the wander (too few minutes), over all versions, then the window: {seen:?}"
    );
    let before = &seen[1];
    assert_eq!(before.start_time(), Some(&DateTime::from_secs(T0 - 86_400)));
    let h = first_stat(before);
    assert_eq!(
        name_stat_period(h),
        (Some("ColdLatency"), Some("p50"), Some(86_400))
    );
    // The limit: the defaults' 1.3x the stable version's 600 ms median cold start.
    assert_eq!(
        cold_queries(&seen[4]),
        [
            (
                "q0_c_cn",
                (Some("ColdLatency"), Some("SampleCount"), Some(10))
            ),
            ("q0_c_cp", (Some("ColdLatency"), Some("PR(:780)"), Some(10)))
        ]
    );
}

#[tokio::test]
async fn lambda_insights_gives_a_lambda_policy_the_cold_start_test() {
    let (rule, seen) = recording(HashMap::from([
        ("h0", vec![(T0 - 86_400, 500.0)]),
        ("q0_c_req", vec![(T0, 300.0), (T0 + 60, 300.0)]),
        ("q0_c_cn", vec![(T0, 5.0)]),
        // 40% of the canary's cold starts within the limit: 3 of 5 over it.
        ("q0_c_cp", vec![(T0, 40.0)]),
        ("q0_b_req", vec![(T0, 3000.0)]),
    ]));
    let query = MetricsQuery {
        source: MetricsSource::Lambda { insights: true },
        slow_ms: Some(400.0),
        canary_start: Some(T0),
        ..lambda_query(1, 2, LatencyStat::P99)
    };
    let series = fetch_one(&rule, query).await;
    assert_eq!(series.stable_cold_ms, Some(500.0));
    assert_eq!(
        series.cold,
        [ColdStarts {
            start: T0,
            count: 5.0,
            slow: 3.0
        }]
    );
    let seen = seen.lock().expect("lock");
    // The stable version's median init over the day before (after the hour's 5xx rate), on the
    // extension's own dimensions.
    let before = &seen[1];
    assert_eq!(before.start_time(), Some(&DateTime::from_secs(T0 - 86_400)));
    assert_eq!(
        name_stat_period(first_stat(before)),
        (Some("init_duration"), Some("p50"), Some(86_400))
    );
    assert_eq!(
        first_dimensions(before),
        [("function_name", "notes-create"), ("version", "1")]
    );
    assert_eq!(
        first_stat(before).metric().and_then(|m| m.namespace()),
        Some("LambdaInsights")
    );
    // The window: the canary's init_duration count and rank at the defaults' limit, 1.3 x 500 ms,
    // per minute; the baseline's cold starts are not read.
    assert_eq!(
        cold_queries(seen.last().expect("the window")),
        [
            (
                "q0_c_cn",
                (Some("init_duration"), Some("SampleCount"), Some(60))
            ),
            (
                "q0_c_cp",
                (Some("init_duration"), Some("PR(:650)"), Some(60))
            )
        ]
    );
}

#[tokio::test]
async fn lambda_policies_without_insights_read_no_cold_starts() {
    let (rule, seen) = recording(HashMap::new());
    let query = MetricsQuery {
        slow_ms: Some(400.0),
        canary_start: Some(T0),
        ..lambda_query(1, 2, LatencyStat::P99)
    };
    let series = fetch_one(&rule, query).await;
    assert_eq!(series.stable_cold_ms, None);
    let seen = seen.lock().expect("lock");
    let names: Vec<&str> = seen
        .iter()
        .flat_map(|input| input.metric_data_queries().iter())
        .filter_map(|q| q.metric_stat()?.metric()?.metric_name())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| *n != "init_duration"),
        "no Lambda Insights without metrics.insights: {names:?}"
    );
}

#[tokio::test]
async fn a_p99_history_that_cannot_be_read_leaves_the_tail_test_without_data_not_the_judge() {
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| {
            r.metric_data_queries()
                .first()
                .and_then(|q| q.id())
                .is_some_and(|id| id.starts_with('h'))
        })
        .sequence()
        .http_status(500, None)
        .repeatedly()
        .build();
    let window = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(|input| {
        answer(input, &HashMap::from([("q0_c_req", vec![(T0, 100.0)])]))
    });
    let query = MetricsQuery {
        canary_start: Some(T0),
        ..lambda_query(6, 7, LatencyStat::P99)
    };
    let series = cloudwatch(&[&rule, &window]).fetch(&[query]).await[0]
        .clone()
        .expect("the window is still judged");
    assert_eq!(series.slow_ms, None);
    assert_eq!(series.canary[0].slow, None);
    assert_eq!(series.canary[0].requests, 100.0);
}

#[tokio::test]
async fn lambda_metrics_become_samples_with_the_policy_statistic() {
    let (rule, seen) = recording(HashMap::from([
        ("q0_c_req", vec![(T0, 100.0), (T0 + 60, 50.0)]),
        ("q0_c_err", vec![(T0, 2.0), (T0 + 120, 1.0)]),
        (
            "q0_c_lat",
            vec![(T0, 812.5), (T0 + 60, 901.25), (T0 + 120, 5.0)],
        ),
        ("q0_b_req", vec![(T0, 900.0)]),
        ("q0_b_lat", vec![(T0, 120.0)]),
    ]));
    let out = cloudwatch(&[&rule])
        .fetch(&[lambda_query(6, 7, LatencyStat::P99)])
        .await;
    let series = out[0].clone().expect("answered");
    assert_eq!(
        series,
        Series {
            // T0+120 has Errors and Duration but no Invocations: no evidence, dropped.
            canary: vec![
                sample(T0, 100.0, 2.0, Some(812.5)),
                sample(T0 + 60, 50.0, 0.0, Some(901.25)),
            ],
            baseline: vec![sample(T0, 900.0, 0.0, Some(120.0))],
            slow_ms: None,
            cold: vec![],
            stable_cold_ms: None,
            latency_wander: None,
            stable_error_rate: None,
        }
    );

    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    let input = &seen[0];
    assert_eq!(input.scan_by(), Some(&ScanBy::TimestampAscending));
    assert_eq!(input.start_time(), Some(&DateTime::from_secs(T0)));
    assert_eq!(input.end_time(), Some(&DateTime::from_secs(T0 + 600)));
    let by_id: HashMap<&str, &aws_sdk_cloudwatch::types::MetricStat> = input
        .metric_data_queries()
        .iter()
        .map(|q| {
            (
                q.id().unwrap_or_default(),
                q.metric_stat().expect("metric stat"),
            )
        })
        .collect();
    assert_eq!(by_id.len(), 6);
    let lat = by_id["q0_c_lat"];
    assert_eq!((lat.stat(), lat.period()), (Some("p99"), Some(60)));
    assert_eq!(by_id["q0_b_req"].stat(), Some("Sum"));
    let metric = lat.metric().expect("metric");
    assert_eq!(
        (metric.namespace(), metric.metric_name()),
        (Some("AWS/Lambda"), Some("Duration"))
    );
    let dims: Vec<(&str, &str)> = metric
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect();
    assert_eq!(
        dims,
        [
            ("FunctionName", "notes-create"),
            ("Resource", "notes-create:live"),
            ("ExecutedVersion", "7")
        ]
    );
    let baseline_version = by_id["q0_b_err"].metric().expect("metric").dimensions()[2].value();
    assert_eq!(baseline_version, Some("6"));
}

#[tokio::test]
async fn pages_are_merged_and_partial_data_keeps_paginating() {
    let first = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| r.next_token().is_none())
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("q0_c_req", &[(T0, 10.0)], StatusCode::PartialData))
                .metric_data_results(result("q0_c_lat", &[(T0, 30.0)], StatusCode::PartialData))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("q0_c_req", &[(T0 + 60, 20.0)], StatusCode::Complete))
                .metric_data_results(result("q0_c_lat", &[(T0 + 60, 40.0)], StatusCode::Complete))
                .metric_data_results(result("q0_b_req", &[(T0 + 60, 5.0)], StatusCode::Complete))
                .build()
        });
    let out = cloudwatch(&[&first, &second])
        .fetch(&[lambda_query(1, 2, LatencyStat::Average)])
        .await;
    let series = out[0].clone().expect("answered");
    assert_eq!(
        series.canary,
        vec![
            sample(T0, 10.0, 0.0, Some(30.0)),
            sample(T0 + 60, 20.0, 0.0, Some(40.0))
        ]
    );
    assert_eq!(series.baseline, vec![sample(T0 + 60, 5.0, 0.0, None)]);
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn many_queries_go_out_in_as_few_calls_as_possible() {
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let sink = sizes.clone();
    let rule =
        mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |input| {
            let ids: Vec<&str> = input
                .metric_data_queries()
                .iter()
                .map(|q| q.id().unwrap_or_default())
                .collect();
            for id in &ids {
                let mut chars = id.chars();
                assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()), "{id}");
                assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{id}");
            }
            let unique: std::collections::HashSet<&&str> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "ids unique within a call");
            sink.lock().expect("lock").push(ids.len());
            let data: HashMap<&str, Vec<(i64, f64)>> =
                ids.iter().map(|id| (*id, vec![(T0, 1.0)])).collect();
            answer(input, &data)
        });
    let queries: Vec<MetricsQuery> = (0..120)
        .map(|i| lambda_query(i, i + 1, LatencyStat::P95))
        .collect();
    let out = cloudwatch(&[&rule]).fetch(&queries).await;
    assert_eq!(
        rule.num_calls(),
        2,
        "720 metric queries: 2 calls of at most 500"
    );
    assert_eq!(*sizes.lock().expect("lock"), [498, 222]);
    assert_eq!(out.len(), 120);
    for series in out {
        let series = series.expect("answered");
        assert_eq!(series.canary, vec![sample(T0, 1.0, 1.0, Some(1.0))]);
    }
}

#[tokio::test]
async fn a_failed_call_fails_only_its_own_queries() {
    // The first call (queries 0..83) gets CloudWatch's 500 every time; the second succeeds.
    let failing = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| {
            r.metric_data_queries()
                .iter()
                .any(|q| q.id() == Some("q0_c_req"))
        })
        .sequence()
        .http_status(500, None)
        .repeatedly()
        .build();
    let working = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .then_compute_output(|input| answer(input, &HashMap::new()));
    let queries: Vec<MetricsQuery> = (0..120)
        .map(|i| lambda_query(i, i + 1, LatencyStat::P99))
        .collect();
    let out = cloudwatch(&[&failing, &working]).fetch(&queries).await;
    assert_eq!(failing.num_calls(), 3, "retried, then given up");
    assert_eq!(working.num_calls(), 1);
    for (i, series) in out.iter().enumerate() {
        if i < 83 {
            assert!(
                matches!(series, Err(PortError::Failed(m)) if m.contains("CloudWatch GetMetricData failed")),
                "{i}: {series:?}"
            );
        } else {
            assert_eq!(series, &Ok(Series::default()), "{i}");
        }
    }
}

#[tokio::test]
async fn an_internal_error_on_one_metric_fails_only_that_query() {
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(|input| {
        let mut out = answer(input, &HashMap::from([("q1_c_req", vec![(T0, 3.0)])]));
        let results = out.metric_data_results.get_or_insert_with(Vec::new);
        for r in results.iter_mut() {
            if r.id() == Some("q0_b_lat") {
                *r = MetricDataResult::builder()
                    .id("q0_b_lat")
                    .status_code(StatusCode::InternalError)
                    .messages(
                        aws_sdk_cloudwatch::types::MessageData::builder()
                            .code("InternalError")
                            .value("Internal error while computing p99")
                            .build(),
                    )
                    .build();
            }
        }
        out
    });
    let out = cloudwatch(&[&rule])
        .fetch(&[
            lambda_query(1, 2, LatencyStat::P99),
            lambda_query(3, 4, LatencyStat::P99),
        ])
        .await;
    assert!(
        matches!(&out[0], Err(PortError::Failed(m)) if m.contains("Duration of notes-create v1") && m.contains("Internal error while computing p99")),
        "{:?}",
        out[0]
    );
    assert_eq!(
        out[1].clone().expect("other query fine").canary,
        vec![sample(T0, 3.0, 0.0, None)]
    );
}

#[tokio::test]
async fn emf_adds_the_crashes_the_handler_never_reported() {
    let (rule, seen) = recording(HashMap::from([
        // Minute T0: 6 handled requests, 4 of them 5xx (10 s periods)...
        ("q0_c_req", vec![(T0, 3.0), (T0 + 10, 3.0), (T0 + 60, 2.0)]),
        ("q0_c_err", vec![(T0, 2.0), (T0 + 10, 2.0)]),
        (
            "q0_c_lat",
            vec![(T0, 40.0), (T0 + 10, 45.0), (T0 + 60, 41.0)],
        ),
        // ...while Lambda counted 10 errors: 6 crashed before the handler wrote anything.
        // Minute T0+60: 1 Lambda error, 0 reported: 1 more. Minute T0+120: only crashes.
        (
            "q0_c_lerr",
            vec![(T0, 10.0), (T0 + 60, 1.0), (T0 + 120, 5.0)],
        ),
        // The baseline's Lambda errors were all reported by the handler: nothing added.
        ("q0_b_req", vec![(T0, 50.0)]),
        ("q0_b_err", vec![(T0, 1.0)]),
        ("q0_b_lerr", vec![(T0, 1.0)]),
    ]));
    let out = cloudwatch(&[&rule]).fetch(&[emf_query()]).await;
    let series = out[0].clone().expect("answered");
    assert_eq!(
        series.canary,
        vec![
            sample(T0, 3.0, 2.0, Some(40.0)),
            sample(T0, 6.0, 6.0, None),
            sample(T0 + 10, 3.0, 2.0, Some(45.0)),
            sample(T0 + 60, 2.0, 0.0, Some(41.0)),
            sample(T0 + 60, 1.0, 1.0, None),
            sample(T0 + 120, 5.0, 5.0, None),
        ]
    );
    assert_eq!(series.baseline, vec![sample(T0, 50.0, 1.0, None)]);

    let seen = seen.lock().expect("lock");
    type Shape<'a> = (Option<&'a str>, Option<&'a str>, Option<i32>);
    let stats: HashMap<&str, Shape<'_>> = seen[0]
        .metric_data_queries()
        .iter()
        .map(|q| {
            let s = q.metric_stat().expect("stat");
            let m = s.metric().expect("metric");
            (
                q.id().unwrap_or_default(),
                (m.namespace(), m.metric_name(), s.period()),
            )
        })
        .collect();
    assert_eq!(stats.len(), 8);
    assert_eq!(
        stats["q0_c_req"],
        (Some("NotesApi"), Some("Requests"), Some(10))
    );
    assert_eq!(stats["q0_c_err"], (Some("NotesApi"), Some("5xx"), Some(10)));
    assert_eq!(
        stats["q0_c_lat"],
        (Some("NotesApi"), Some("Latency"), Some(10))
    );
    assert_eq!(
        stats["q0_c_lerr"],
        (Some("AWS/Lambda"), Some("Errors"), Some(60))
    );
}

#[test]
fn unreported_failures_never_double_count() {
    let emf = [sample(0, 10.0, 4.0, None)];
    let lambda = std::collections::BTreeMap::from([(0, 10.0)]);
    assert_eq!(
        metrics_unreported(&emf, &lambda, 60),
        vec![sample(0, 6.0, 6.0, None)]
    );
    let lambda = std::collections::BTreeMap::from([(0, 3.0)]);
    assert!(
        metrics_unreported(&emf, &lambda, 60).is_empty(),
        "all reported already"
    );
}

fn metrics_unreported(
    emf: &[Sample],
    lambda: &std::collections::BTreeMap<i64, f64>,
    period: i64,
) -> Vec<Sample> {
    super::metrics::unreported_failures(emf, lambda, period)
}

// ---------------------------------------------------------------------------------------------
// SNS

#[tokio::test]
async fn publish_sends_subject_message_and_string_attributes() {
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:canary-alerts";
    let seen: Arc<Mutex<Vec<aws_sdk_sns::operation::publish::PublishInput>>> = Arc::default();
    let sink = seen.clone();
    let rule = mock!(aws_sdk_sns::Client::publish).then_compute_output(move |input| {
        sink.lock().expect("lock").push(input.clone());
        PublishOutput::builder().message_id("m-1").build()
    });
    let message = Notification {
        subject: "notes-create: rolled back v7 to v6".into(),
        body: "canary 5xx 100% (3 of 3)".into(),
        attributes: vec![
            ("event".into(), "rolled_back".into()),
            ("function".into(), "notes-create".into()),
        ],
        chat: r#"{"version":"1.0","source":"custom"}"#.into(),
    };
    sns(&[&rule])
        .publish(TOPIC, &message)
        .await
        .expect("published");
    let seen = seen.lock().expect("lock");
    let input = &seen[0];
    assert_eq!(input.topic_arn(), Some(TOPIC));
    assert_eq!(input.subject(), Some(message.subject.as_str()));
    assert_eq!(input.message_structure(), Some("json"));
    let structured: serde_json::Value =
        serde_json::from_str(input.message().expect("message")).expect("JSON message");
    assert_eq!(
        structured,
        serde_json::json!({"default": message.body, "https": message.chat})
    );
    let attributes = input.message_attributes().expect("attributes");
    assert_eq!(attributes.len(), 2);
    let event = &attributes["event"];
    assert_eq!(
        (event.data_type(), event.string_value()),
        ("String", Some("rolled_back"))
    );
    assert_eq!(attributes["function"].string_value(), Some("notes-create"));
}

#[tokio::test]
async fn a_failing_publish_is_an_error() {
    let rule = mock!(aws_sdk_sns::Client::publish).then_error(|| {
        PublishError::generic(
            ErrorMetadata::builder()
                .code("AuthorizationError")
                .message("not authorized to publish")
                .build(),
        )
    });
    let message = Notification {
        subject: "s".into(),
        body: "b".into(),
        attributes: vec![],
        chat: "{}".into(),
    };
    let err = sns(&[&rule])
        .publish("arn:aws:sns:us-east-1:123456789012:t", &message)
        .await
        .expect_err("fails");
    assert_eq!(
        err,
        PortError::Failed(
            "SNS Publish failed: AuthorizationError: not authorized to publish".into()
        )
    );
}

mod deployed_agent {
    //! `canary policy show --deployed`'s one invocation of the agent: no emulator runs a Lambda
    //! function's code without Docker, so Lambda's answers are mocked here.
    use super::*;
    use crate::aws::deployed::{ask_agent, POLICIES_REQUEST};
    use aws_sdk_lambda::operation::invoke::{InvokeError, InvokeOutput};
    use aws_sdk_lambda::types::error::TooManyRequestsException;
    use aws_smithy_types::Blob;

    fn busy() -> Rule {
        mock!(aws_sdk_lambda::Client::invoke).then_error(|| {
            InvokeError::TooManyRequestsException(
                TooManyRequestsException::builder()
                    .message("Rate Exceeded.")
                    .meta(
                        ErrorMetadata::builder()
                            .code("TooManyRequestsException")
                            .build(),
                    )
                    .build(),
            )
        })
    }

    #[tokio::test]
    async fn the_agent_is_asked_for_its_policies_and_asked_again_while_its_one_slot_ticks() {
        let answer = mock!(aws_sdk_lambda::Client::invoke)
            .match_requests(|r| {
                r.function_name() == Some("lambda-canary")
                    && r.payload().map(Blob::as_ref) == Some(POLICIES_REQUEST.as_bytes())
            })
            .then_output(|| {
                InvokeOutput::builder()
                    .status_code(200)
                    .payload(Blob::new(r#"{"dir":"/opt/policies","files":[]}"#))
                    .build()
            });
        // Throttled (a tick holds the reserved slot) more often than the SDK retries, then free.
        let (b1, b2, b3, b4) = (busy(), busy(), busy(), busy());
        let client = mock_client!(
            aws_sdk_lambda,
            RuleMode::Sequential,
            [&b1, &b2, &b3, &b4, &answer]
        );
        let got = ask_agent(&client, "lambda-canary", Duration::from_millis(1))
            .await
            .expect("answered after the tick");
        assert_eq!(got["dir"], "/opt/policies");
    }

    #[tokio::test]
    async fn an_agent_that_fails_or_answers_nonsense_is_named_in_the_error() {
        let failed = mock!(aws_sdk_lambda::Client::invoke).then_output(|| {
            InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(Blob::new(r#"{"errorMessage":"unknown request"}"#))
                .build()
        });
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&failed]);
        let err = ask_agent(&client, "old-agent", Duration::from_millis(1))
            .await
            .expect_err("function error");
        assert!(
            err.to_string().contains("old-agent") && err.to_string().contains("Unhandled"),
            "{err}"
        );
        let text = mock!(aws_sdk_lambda::Client::invoke).then_output(|| {
            InvokeOutput::builder()
                .status_code(200)
                .payload(Blob::new("null-ish"))
                .build()
        });
        let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&text]);
        let err = ask_agent(&client, "x", Duration::from_millis(1))
            .await
            .expect_err("not json");
        assert!(err.to_string().contains("not JSON"), "{err}");
    }
}

#[tokio::test]
async fn paced_calls_take_one_slot_each() {
    let pace = super::aliases::Pace::new(200.0);
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        pace.wait().await;
    }
    // Five slots 5 ms apart: the fifth is at least 20 ms after the first.
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_lambda_request_rate_is_bounded_and_named_when_wrong() {
    use crate::cli::{lambda_rps, reads_per_tick, DEFAULT_LAMBDA_RPS};
    assert_eq!(lambda_rps(None).ok(), Some(DEFAULT_LAMBDA_RPS));
    assert_eq!(lambda_rps(Some(" 2.5 ")).ok(), Some(2.5));
    for bad in ["0", "-1", "1001", "1e9", "fast", "NaN"] {
        let err = lambda_rps(Some(bad)).expect_err(bad);
        assert!(
            err.to_string().contains("CANARY_LAMBDA_RPS") && err.exit_code() == 2,
            "{err}"
        );
    }
    assert_eq!(reads_per_tick(DEFAULT_LAMBDA_RPS), 240);
    assert_eq!(reads_per_tick(0.1), 2);
}

// ---------------------------------------------------------------------------------------------
// The ledger's reads under throttling (no emulator leaves keys unprocessed).

/// The ledger's table in these tests.
const LEDGER_TABLE: &str = "canary-ledger";

/// A throttled table holding `stored`: each `BatchGetItem` serves only the first key it is
/// asked for and leaves the rest unprocessed, as DynamoDB does when it runs out of capacity.
fn throttled_table(stored: &'static [&'static str]) -> Rule {
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    mock!(aws_sdk_dynamodb::Client::batch_get_item).then_compute_output(move |input| {
        let asked = input
            .request_items()
            .and_then(|r| r.get(LEDGER_TABLE))
            .map(|k| k.keys().to_vec())
            .unwrap_or_default();
        let id = |key: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
            key.get("id")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let served: Vec<_> = asked
            .iter()
            .take(1)
            .filter(|key| stored.contains(&id(key).as_str()))
            .cloned()
            .collect();
        let mut out = BatchGetItemOutput::builder().responses(LEDGER_TABLE, served);
        if asked.len() > 1 {
            let left = KeysAndAttributes::builder()
                .set_keys(Some(asked[1..].to_vec()))
                .build()
                .expect("keys are set");
            out = out.unprocessed_keys(LEDGER_TABLE, left);
        }
        out.build()
    })
}

fn ledger(rule: &Rule) -> DynamoLedger {
    DynamoLedger::with_client(
        mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [rule]),
        LEDGER_TABLE,
    )
}

#[tokio::test]
async fn keys_a_throttled_table_leaves_unprocessed_are_asked_again_with_a_pause() {
    let rule = throttled_table(&["a", "c"]);
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let started = tokio::time::Instant::now();
    let found = ledger(&rule)
        .published(&ids)
        .await
        .expect("read in three calls");
    let mut found: Vec<String> = found.into_iter().collect();
    found.sort();
    assert_eq!(found, ["a", "c"]);
    // One key a call: the two retries asked only for what was left, each after a pause.
    assert_eq!(rule.num_calls(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "50 ms, then 100 ms: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn keys_still_unprocessed_after_three_calls_are_an_error_naming_the_table() {
    let rule = throttled_table(&["a"]);
    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let err = ledger(&rule)
        .published(&ids)
        .await
        .expect_err("one key is never read");
    assert_eq!(rule.num_calls(), 3);
    let text = err.to_string();
    assert!(
        text.contains("1 of the ledger's keys")
            && text.contains(LEDGER_TABLE)
            && text.contains("throttled"),
        "{text}"
    );
}
