//! [`Aliases`] on Lambda: one `ListAliases` per read (the production and the candidate alias in
//! one call), one conditional `UpdateAlias` per write, `GetFunctionConfiguration` for a version.

use super::{default_endpoint, sdk_failure, service_code, HttpResponse};
use crate::policy::Policy;
use crate::ports::{Aliases, PortError, Snapshot};
use crate::rollout::{AliasState, Record, Routing, Version};
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationError;
use aws_sdk_lambda::operation::list_aliases::ListAliasesError;
use aws_sdk_lambda::operation::update_alias::UpdateAliasError;
use aws_sdk_lambda::types::{AliasConfiguration, AliasRoutingConfiguration};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::HashMap;

/// The service name in messages.
const SERVICE: &str = "Lambda";

/// The production alias (stable version, canary routing, the agent's record in the description)
/// and the candidate alias, on `aws-sdk-lambda`.
#[derive(Debug, Clone)]
pub struct LambdaAliases {
    client: aws_sdk_lambda::Client,
    endpoint: String,
    pace: Option<std::sync::Arc<Pace>>,
}

/// Client-side pacing of Lambda control-plane calls: at most one call per `interval`, spread
/// evenly, so a tick over many aliases never bursts into the account's quota (15 requests a
/// second, shared with deploys and people) and gets everyone throttled. Hand-written (a few
/// lines over tokio's clock) rather than a rate-limiting crate, to keep the dependency set lean.
#[derive(Debug)]
pub struct Pace {
    interval: std::time::Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    /// At most `per_second` calls a second (bounded to 0.1-1000).
    #[must_use]
    pub fn new(per_second: f64) -> Self {
        let rate = if per_second.is_finite() {
            per_second.clamp(0.1, 1000.0)
        } else {
            10.0
        };
        Self {
            interval: std::time::Duration::from_secs_f64(1.0 / rate),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this call's slot.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl LambdaAliases {
    /// Wraps a Lambda client (a real one, or a mock in tests).
    #[must_use]
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        let endpoint = default_endpoint(client.config().region(), "lambda");
        Self {
            client,
            endpoint,
            pace: None,
        }
    }

    /// Paces every call at most `per_second` a second ([`Pace`]).
    #[must_use]
    pub fn with_pace(mut self, per_second: f64) -> Self {
        self.pace = Some(std::sync::Arc::new(Pace::new(per_second)));
        self
    }

    async fn paced(&self) {
        if let Some(p) = &self.pace {
            p.wait().await;
        }
    }

    /// Names the endpoint the client talks to, for "could not reach Lambda at ..." messages.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The SDK client.
    #[must_use]
    pub fn client(&self) -> &aws_sdk_lambda::Client {
        &self.client
    }

    fn failure<E>(&self, operation: &str, err: &SdkError<E, HttpResponse>) -> PortError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        sdk_failure(SERVICE, &self.endpoint, operation, err)
    }

    /// Explains a `ResourceNotFoundException` of `UpdateAlias` on `function:alias`: is the
    /// function missing, or only the alias? (One extra call, on the error path only.)
    async fn alias_not_found(&self, function: &str, alias: &str) -> PortError {
        match self.function_exists(function, None).await {
            Ok(false) => PortError::NotFound(format!("no function {function}")),
            Ok(true) => PortError::NotFound(format!("{function} has no alias {alias}")),
            Err(e) => e,
        }
    }

    /// `GetFunctionConfiguration`; `Ok(false)` when Lambda says the function (or version) does
    /// not exist.
    async fn function_exists(
        &self,
        function: &str,
        qualifier: Option<String>,
    ) -> Result<bool, PortError> {
        self.paced().await;
        match self
            .client
            .get_function_configuration()
            .function_name(function)
            .set_qualifier(qualifier)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if is_not_found(&e)
                    || e.as_service_error().is_some_and(
                        GetFunctionConfigurationError::is_resource_not_found_exception,
                    ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.failure("GetFunctionConfiguration", &e)),
        }
    }

    /// Every alias of `function` (`ListAliases`, following `NextMarker`); `Ok(None)` when the
    /// function does not exist.
    async fn list_aliases(
        &self,
        function: &str,
    ) -> Result<Option<Vec<AliasConfiguration>>, PortError> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        // A function has at most a few aliases; the bound only stops a service that never ends
        // its pages.
        for _ in 0..MAX_ALIAS_PAGES {
            self.paced().await;
            let page = match self
                .client
                .list_aliases()
                .function_name(function)
                .max_items(ALIAS_PAGE)
                .set_marker(marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e)
                    if is_not_found(&e)
                        || e.as_service_error()
                            .is_some_and(ListAliasesError::is_resource_not_found_exception) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(self.failure("ListAliases", &e)),
            };
            all.extend(page.aliases().iter().cloned());
            match page.next_marker().filter(|m| !m.is_empty()) {
                Some(m) => marker = Some(m.to_string()),
                None => return Ok(Some(all)),
            }
        }
        Err(PortError::Failed(format!(
            "Lambda ListAliases of {function} did not end after {MAX_ALIAS_PAGES} pages"
        )))
    }
}

/// Aliases asked for per `ListAliases` page (Lambda allows up to 10,000).
const ALIAS_PAGE: i32 = 50;
/// Pages of `ListAliases` read at most for one function.
const MAX_ALIAS_PAGES: usize = 20;

/// Whether an SDK error is Lambda's `ResourceNotFoundException`.
fn is_not_found<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    service_code(err) == Some("ResourceNotFoundException")
}

/// Parses an alias's `FunctionVersion` (or a routing key) as a published version number.
fn parse_version(text: &str, function: &str, alias: &str) -> Result<Version, PortError> {
    if text == "$LATEST" {
        return Err(PortError::Unsupported(format!(
            "{function} alias {alias} points at $LATEST; the agent only manages aliases on \
             published versions (publish a version and point {alias} at it)"
        )));
    }
    text.parse().map_err(|_| {
        PortError::Unsupported(format!(
            "{function} alias {alias} points at version {text:?}, which is not a published \
             version number"
        ))
    })
}

/// The canary half of an alias's routing: none, or exactly one extra version (weight in percent).
fn parse_routing(
    out: &AliasConfiguration,
    function: &str,
    alias: &str,
) -> Result<Option<Routing>, PortError> {
    let Some(weights) = out
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
    else {
        return Ok(None);
    };
    let mut entries: Vec<(&String, &f64)> = weights.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    match entries.as_slice() {
        [] => Ok(None),
        [(version, weight)] => Ok(Some(Routing {
            version: parse_version(version, function, alias)?,
            weight: (**weight * 100.0 * 1e6).round() / 1e6,
        })),
        many => Err(PortError::Unsupported(format!(
            "{function} alias {alias} routes traffic to {} extra versions ({}); the agent \
             manages at most one canary version, remove the extra routing by hand",
            many.len(),
            many.iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl Aliases for LambdaAliases {
    async fn read(&self, policy: &Policy) -> Result<Snapshot, PortError> {
        let (function, alias) = (policy.function.as_str(), policy.alias.as_str());
        let candidate_alias = policy.candidate_alias.as_str();
        // Both aliases in one call: one request per function and tick.
        let Some(aliases) = self.list_aliases(function).await? else {
            return Err(PortError::NotFound(format!("no function {function}")));
        };
        let named = |name: &str| aliases.iter().find(|a| a.name() == Some(name)).cloned();
        let Some(live) = named(alias) else {
            return Err(PortError::NotFound(format!(
                "{function} has no alias {alias}"
            )));
        };
        let candidate = Ok::<_, PortError>(named(candidate_alias));
        let stable = parse_version(live.function_version().unwrap_or_default(), function, alias)?;
        let canary = parse_routing(&live, function, alias)?;
        let record = Record::decode(live.description().unwrap_or_default());
        let revision = live
            .revision_id()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                PortError::Failed(format!(
                    "Lambda ListAliases answered without a RevisionId for {function}:{alias}; the \
                     agent cannot update the alias safely"
                ))
            })?
            .to_string();

        let candidate = match candidate? {
            None => None,
            Some(out) => {
                let text = out.function_version().unwrap_or_default();
                match parse_version(text, function, candidate_alias) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        // Never block rollback protection of the live alias on a candidate
                        // alias the agent cannot use.
                        tracing::warn!(function, alias = candidate_alias, "{e}; ignoring it");
                        None
                    }
                }
            }
        };

        Ok(Snapshot {
            state: AliasState {
                stable,
                canary,
                candidate,
                record,
            },
            revision,
        })
    }

    async fn write(
        &self,
        policy: &Policy,
        next: &AliasState,
        revision: &str,
    ) -> Result<String, PortError> {
        let (function, alias) = (policy.function.as_str(), policy.alias.as_str());
        // An empty map clears the routing; leaving it out would keep the old canary.
        let weights: HashMap<String, f64> = next
            .canary
            .iter()
            .map(|c| (c.version.to_string(), c.weight / 100.0))
            .collect();
        self.paced().await;
        let result = self
            .client
            .update_alias()
            .function_name(function)
            .name(alias)
            .function_version(next.stable.to_string())
            .routing_config(
                AliasRoutingConfiguration::builder()
                    .set_additional_version_weights(Some(weights))
                    .build(),
            )
            .description(next.record.encode())
            .revision_id(revision)
            .send()
            .await;
        match result {
            Ok(out) => out
                .revision_id()
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    PortError::Failed(format!(
                        "Lambda UpdateAlias answered without a RevisionId for {function}:{alias}"
                    ))
                }),
            Err(e)
                if service_code(&e) == Some("PreconditionFailedException")
                    || e.as_service_error()
                        .is_some_and(UpdateAliasError::is_precondition_failed_exception) =>
            {
                Err(PortError::Conflict)
            }
            Err(e)
                if is_not_found(&e)
                    || e.as_service_error()
                        .is_some_and(UpdateAliasError::is_resource_not_found_exception) =>
            {
                Err(self.alias_not_found(function, alias).await)
            }
            Err(e) => Err(self.failure("UpdateAlias", &e)),
        }
    }

    async fn version_exists(&self, policy: &Policy, version: Version) -> Result<bool, PortError> {
        self.function_exists(&policy.function, Some(version.to_string()))
            .await
    }
}
