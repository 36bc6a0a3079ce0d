//! `notes-load`: the game day's traffic. Signs in to the notes API's Cognito user pool, trades
//! the ID token for temporary AWS credentials through the identity pool (as the notes app's
//! browser client does), and sends SigV4-signed create / get / list / update / delete requests
//! at a steady rate, printing what the API answered every few seconds.
//!
//! - [`cognito`]: the three Cognito calls (`InitiateAuth`, `GetId`,
//!   `GetCredentialsForIdentity`), plain JSON over HTTPS, none of them signed.
//! - [`load`]: the request mix, the pacing and the tally.
//! - Here: the HTTPS client and SigV4 signing (service `execute-api`) on `aws-sigv4`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub mod cognito;
pub mod load;

/// What went wrong, in words for the person running a game day.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// A call that failed, and why.
    #[error("{what}: {why}")]
    Call {
        /// The call, e.g. `Cognito InitiateAuth`.
        what: String,
        /// The service's error or the transport failure.
        why: String,
    },
}

/// The HTTP(S) client every request goes through.
pub type Client =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client (the platform's root certificates; plain HTTP too, for an emulator on
/// 127.0.0.1).
///
/// # Errors
/// The platform's root certificates cannot be read.
pub fn client() -> Result<Client, LoadError> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| LoadError::Usage(format!("cannot load root certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https))
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Sends `request` and reads the whole answer, within `timeout`.
///
/// # Errors
/// The connection failed, the answer could not be read, or `timeout` passed; the text says which.
pub async fn send(
    client: &Client,
    request: http::Request<Vec<u8>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

/// Signs `request` in place with SigV4 for API Gateway (service `execute-api`): adds
/// `x-amz-date`, `x-amz-security-token` and `authorization`. Only the headers already on the
/// request (and `host`, from the URI) are signed.
///
/// # Errors
/// The request cannot be signed (e.g. a header value that is not text).
pub fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), LoadError> {
    let failed = |e: &dyn std::fmt::Display| LoadError::Call {
        what: "SigV4 signing".into(),
        why: e.to_string(),
    };
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| Ok((k.as_str(), v.to_str().map_err(|e| failed(&e))?)))
        .collect::<Result<Vec<_>, LoadError>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
