//! [`Notifier`] on SNS `Publish`, with an optional [`DynamoLedger`] of what it published.

use super::{default_endpoint, sdk_failure, service_code, DynamoLedger};
use crate::ports::{Notification, Notifier, PortError};
use aws_sdk_sns::operation::publish::PublishError;
use aws_sdk_sns::types::MessageAttributeValue;
use std::collections::HashSet;

/// The service name in messages.
const SERVICE: &str = "SNS";

/// The `Message` of a `Publish` with `MessageStructure` `json`: the text for every protocol
/// (`default`: e-mail, SMS, SQS, Lambda) and the chat form for `https` subscribers, which is
/// how AWS Chatbot subscribes to a topic.
#[must_use]
pub fn structured(message: &Notification) -> String {
    serde_json::json!({"default": message.body, "https": message.chat}).to_string()
}

/// Publishes notifications to an SNS topic, on `aws-sdk-sns`.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    endpoint: String,
    ledger: Option<DynamoLedger>,
}

impl SnsNotifier {
    /// Wraps an SNS client (a real one, or a mock in tests).
    #[must_use]
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        let endpoint = default_endpoint(client.config().region(), "sns");
        Self {
            client,
            endpoint,
            ledger: None,
        }
    }

    /// Keeps a ledger of what it published in `ledger` (`CANARY_LEDGER_TABLE`).
    #[must_use]
    pub fn with_ledger(mut self, ledger: DynamoLedger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Names the endpoint the client talks to, for "could not reach SNS at ..." messages.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The SDK client.
    #[must_use]
    pub fn client(&self) -> &aws_sdk_sns::Client {
        &self.client
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, topic_arn: &str, message: &Notification) -> Result<(), PortError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(&message.subject)
            .message_structure("json")
            .message(structured(message));
        for (name, value) in &message.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| {
                    PortError::Failed(format!("SNS message attribute {name} is invalid: {e}"))
                })?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if service_code(&e) == Some("NotFound")
                    || e.as_service_error()
                        .is_some_and(PublishError::is_not_found_exception) =>
            {
                Err(PortError::NotFound(format!(
                    "no SNS topic {topic_arn} (notify.topic_arn)"
                )))
            }
            Err(e) => Err(sdk_failure(SERVICE, &self.endpoint, "Publish", &e)),
        }
    }

    fn remembers(&self) -> bool {
        self.ledger.is_some()
    }

    async fn remember(&self, ids: &[String], now: i64) -> Result<(), PortError> {
        match &self.ledger {
            Some(l) => l.remember(ids, now).await,
            None => Err(PortError::Unsupported("no ledger".to_string())),
        }
    }

    async fn published(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        match &self.ledger {
            Some(l) => l.published(ids).await,
            None => Ok(HashSet::new()),
        }
    }
}
