//! The ledger of published announcements on DynamoDB: one item per announcement id (`id`, a
//! string key) with an `expires` time DynamoDB's TTL deletes it after. Recording a page there
//! instead of clearing it from the alias saves an `UpdateAlias` per page (Lambda's control-plane
//! quota is shared by the whole account; DynamoDB's is not).

use super::{default_endpoint, sdk_failure, timeouts};
use crate::ports::{PortError, LEDGER_BATCH_KEYS, LEDGER_RETENTION_SECS};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use std::collections::{HashMap, HashSet};

/// The service name in messages.
const SERVICE: &str = "DynamoDB";
/// Keys DynamoDB left unprocessed (throttling) are asked again this many times.
const UNPROCESSED_ATTEMPTS: usize = 3;
/// The pause before asking for unprocessed keys again, doubled at each attempt (DynamoDB's
/// guidance for `UnprocessedKeys`: retry with exponential backoff, or the retry is throttled
/// too). Two pauses, 150 ms in all: small next to a tick's 50 s.
const UNPROCESSED_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);
/// The longest table name or ARN accepted from `CANARY_LEDGER_TABLE`.
const MAX_TABLE_LEN: usize = 1024;

/// A DynamoDB table holding the ids of published announcements.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    endpoint: String,
}

impl DynamoLedger {
    /// The ledger in `table` (a name or an ARN), with a client from `conf` and the adapters'
    /// [`timeouts`].
    #[must_use]
    pub fn new(conf: &SdkConfig, table: &str) -> Self {
        let conf = conf
            .to_builder()
            .timeout_config(timeouts(conf.timeout_config()))
            .build();
        let endpoint = conf.endpoint_url().map_or_else(
            || default_endpoint(conf.region(), "dynamodb"),
            str::to_string,
        );
        Self {
            client: aws_sdk_dynamodb::Client::new(&conf),
            table: table.to_string(),
            endpoint,
        }
    }

    /// The ledger in `table` through a client built elsewhere (its own timeouts and retries).
    #[must_use]
    pub fn with_client(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        let endpoint = default_endpoint(client.config().region(), "dynamodb");
        Self {
            client,
            table: table.to_string(),
            endpoint,
        }
    }

    /// Checks a table name from the environment: a DynamoDB table name (3 to 255 letters,
    /// digits, `_`, `-`, `.`) or a table ARN.
    ///
    /// # Errors
    /// A message naming the value and what a table name may be.
    pub fn check_table(table: &str) -> Result<(), String> {
        let name_ok = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        let arn_ok = table.starts_with("arn:")
            && table.contains(":table/")
            && table.len() <= MAX_TABLE_LEN
            && !table.chars().any(char::is_whitespace);
        if name_ok || arn_ok {
            Ok(())
        } else {
            let shown: String = table.chars().take(80).collect();
            Err(format!(
                "{shown:?} is not a DynamoDB table: a name is 3 to 255 letters, digits, '_', '-' or '.', or give the table's ARN"
            ))
        }
    }

    /// Records `ids` as published at `now`; DynamoDB deletes them after
    /// [`LEDGER_RETENTION_SECS`].
    ///
    /// # Errors
    /// [`PortError`] for the first id DynamoDB did not store (the ones before it are stored).
    pub async fn remember(&self, ids: &[String], now: i64) -> Result<(), PortError> {
        let expires = now.saturating_add(LEDGER_RETENTION_SECS).to_string();
        for id in ids {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("id", AttributeValue::S(id.clone()))
                .item("expires", AttributeValue::N(expires.clone()))
                .send()
                .await
                .map_err(|e| self.failure("PutItem", &e))?;
        }
        Ok(())
    }

    /// Which of `ids` the table holds (strongly consistent reads, 100 keys a call).
    ///
    /// # Errors
    /// [`PortError`] when a call fails or keys stay unprocessed after a few attempts.
    pub async fn published(&self, ids: &[String]) -> Result<HashSet<String>, PortError> {
        let unique: Vec<&String> = ids.iter().collect::<HashSet<_>>().into_iter().collect();
        let mut found = HashSet::new();
        for chunk in unique.chunks(LEDGER_BATCH_KEYS) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|id| HashMap::from([("id".to_string(), AttributeValue::S((*id).clone()))]))
                .collect();
            let mut ask = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("id")
                .consistent_read(true)
                .build()
                .map_err(|e| PortError::Failed(format!("DynamoDB BatchGetItem request: {e}")))?;
            for attempt in 1..=UNPROCESSED_ATTEMPTS {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ask)
                    .send()
                    .await
                    .map_err(|e| self.failure("BatchGetItem", &e))?;
                let items = out.responses().and_then(|r| r.values().next());
                found.extend(
                    items
                        .into_iter()
                        .flatten()
                        .filter_map(|item| item.get("id").and_then(|v| v.as_s().ok()).cloned()),
                );
                match out
                    .unprocessed_keys()
                    .and_then(|u| u.values().next())
                    .filter(|k| !k.keys().is_empty())
                {
                    None => break,
                    Some(left) if attempt < UNPROCESSED_ATTEMPTS => {
                        ask = left.clone();
                        let doubled = u32::try_from(attempt - 1).unwrap_or(0);
                        tokio::time::sleep(UNPROCESSED_BACKOFF * 2u32.pow(doubled)).await;
                    }
                    Some(left) => {
                        return Err(PortError::Failed(format!(
                            "DynamoDB left {} of the ledger's keys in {} unread after {UNPROCESSED_ATTEMPTS} attempts (throttled)",
                            left.keys().len(),
                            self.table
                        )))
                    }
                }
            }
        }
        Ok(found)
    }

    fn failure<E>(
        &self,
        operation: &str,
        e: &aws_sdk_dynamodb::error::SdkError<E, super::HttpResponse>,
    ) -> PortError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        if super::service_code(e) == Some("ResourceNotFoundException") {
            return PortError::NotFound(format!(
                "no DynamoDB table {} (CANARY_LEDGER_TABLE)",
                self.table
            ));
        }
        sdk_failure(SERVICE, &self.endpoint, operation, e)
    }
}
