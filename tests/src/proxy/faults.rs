//! The fault model: which service a request is for, which faults to inject at which rates, and
//! each fault answered in the request's own protocol (Lambda's REST-JSON, SNS's Query XML,
//! CloudWatch's RPC v2 CBOR, DynamoDB's JSON 1.0).

use super::http::form_pairs;
use super::http::{Request, Response};

/// Which AWS service a request is for (faults are configured per service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// AWS Lambda (REST-JSON, paths under `/2015-03-31/`).
    Lambda,
    /// Amazon CloudWatch (`monitoring`: RPC v2 CBOR from current SDKs, the Query protocol from
    /// older ones).
    Monitoring,
    /// Amazon SNS (Query protocol).
    Sns,
    /// Amazon DynamoDB (JSON 1.0 protocol): the agent's ledger of pages.
    DynamoDb,
    /// Anything else (SQS, IAM, ...): forwarded, never faulted.
    Other,
}

impl Service {
    /// The name used in tables (`lambda`, `monitoring`, `sns`, `dynamodb`, `other`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Lambda => "lambda",
            Self::Monitoring => "monitoring",
            Self::Sns => "sns",
            Self::DynamoDb => "dynamodb",
            Self::Other => "other",
        }
    }
}

/// A fault the proxy can inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// HTTP 500 (Lambda `ServiceException`, SNS `InternalError`, CloudWatch
    /// `InternalServiceFault`); not forwarded.
    Http500,
    /// HTTP 503 (`ServiceUnavailable`); not forwarded.
    Http503,
    /// Throttling: Lambda 429 `TooManyRequestsException`, SNS and CloudWatch 400 `Throttling`;
    /// not forwarded.
    Throttle,
    /// The connection is reset after the request was read; not forwarded.
    ResetBefore,
    /// The request is forwarded (moto applies it), then the connection is reset: the client never
    /// gets the answer.
    ResetAfter,
    /// The request is forwarded; the answer's headers announce the full body but only part of it
    /// is sent before the connection closes.
    Truncate,
    /// The request is forwarded at once; its answer is held back for a random time in
    /// [`ProxyConfig::delay`].
    Delay,
}

impl FaultKind {
    /// Every kind, in the order they are drawn and listed.
    pub const ALL: [FaultKind; 7] = [
        Self::Http500,
        Self::Http503,
        Self::Throttle,
        Self::ResetBefore,
        Self::ResetAfter,
        Self::Truncate,
        Self::Delay,
    ];

    /// Short name for tables (`500`, `503`, `throttle`, `reset-before`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Http500 => "500",
            Self::Http503 => "503",
            Self::Throttle => "throttle",
            Self::ResetBefore => "reset-before",
            Self::ResetAfter => "reset-after",
            Self::Truncate => "truncated",
            Self::Delay => "delay",
        }
    }

    /// Whether moto sees the request when this fault is drawn.
    #[must_use]
    pub fn forwards(self) -> bool {
        matches!(self, Self::ResetAfter | Self::Truncate | Self::Delay)
    }
}

/// The probability of each fault on one request of a service. At most one fault is drawn per
/// request, so the probabilities should add up to at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// [`FaultKind::Http500`].
    pub http_500: f64,
    /// [`FaultKind::Http503`].
    pub http_503: f64,
    /// [`FaultKind::Throttle`].
    pub throttle: f64,
    /// [`FaultKind::ResetBefore`].
    pub reset_before: f64,
    /// [`FaultKind::ResetAfter`].
    pub reset_after: f64,
    /// [`FaultKind::Truncate`].
    pub truncate: f64,
    /// [`FaultKind::Delay`].
    pub delay: f64,
}

impl FaultRates {
    /// No faults.
    pub const NONE: FaultRates = FaultRates {
        http_500: 0.0,
        http_503: 0.0,
        throttle: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        truncate: 0.0,
        delay: 0.0,
    };

    /// A mix where about one request in six goes wrong: 2% each of 500, 503, reset before and
    /// truncation, 3% each of throttling, reset after and delay.
    pub const TYPICAL: FaultRates = FaultRates {
        http_500: 0.02,
        http_503: 0.02,
        throttle: 0.03,
        reset_before: 0.02,
        reset_after: 0.03,
        truncate: 0.02,
        delay: 0.03,
    };

    /// Only `kind`, with probability `p`.
    #[must_use]
    pub fn only(kind: FaultKind, p: f64) -> FaultRates {
        let mut rates = FaultRates::NONE;
        *rates.slot(kind) = p;
        rates
    }

    /// Every probability multiplied by `factor` (the sum capped at 1 by scaling down).
    #[must_use]
    pub fn scaled(self, factor: f64) -> FaultRates {
        let mut out = self;
        let total = self.total() * factor.max(0.0);
        let k = if total > 1.0 {
            factor.max(0.0) / total
        } else {
            factor.max(0.0)
        };
        for kind in FaultKind::ALL {
            *out.slot(kind) *= k;
        }
        out
    }

    /// The probability of `kind`.
    #[must_use]
    pub fn get(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::Http500 => self.http_500,
            FaultKind::Http503 => self.http_503,
            FaultKind::Throttle => self.throttle,
            FaultKind::ResetBefore => self.reset_before,
            FaultKind::ResetAfter => self.reset_after,
            FaultKind::Truncate => self.truncate,
            FaultKind::Delay => self.delay,
        }
    }

    pub(super) fn slot(&mut self, kind: FaultKind) -> &mut f64 {
        match kind {
            FaultKind::Http500 => &mut self.http_500,
            FaultKind::Http503 => &mut self.http_503,
            FaultKind::Throttle => &mut self.throttle,
            FaultKind::ResetBefore => &mut self.reset_before,
            FaultKind::ResetAfter => &mut self.reset_after,
            FaultKind::Truncate => &mut self.truncate,
            FaultKind::Delay => &mut self.delay,
        }
    }

    /// The probability that a request gets any fault.
    #[must_use]
    pub fn total(&self) -> f64 {
        FaultKind::ALL.iter().map(|&k| self.get(k).max(0.0)).sum()
    }

    /// The fault a uniform draw `u` in [0, 1) selects, if any.
    pub(super) fn pick(&self, u: f64) -> Option<FaultKind> {
        let mut acc = 0.0;
        for kind in FaultKind::ALL {
            acc += self.get(kind).max(0.0);
            if u < acc {
                return Some(kind);
            }
        }
        None
    }
}

/// The service named by the SigV4 credential scope (`Credential=AKID/date/region/SERVICE/...`).
pub(super) fn signed_service(request: &Request) -> Option<String> {
    let auth = request.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_ascii_lowercase)
}

pub(super) fn classify(request: &Request) -> Service {
    match signed_service(request).as_deref() {
        Some("lambda") => return Service::Lambda,
        Some("monitoring") => return Service::Monitoring,
        Some("sns") => return Service::Sns,
        Some("dynamodb") => return Service::DynamoDb,
        Some(_) => return Service::Other,
        None => {}
    }
    if let Some(target) = request.header("x-amz-target") {
        return if target.starts_with("GraniteServiceVersion20100801") {
            Service::Monitoring
        } else if target.starts_with("DynamoDB_20120810.") {
            Service::DynamoDb
        } else {
            Service::Other
        };
    }
    if request
        .path()
        .starts_with("/service/GraniteServiceVersion20100801/")
    {
        return Service::Monitoring;
    }
    if request
        .path()
        .split('/')
        .nth(1)
        .is_some_and(|seg| seg.len() == 10 && seg.starts_with("20"))
    {
        return Service::Lambda;
    }
    let form = request
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let pairs = form_pairs(&request.body);
        let version = pairs
            .iter()
            .find(|(k, _)| k == "Version")
            .map(|(_, v)| v.as_str());
        return match version {
            Some("2010-03-31") => Service::Sns,
            Some("2010-08-01") => Service::Monitoring,
            _ => Service::Other,
        };
    }
    Service::Other
}

pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lambda's REST-JSON error: `x-amzn-errortype` names the exception, the body says who erred.
pub(super) fn lambda_error(status: u16, code: &str, kind: &str, message: &str) -> Response {
    Response::new(
        status,
        vec![
            ("Content-Type".into(), "application/json".into()),
            ("x-amzn-errortype".into(), code.into()),
            ("x-amzn-RequestId".into(), request_id()),
        ],
        serde_json::json!({"Type": kind, "message": message})
            .to_string()
            .into_bytes(),
    )
}

/// DynamoDB's JSON 1.0 error: `__type` names the exception in its namespace.
pub(super) fn dynamodb_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        vec![
            ("Content-Type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-RequestId".into(), request_id()),
        ],
        serde_json::json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": message})
            .to_string()
            .into_bytes(),
    )
}

/// The Query protocol's XML error of SNS (or of CloudWatch, for a client that speaks Query).
pub(super) fn query_error(
    service: Service,
    status: u16,
    kind: &str,
    code: &str,
    message: &str,
) -> Response {
    let namespace = match service {
        Service::Monitoring => "http://monitoring.amazonaws.com/doc/2010-08-01/",
        _ => "http://sns.amazonaws.com/doc/2010-03-31/",
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        request_id()
    );
    Response::new(
        status,
        vec![("Content-Type".into(), "text/xml".into())],
        body.into_bytes(),
    )
}

/// The answer of a fault that stops a request before moto sees it, in the request's protocol:
/// Lambda's REST-JSON, CloudWatch's RPC v2 CBOR (`cbor`: what current SDKs send) or the Query
/// protocol's XML.
pub(super) fn fault_response(service: Service, kind: FaultKind, cbor: bool) -> Option<Response> {
    if service == Service::DynamoDb {
        let (status, code, message) = match kind {
            FaultKind::Http500 => (500, "InternalServerError", "injected internal error"),
            FaultKind::Http503 => (503, "ServiceUnavailable", "injected: service unavailable"),
            FaultKind::Throttle => (400, "ThrottlingException", "Rate exceeded"),
            _ => return None,
        };
        return Some(dynamodb_error(status, code, message));
    }
    if service == Service::Lambda {
        return Some(match kind {
            FaultKind::Http500 => lambda_error(
                500,
                "ServiceException",
                "Service",
                "injected internal error",
            ),
            FaultKind::Http503 => lambda_error(
                503,
                "ServiceException",
                "Service",
                "injected: service unavailable",
            ),
            FaultKind::Throttle => {
                let mut r = lambda_error(429, "TooManyRequestsException", "User", "Rate exceeded");
                r.set_json_body(&serde_json::json!({
                    "Type": "User",
                    "message": "Rate exceeded",
                    "Reason": "CallerRateLimitExceeded"
                }));
                r
            }
            _ => return None,
        });
    }
    let (status, kind, code, message) = match kind {
        FaultKind::Http500 if service == Service::Monitoring => (
            500,
            "Receiver",
            "InternalServiceFault",
            "injected internal error",
        ),
        FaultKind::Http500 => (500, "Receiver", "InternalError", "injected internal error"),
        FaultKind::Http503 => (
            503,
            "Receiver",
            "ServiceUnavailable",
            "injected: service unavailable",
        ),
        FaultKind::Throttle => (400, "Sender", "Throttling", "Rate exceeded"),
        _ => return None,
    };
    Some(if cbor {
        let mut r = crate::gateway::cbor_error(status, code, message);
        r.headers
            .push(("x-amzn-query-error".into(), format!("{code};{kind}")));
        r
    } else {
        query_error(service, status, kind, code, message)
    })
}
