//! `notes-delete`: `DELETE /notes/{id}` — deletes one of the calling user's notes.
//!
//! Environment: `NOTES_TABLE` (required), `NOTES_FAULT` (optional, see `notes_api::fault`),
//! the standard AWS configuration chain (`AWS_ENDPOINT_URL` for a local emulator).

use std::process::ExitCode;

use lambda_http::service_fn;
use notes_api::{App, Operation, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    notes_api::telemetry::init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => return notes_api::startup_failed("notes-delete", &err),
    };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = App::new(aws_sdk_dynamodb::Client::new(&sdk), settings);
    let app = &app;
    notes_api::finish(
        lambda_http::run(service_fn(move |req| app.handle(Operation::Delete, req))).await,
    )
}
