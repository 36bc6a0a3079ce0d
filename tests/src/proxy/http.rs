//! HTTP/1.1 framing for the proxy and the gateway: reading a request or response (heads,
//! `Content-Length` and chunked bodies, bounded), forwarding one exchange upstream with a
//! timeout, and the helpers both fronts share.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
/// Largest request or response head the proxy accepts.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Largest body the proxy accepts.
pub(super) const MAX_BODY: usize = 32 * 1024 * 1024;
/// How long one exchange with moto may take before the proxy answers 502.
pub(super) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP/1.1 request as read from a client ([`read_request`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The protocol version, e.g. `HTTP/1.1`.
    pub version: String,
    /// The headers, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// An HTTP response to send to a client.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers that describe one connection, not the message.
pub(super) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

impl Request {
    /// The first header called `name` (any case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The path: the target without its query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether the request speaks the Smithy RPC v2 CBOR protocol (current CloudWatch clients).
    pub(crate) fn is_rpc_v2_cbor(&self) -> bool {
        self.header("smithy-protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("rpc-v2-cbor"))
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || self.version == "HTTP/1.0"
    }

    /// The request as sent to moto: same request line, headers and body; one connection per
    /// request (`Connection: close`) and the body framed by `Content-Length`.
    pub(super) fn to_upstream_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            if !hop_by_hop(name) {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        if !self.body.is_empty() || self.header("content-length").is_some() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The application name the SDK put in its user agent (`app/NAME`).
    pub(super) fn caller(&self) -> Option<String> {
        ["x-amz-user-agent", "user-agent"].iter().find_map(|h| {
            self.header(h)?
                .split_whitespace()
                .find_map(|token| token.strip_prefix("app/"))
                .map(str::to_string)
        })
    }
}

impl Response {
    pub(crate) fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        Self {
            status,
            reason: reason_phrase(status).to_string(),
            headers,
            body,
        }
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Status line and headers, with `Content-Length` announcing `declared` bytes.
    pub(crate) fn head_bytes(&self, declared: usize, close: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        for (name, value) in &self.headers {
            if !hop_by_hop(name) {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(format!("Content-Length: {declared}\r\n").as_bytes());
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    pub(super) fn set_json_body(&mut self, value: &serde_json::Value) {
        self.body = value.to_string().into_bytes();
    }
}

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub(super) fn bad_data(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads more bytes into `buf`; `Ok(false)` at end of stream.
pub(super) async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one message head (up to and including the blank line) from `buf` + `stream`.
/// `Ok(None)` when the stream ends cleanly before a new message starts.
pub(super) async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..pos + 4).collect();
            return String::from_utf8(head)
                .map(Some)
                .map_err(|_| bad_data("message head is not UTF-8"));
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_data("message head too large"));
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Status or request line, then headers.
pub(super) fn parse_head(head: &str) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_data(format!("malformed header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((first, headers))
}

/// How a message body is framed.
pub(super) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Empty,
}

pub(super) fn framing(headers: &[(String, String)], is_request: bool) -> std::io::Result<Framing> {
    if header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Framing::Chunked);
    }
    match header(headers, "content-length") {
        Some(v) => {
            let n: usize = v
                .parse()
                .map_err(|_| bad_data(format!("bad Content-Length {v:?}")))?;
            if n > MAX_BODY {
                return Err(bad_data("body too large"));
            }
            Ok(Framing::Length(n))
        }
        None if is_request => Ok(Framing::Empty),
        None => Ok(Framing::UntilClose),
    }
}

pub(super) async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    framing: Framing,
) -> std::io::Result<Vec<u8>> {
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            while buf.len() < n {
                if !fill(stream, buf).await? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Ok(buf.drain(..n).collect())
        }
        Framing::UntilClose => {
            while fill(stream, buf).await? {
                if buf.len() > MAX_BODY {
                    return Err(bad_data("body too large"));
                }
            }
            Ok(std::mem::take(buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(stream, buf).await?;
                let size_text = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| bad_data(format!("bad chunk size {size_text:?}")))?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    while !read_line(stream, buf).await?.is_empty() {}
                    return Ok(body);
                }
                if body.len() + size > MAX_BODY {
                    return Err(bad_data("body too large"));
                }
                while buf.len() < size + 2 {
                    if !fill(stream, buf).await? {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
            }
        }
    }
}

pub(super) async fn read_line(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<String> {
    loop {
        if let Some(pos) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..pos + 2).collect();
            return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_data("line too long"));
        }
        if !fill(stream, buf).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reads one request from `stream` (bytes already read but not used are in `buf`, and what is
/// read past this request stays there); `None` when the client closed first.
///
/// # Errors
/// A malformed or oversized request, or a failed read.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let Some(head) = read_head(stream, buf).await? else {
        return Ok(None);
    };
    let (line, headers) = parse_head(&head)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_data(format!("malformed request line {line:?}")));
    };
    let body = read_body(stream, buf, framing(&headers, true)?).await?;
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        body,
    }))
}

/// Accepts connections for ever, serving each on its own task (dropped with the caller's task).
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// [`exchange`] within [`UPSTREAM_TIMEOUT`]; `Err` says why there is no answer.
pub(crate) async fn exchange_within(upstream: &str, request: &Request) -> Result<Response, String> {
    match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange(upstream, request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("moto did not answer in time".to_string()),
    }
}

/// The `502` that `who` (the proxy, the gateway) answers when moto gave no answer.
pub(crate) fn bad_gateway(who: &str, why: &str) -> Response {
    Response::new(
        502,
        vec![("Content-Type".into(), "text/plain".into())],
        format!("{who}: {why}").into_bytes(),
    )
}

/// Sends `request` to moto on a new connection and reads the whole answer.
async fn exchange(upstream: &str, request: &Request) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&request.to_upstream_bytes()).await?;
    let mut buf = Vec::new();
    let head = read_head(&mut stream, &mut buf)
        .await?
        .ok_or_else(|| bad_data("moto closed the connection without answering"))?;
    let (line, headers) = parse_head(&head)?;
    let mut parts = line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_data(format!("malformed status line {line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let no_body = request.method == "HEAD" || status < 200 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else {
        read_body(&mut stream, &mut buf, framing(&headers, false)?).await?
    };
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` pairs.
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}
