//! The notes API: five AWS Lambda handlers (create, get, list, update, delete) on `lambda_http`,
//! storing notes in DynamoDB.
//!
//! Each binary in `src/bin` is a thin `main` that builds the DynamoDB client once and hands it,
//! wrapped in an [`App`], to [`App::handle`] for one [`Operation`]. Everything that can be tested
//! without AWS (input validation, fault configuration, the Embedded Metric Format record, the
//! request log line) is a pure function in this library.
//!
//! Module map:
//! - [`model`]: the note, request bodies, limits and validation.
//! - [`store`]: DynamoDB access with conditional writes.
//! - [`error`]: the error types and how they map to HTTP statuses.
//! - [`response`]: JSON response builders.
//! - [`fault`]: `NOTES_FAULT` fault injection for game days.
//! - [`metrics`]: the CloudWatch Embedded Metric Format record per request.
//! - [`telemetry`]: JSON logging and the one log line per request.
//! - [`handlers`]: [`Settings`], [`App`] and the request pipeline.

pub mod error;
pub mod fault;
pub mod handlers;
pub mod metrics;
pub mod model;
pub mod response;
pub mod store;
pub mod telemetry;

pub use error::{ApiError, ConfigError, StoreError};
pub use fault::FaultConfig;
pub use handlers::{finish, startup_failed, App, Operation, Settings};
pub use model::{Note, MAX_ATTACHMENT_CHARS, MAX_CONTENT_CHARS};
pub use store::NotesStore;
