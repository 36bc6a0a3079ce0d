//! A loopback HTTP/1.1 front for `moto_server` that lets current SDK clients talk CloudWatch to it.
//!
//! `aws-sdk-cloudwatch` (since 1.100) speaks only the Smithy RPC v2 CBOR protocol; moto 5.2.5
//! serves CloudWatch's query and JSON 1.0 protocols, not CBOR (getmoto/moto#9195). The gateway
//! forwards every request to moto unchanged, except an RPC v2 CBOR one (`smithy-protocol:
//! rpc-v2-cbor`, `POST /service/{Service}/operation/{Operation}`), which it sends on as JSON 1.0
//! (`POST /`, `X-Amz-Target: {Service}.{Operation}`, the body through [`cbor::to_json`]) and whose
//! answer it turns back into CBOR ([`cbor::from_json`]), errors included (`__type`, `message`,
//! and the `x-amzn-query-error` header CloudWatch's query-compatible errors carry). An answer
//! moto could not give in JSON (its HTML 500 for a statistic it does not compute) becomes a CBOR
//! `InternalFailure` with the same status and moto's text as its message.
//!
//! [`crate::Moto`] starts one in front of every server, so every client built from
//! [`crate::Moto::sdk_config`], and every [`crate::proxy::Proxy`] in front of
//! [`crate::Moto::endpoint`], goes through it. It runs on its own thread and runtime, so a test's
//! blocking calls cannot starve it.

use crate::cbor;
use crate::proxy::{accept_each, bad_gateway, exchange_within, read_request, Request, Response};
use std::io::Read;
use std::net::Ipv4Addr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest request body once inflated.
const MAX_BODY: u64 = 32 * 1024 * 1024;

/// A running gateway; stops (and its thread ends) on drop.
#[derive(Debug)]
pub struct Gateway {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// Binds a free port on 127.0.0.1 and serves in front of `upstream` (`host:port`).
    ///
    /// # Errors
    /// The port cannot be bound or the runtime cannot be built.
    pub fn start(upstream: &str) -> std::io::Result<Gateway> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let upstream = upstream.to_string();
        let thread = std::thread::Builder::new()
            .name("moto-gateway".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let serving =
                        accept_each(listener, move |stream| serve(stream, upstream.clone()));
                    tokio::select! {
                        () = serving => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Gateway {
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Gateway {
    /// Stops accepting, drops every open connection and waits for the thread.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(mut client: TcpStream, upstream: String) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_request(&mut client, &mut buf).await {
        let close = request.wants_close();
        let response = match rpc_v2_cbor(&request) {
            Some(Ok(call)) => call.answer(forward(&upstream, &call.request).await),
            Some(Err(why)) => cbor_error(400, "SerializationException", &why),
            None => forward(&upstream, &request).await,
        };
        let mut bytes = response.head_bytes(response.body.len(), close);
        bytes.extend_from_slice(&response.body);
        if client.write_all(&bytes).await.is_err() || close {
            return;
        }
    }
}

async fn forward(upstream: &str, request: &Request) -> Response {
    exchange_within(upstream, request)
        .await
        .unwrap_or_else(|why| bad_gateway("gateway", &why))
}

/// An RPC v2 CBOR call, as the JSON 1.0 request moto understands.
struct Translated {
    request: Request,
}

/// `None` when `request` is not RPC v2 CBOR; `Some(Err)` when it is but cannot be translated.
fn rpc_v2_cbor(request: &Request) -> Option<Result<Translated, String>> {
    if !request.is_rpc_v2_cbor() {
        return None;
    }
    let target = match request.path().split('/').collect::<Vec<_>>().as_slice() {
        ["", "service", service, "operation", operation]
            if !service.is_empty() && !operation.is_empty() =>
        {
            format!("{service}.{operation}")
        }
        _ => {
            return Some(Err(format!(
                "{} is not /service/{{Service}}/operation/{{Operation}}",
                request.path()
            )))
        }
    };
    let body = match body(request) {
        Ok(body) => body,
        Err(why) => return Some(Err(why)),
    };
    let json = if body.is_empty() {
        serde_json::json!({})
    } else {
        match cbor::to_json(&body) {
            Ok(json) => json,
            Err(why) => return Some(Err(why)),
        }
    };
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            ![
                "content-type",
                "content-encoding",
                "smithy-protocol",
                "accept",
                "x-amz-target",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        })
        .cloned()
        .collect();
    headers.push(("Content-Type".into(), "application/x-amz-json-1.0".into()));
    headers.push(("X-Amz-Target".into(), target));
    Some(Ok(Translated {
        request: Request {
            method: "POST".into(),
            target: "/".into(),
            version: request.version.clone(),
            headers,
            body: json.to_string().into_bytes(),
        },
    }))
}

/// The request's body, gunzipped if the client compressed it (the SDK gzips `PutMetricData`
/// bodies over 10 KB); at most [`MAX_BODY`] bytes once inflated.
fn body(request: &Request) -> Result<Vec<u8>, String> {
    match request.header("content-encoding") {
        None => Ok(request.body.clone()),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(request.body.as_slice())
                .take(MAX_BODY + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("the gzip body does not inflate: {e}"))?;
            if out.len() as u64 > MAX_BODY {
                return Err(format!("the body inflates past {MAX_BODY} bytes"));
            }
            Ok(out)
        }
        Some(other) => Err(format!("Content-Encoding {other:?} is not supported")),
    }
}

impl Translated {
    /// moto's JSON 1.0 answer as the CBOR answer the client expects.
    fn answer(&self, moto: Response) -> Response {
        let json = if moto.body.is_empty() {
            Ok(serde_json::json!({}))
        } else {
            serde_json::from_slice::<serde_json::Value>(&moto.body)
        };
        let mut headers = cbor_headers();
        for name in ["x-amzn-requestid", "x-amzn-query-error"] {
            if let Some(value) = moto.header(name) {
                headers.push((name.into(), value.into()));
            }
        }
        match json {
            Ok(json) => Response::new(moto.status, headers, cbor::from_json(&json)),
            Err(_) => {
                let text = String::from_utf8_lossy(&moto.body);
                let status = if moto.is_success() { 500 } else { moto.status };
                let message = format!(
                    "moto answered HTTP {} without JSON: {}",
                    moto.status,
                    text.chars().take(300).collect::<String>()
                );
                cbor_error(status, "InternalFailure", &message)
            }
        }
    }
}

fn cbor_headers() -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/cbor".into()),
        ("smithy-protocol".into(), "rpc-v2-cbor".into()),
    ]
}

/// An RPC v2 CBOR error answer: `__type` is `code`.
#[must_use]
pub(crate) fn cbor_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        cbor_headers(),
        cbor::from_json(&serde_json::json!({"__type": code, "message": message})),
    )
}
