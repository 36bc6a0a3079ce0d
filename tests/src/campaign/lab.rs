//! The lab a campaign runs in: a Lambda function with a `live` and a `candidate` alias on moto
//! behind the fault proxy, the minutes of metrics it is fed, and the agents that watch it.

use std::collections::BTreeMap;
use std::path::Path;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use canary_agent::aws::AwsPorts;
use canary_agent::policy::{parse_policy, Policy};
use canary_agent::tick::Agent;

use super::AwsAgent;
use crate::Moto;

/// One minute of `AWS/Lambda` numbers of one version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    /// Invocations (Sum).
    pub invocations: f64,
    /// Errors (Sum).
    pub errors: f64,
    /// Duration (Average), milliseconds.
    pub duration_ms: f64,
}

/// A healthy build's minute.
pub const HEALTHY: Minute = Minute {
    invocations: 100.0,
    errors: 0.0,
    duration_ms: 100.0,
};
/// A build whose every request fails.
pub const FAILING: Minute = Minute {
    invocations: 100.0,
    errors: 100.0,
    duration_ms: 100.0,
};

/// An alias as moto has it.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasView {
    /// `FunctionVersion`.
    pub stable: u64,
    /// Routed extra versions and their weights (fractions).
    pub weights: BTreeMap<String, f64>,
    /// The description (the agent's record).
    pub description: String,
}

impl AliasView {
    /// The routed versions with a weight above zero.
    #[must_use]
    pub fn routed(&self) -> Vec<(u64, f64)> {
        routed(&self.weights)
    }
}

pub(super) fn routed(weights: &BTreeMap<String, f64>) -> Vec<(u64, f64)> {
    weights
        .iter()
        .filter(|(_, w)| **w > 0.0)
        .map(|(v, w)| (v.parse().unwrap_or(0), *w))
        .collect()
}

/// moto with a Lambda role, an SNS topic and direct (unproxied) clients: the world the tests
/// deploy into and observe.
#[derive(Debug)]
pub struct Lab {
    /// Direct SDK configuration (no proxy, no faults).
    pub sdk: SdkConfig,
    /// Direct Lambda client.
    pub lambda: aws_sdk_lambda::Client,
    /// Direct CloudWatch client.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// ARN of the on-call topic.
    pub topic_arn: String,
    role: &'static str,
    /// The server (last, so it stops after the clients are gone).
    pub moto: Moto,
}

impl Lab {
    /// Starts moto and creates the Lambda role and the topic `canary-alerts`.
    ///
    /// # Panics
    /// If moto cannot be started or refuses a call.
    pub async fn start() -> Lab {
        let moto = Moto::start();
        let sdk = moto.sdk_config().await;
        let role = moto.create_lambda_role();
        let topic_arn = crate::create_topic(&sdk, "canary-alerts").await;
        Lab {
            lambda: aws_sdk_lambda::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            sdk,
            topic_arn,
            role,
            moto,
        }
    }

    /// Creates `function` with version 1 and the aliases `live` and `candidate` on it.
    ///
    /// # Panics
    /// If moto refuses a call.
    pub async fn create_function(&self, function: &str) {
        crate::lambda_lab::create_function(&self.lambda, self.role, function).await;
    }

    /// What `sam deploy` does: new code, a new version, `candidate` pointed at it.
    ///
    /// # Panics
    /// If moto refuses a call.
    pub async fn release(&self, function: &str) -> u64 {
        crate::lambda_lab::release(&self.lambda, function).await
    }

    /// Reads an alias directly from moto.
    ///
    /// # Panics
    /// If moto refuses the call or the alias points at a non-numeric version.
    pub async fn alias(&self, function: &str, alias: &str) -> AliasView {
        let out = self
            .lambda
            .get_alias()
            .function_name(function)
            .name(alias)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get alias {function}:{alias}: {e:?}"));
        AliasView {
            stable: out
                .function_version()
                .unwrap_or_default()
                .parse()
                .expect("numeric alias version"),
            weights: out
                .routing_config()
                .and_then(|r| r.additional_version_weights())
                .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
            description: out.description().unwrap_or_default().to_string(),
        }
    }

    /// Creates the agent's ledger of pages as `agent/template.yaml` does: table `name`, string
    /// key `id`, TTL on `expires`.
    ///
    /// # Panics
    /// If moto refuses a call.
    pub async fn create_ledger(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let db = aws_sdk_dynamodb::Client::new(&self.sdk);
        db.create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
        db.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires")
                    .enabled(true)
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("TTL on {name}: {e:?}"));
    }

    /// Writes `AWS/Lambda` metrics of `versions` (each with its minute) for the minutes starting
    /// at `from`, `from + 60`, ... (`minutes` of them), in one call, with the dimensions in the
    /// order Lambda and the agent's query use.
    ///
    /// # Panics
    /// If moto refuses the call.
    pub async fn put_minutes(
        &self,
        function: &str,
        versions: &[(u64, Minute)],
        from: i64,
        minutes: i64,
    ) {
        let mut request = self.cloudwatch.put_metric_data().namespace("AWS/Lambda");
        for &(version, m) in versions {
            for k in 0..minutes {
                let at = from + 60 * k;
                for (name, value, unit) in [
                    ("Invocations", m.invocations, StandardUnit::Count),
                    ("Errors", m.errors, StandardUnit::Count),
                    ("Duration", m.duration_ms, StandardUnit::Milliseconds),
                ] {
                    let mut d = MetricDatum::builder()
                        .metric_name(name)
                        .timestamp(DateTime::from_secs(at))
                        .value(value)
                        .unit(unit);
                    for (n, v) in [
                        ("FunctionName", function.to_string()),
                        ("Resource", format!("{function}:live")),
                        ("ExecutedVersion", version.to_string()),
                    ] {
                        d = d.dimensions(Dimension::builder().name(n).value(v).build());
                    }
                    request = request.metric_data(d.build());
                }
            }
        }
        request.send().await.expect("put metric data");
    }
}

/// The campaign's policy: steps 10/50/100 every 2 minutes, 10 requests, `Average` latency (moto
/// computes no percentiles), AWS/Lambda metrics, notifying `topic`.
///
/// # Panics
/// If the policy does not parse (a bug in this text).
#[must_use]
pub fn policy(function: &str, topic: &str) -> Policy {
    let text = crate::lambda_lab::policy_yaml(function, "[10, 50, 100]", topic, "");
    parse_policy(Path::new("campaign/notes-create.yaml"), &text)
        .unwrap_or_else(|e| panic!("invalid campaign policy: {e}"))
}

/// An agent on clients built from `sdk`.
#[must_use]
pub fn agent(sdk: &SdkConfig) -> AwsAgent {
    let ports = AwsPorts::from_conf(sdk);
    Agent::new(ports.aliases, ports.metrics, ports.notifier)
}

/// [`agent`] on `sdk`, keeping its ledger of pages in `table` on clients built from
/// `ledger_sdk` (as the deployed agent does with `CANARY_LEDGER_TABLE`).
#[must_use]
pub fn ledgered_agent(sdk: &SdkConfig, ledger_sdk: &SdkConfig, table: &str) -> AwsAgent {
    let mut a = agent(sdk);
    let ledger = canary_agent::aws::DynamoLedger::new(ledger_sdk, table);
    a.notifier = a.notifier.with_ledger(ledger);
    a
}
