//! Lambda alias revisions: the `RevisionId` moto does not keep, checked on `UpdateAlias` and
//! stamped on every alias answer, and the log of the writes moto applied.

use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::faults::lambda_error;
use super::faults::FaultKind;
use super::http::percent_decode;
use super::http::{Request, Response};
use super::{lock, AliasWrite, Shared};
use crate::SplitMix64;

/// The proxy's revision bookkeeping of one alias.
#[derive(Debug, Default)]
pub(super) struct AliasRevision {
    /// Moves on every write and every change seen from outside.
    generation: u64,
    /// `FunctionVersion`, `RoutingConfig` and `Description` as last seen; `None` before the first
    /// sighting and after a delete.
    fingerprint: Option<String>,
}

pub(super) type AliasKey = (String, String);

/// A Lambda alias operation, recognised by method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AliasOp {
    Get(AliasKey),
    List(String),
    Update(AliasKey),
    Delete(AliasKey),
    Create(String),
}

pub(super) fn alias_op(request: &Request) -> Option<AliasOp> {
    let parts: Vec<&str> = request.path().split('/').collect();
    // ["", "2015-03-31", "functions", fn, "aliases", name?]
    match parts.as_slice() {
        ["", _, "functions", function, "aliases"] if request.method == "POST" => {
            Some(AliasOp::Create(percent_decode(function)))
        }
        ["", _, "functions", function, "aliases"] if request.method == "GET" => {
            Some(AliasOp::List(percent_decode(function)))
        }
        ["", _, "functions", function, "aliases", name] if !name.is_empty() => {
            let key = (percent_decode(function), percent_decode(name));
            match request.method.as_str() {
                "GET" => Some(AliasOp::Get(key)),
                "PUT" => Some(AliasOp::Update(key)),
                "DELETE" => Some(AliasOp::Delete(key)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What the alias looks like, for noticing changes made around the proxy.
pub(super) fn fingerprint(alias: &serde_json::Value) -> String {
    serde_json::json!([
        alias["FunctionVersion"],
        alias["RoutingConfig"],
        alias["Description"]
    ])
    .to_string()
}

impl Shared {
    pub(super) fn alias_lock(&self, key: &AliasKey) -> Arc<tokio::sync::Mutex<AliasRevision>> {
        Arc::clone(lock(&self.aliases).entry(key.clone()).or_default())
    }

    pub(super) fn revision(&self, key: &AliasKey, generation: u64) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let h = SplitMix64(self.nonce ^ hasher.finish()).next();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            (h >> 4) & 0xfff,
            h & 0xfff,
            generation & 0xffff_ffff_ffff
        )
    }

    pub(super) async fn alias_call(
        &self,
        op: AliasOp,
        request: &Request,
        answer_fault: Option<FaultKind>,
    ) -> Response {
        match op {
            AliasOp::Get(key) => {
                let entry = self.alias_lock(&key);
                let mut rev = entry.lock().await;
                let mut response = self.forward(request).await;
                self.observe(&key, &mut rev, &mut response, false);
                response
            }
            AliasOp::List(function) => self.list_aliases(&function, request).await,
            AliasOp::Create(function) => {
                let mut response = self.forward(request).await;
                let name = serde_json::from_slice::<serde_json::Value>(&response.body)
                    .ok()
                    .and_then(|v| v["Name"].as_str().map(str::to_string));
                if let (true, Some(name)) = (response.is_success(), name) {
                    let key = (function, name);
                    let entry = self.alias_lock(&key);
                    let mut rev = entry.lock().await;
                    self.observe(&key, &mut rev, &mut response, true);
                }
                response
            }
            AliasOp::Delete(key) => {
                let entry = self.alias_lock(&key);
                let mut rev = entry.lock().await;
                let response = self.forward(request).await;
                if response.is_success() {
                    rev.generation += 1;
                    rev.fingerprint = None;
                }
                response
            }
            AliasOp::Update(key) if self.deny_alias_writes.load(Ordering::SeqCst) => {
                self.count(|s| s.denied += 1);
                lambda_error(
                    403,
                    "AccessDeniedException",
                    "User",
                    &format!(
                        "User: arn:aws:sts::123456789012:assumed-role/canary-agent/canary is not authorized to perform: lambda:UpdateAlias on resource: arn:aws:lambda:us-east-1:123456789012:function:{}:{}",
                        key.0, key.1
                    ),
                )
            }
            AliasOp::Update(key) => self.update_alias(key, request, answer_fault).await,
        }
    }

    /// Notes what an alias answer shows (a new generation if it changed since last seen, or
    /// always for a write) and puts the proxy's revision in it.
    pub(super) fn observe(
        &self,
        key: &AliasKey,
        rev: &mut AliasRevision,
        response: &mut Response,
        written: bool,
    ) -> Option<serde_json::Value> {
        if !response.is_success() {
            return None;
        }
        let mut alias: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
        self.stamp(key, rev, &mut alias, written);
        response.set_json_body(&alias);
        Some(alias)
    }

    /// [`Self::observe`] on one alias object.
    pub(super) fn stamp(
        &self,
        key: &AliasKey,
        rev: &mut AliasRevision,
        alias: &mut serde_json::Value,
        written: bool,
    ) {
        let seen = fingerprint(alias);
        if written || rev.fingerprint.as_deref() != Some(seen.as_str()) {
            rev.generation += 1;
            rev.fingerprint = Some(seen);
        }
        alias["RevisionId"] = serde_json::Value::String(self.revision(key, rev.generation));
    }

    /// `ListAliases`: every alias of the function the proxy knows is locked (in key order, so
    /// two lists never deadlock; a writer holds one lock only) while moto answers, then each
    /// listed alias gets the proxy's revision, as a `GetAlias` of it would.
    pub(super) async fn list_aliases(&self, function: &str, request: &Request) -> Response {
        let mut known: Vec<AliasKey> = lock(&self.aliases)
            .keys()
            .filter(|k| k.0 == function)
            .cloned()
            .collect();
        known.sort();
        let entries: Vec<_> = known.iter().map(|k| self.alias_lock(k)).collect();
        let mut guards = Vec::with_capacity(entries.len());
        for e in &entries {
            guards.push(e.lock().await);
        }
        let mut response = self.forward(request).await;
        if !response.is_success() {
            return response;
        }
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
            return response;
        };
        if let Some(list) = body["Aliases"].as_array_mut() {
            for alias in list {
                let Some(name) = alias["Name"].as_str().map(str::to_string) else {
                    continue;
                };
                let key = (function.to_string(), name);
                match known.binary_search(&key) {
                    Ok(i) => self.stamp(&key, &mut guards[i], alias, false),
                    Err(_) => {
                        // First sighting (created around the proxy): its own lock is free.
                        let entry = self.alias_lock(&key);
                        let mut rev = entry.lock().await;
                        self.stamp(&key, &mut rev, alias, false);
                    }
                }
            }
        }
        response.set_json_body(&body);
        response
    }

    pub(super) async fn update_alias(
        &self,
        key: AliasKey,
        request: &Request,
        answer_fault: Option<FaultKind>,
    ) -> Response {
        self.count(|s| s.update_alias += 1);
        let expected = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["RevisionId"].as_str().map(str::to_string))
            .filter(|r| !r.is_empty());
        let entry = self.alias_lock(&key);
        let mut rev = entry.lock().await;
        if let Some(expected) = expected {
            // The current alias, read upstream under the lock.
            let read = Request {
                method: "GET".into(),
                target: request.path().to_string(),
                version: "HTTP/1.1".into(),
                headers: request
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !n.eq_ignore_ascii_case("content-type")
                            && !n.eq_ignore_ascii_case("content-length")
                    })
                    .cloned()
                    .collect(),
                body: Vec::new(),
            };
            let mut current = self.forward(&read).await;
            if current.is_success() {
                self.observe(&key, &mut rev, &mut current, false);
                let now = self.revision(&key, rev.generation);
                if now != expected {
                    self.count(|s| s.precondition_failed += 1);
                    return lambda_error(
                        412,
                        "PreconditionFailedException",
                        "User",
                        "The Revision Id provided does not match the latest Revision Id. Call \
                         the GetFunction/GetAlias API to retrieve the latest Revision Id",
                    );
                }
            }
            // A missing alias or function: moto answers the write with its own error.
        }
        let mut response = self.forward(request).await;
        if let Some(alias) = self.observe(&key, &mut rev, &mut response, true) {
            let weights = alias["RoutingConfig"]["AdditionalVersionWeights"]
                .as_object()
                .map(|w| {
                    w.iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                        .collect()
                })
                .unwrap_or_default();
            let text = |name: &str| alias[name].as_str().unwrap_or_default().to_string();
            let mut log = lock(&self.log);
            let seq = log.len() as u64;
            log.push(AliasWrite {
                seq,
                function: key.0.clone(),
                alias: key.1.clone(),
                caller: request.caller(),
                function_version: text("FunctionVersion"),
                weights,
                description: text("Description"),
                revision: self.revision(&key, rev.generation),
                answer_fault,
            });
            drop(log);
            self.count(|s| s.alias_writes += 1);
        }
        response
    }
}
