//! Error types: what can go wrong in a request, in storage and at startup.

use crate::fault::FaultError;

/// Why a request did not succeed. Each variant maps to one HTTP status ([`ApiError::status`]);
/// only [`ApiError::Internal`] and [`ApiError::InjectedFault`] are 500s, and their detail is
/// never shown to the caller ([`ApiError::public_message`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request carries no Cognito identity (`requestContext.identity.cognitoIdentityId`).
    #[error(
        "missing caller identity: the request must be signed (IAM auth with a Cognito identity)"
    )]
    Unauthorized,
    /// The input is invalid; the message names what was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The note does not exist, or belongs to another user (indistinguishable on purpose).
    #[error("note not found")]
    NotFound,
    /// A conditional update lost against a concurrent write.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed (DynamoDB unreachable, throttled after retries, malformed item).
    #[error(transparent)]
    Internal(#[from] StoreError),
    /// `NOTES_FAULT=error-rate:<p>` chose this request to fail.
    #[error("injected fault (NOTES_FAULT error-rate)")]
    InjectedFault,
}

impl ApiError {
    /// The HTTP status code this error is answered with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::BadRequest(_) => 400,
            Self::NotFound => 404,
            Self::Conflict(_) => 409,
            Self::Internal(_) | Self::InjectedFault => 500,
        }
    }

    /// The message shown to the caller in `{"error": "..."}`: the full message for 4xx, a generic
    /// one for 5xx (the detail goes only to the log).
    #[must_use]
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) | Self::InjectedFault => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// A DynamoDB call failed or returned something this code cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SDK call failed (after the SDK's own retries).
    #[error("DynamoDB {operation} failed: {detail}")]
    Dynamo {
        /// The DynamoDB operation, e.g. `PutItem`.
        operation: &'static str,
        /// The SDK error with its full context.
        detail: String,
    },
    /// A stored item lacks an attribute or has one of the wrong type.
    #[error("stored note is malformed: {0}")]
    Malformed(String),
}

/// The function cannot start: its environment is incomplete or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `NOTES_TABLE` is unset or empty.
    #[error("NOTES_TABLE is not set: it must name the DynamoDB table that stores the notes")]
    MissingTable,
    /// `NOTES_FAULT` does not parse.
    #[error(transparent)]
    Fault(#[from] FaultError),
}
