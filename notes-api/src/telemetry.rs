//! Logging: a JSON `tracing` subscriber and the one structured line logged per request.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// What is logged about one request (never the caller's identity, only whether there was one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLog<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Status answered; `None` if the invocation failed (`NOTES_FAULT=crash`).
    pub status: Option<u16>,
    /// Time spent in the handler, milliseconds.
    pub latency_ms: f64,
    /// Whether the request carried a Cognito identity.
    pub user_present: bool,
    /// Lambda function name.
    pub function: &'a str,
    /// Lambda function version.
    pub version: &'a str,
    /// Lambda (or API Gateway) request id.
    pub request_id: &'a str,
    /// Internal error detail (5xx and crashes only).
    pub error: Option<&'a str>,
}

/// Emits the request's log line: `info` for answers below 500, `error` otherwise.
pub fn log_request(r: &RequestLog<'_>) {
    let status = r.status.map_or(502, u64::from);
    let user_present = if r.user_present { "yes" } else { "no" };
    if r.status.is_some_and(|s| s < 500) {
        tracing::info!(
            method = r.method,
            path = r.path,
            status,
            latency_ms = r.latency_ms,
            user_present,
            function = r.function,
            version = r.version,
            request_id = r.request_id,
            "request"
        );
    } else {
        tracing::error!(
            method = r.method,
            path = r.path,
            status,
            latency_ms = r.latency_ms,
            user_present,
            function = r.function,
            version = r.version,
            request_id = r.request_id,
            error = r.error.unwrap_or("unknown"),
            invocation_failed = r.status.is_none(),
            "request"
        );
    }
}

/// Builds the JSON subscriber writing to `writer`: one flat JSON object per line, level from
/// `RUST_LOG` (default `info`).
pub fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs the JSON subscriber on stdout as the global default (ignored if one is already set).
pub fn init() {
    crate::metrics::mark_process_start();
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(r: &RequestLog<'_>) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let out = buf.clone();
        tracing::subscriber::with_default(subscriber(move || buf.clone()), || log_request(r));
        let bytes = out.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn one_flat_json_line_per_request() {
        let lines = capture(&RequestLog {
            method: "POST",
            path: "/notes",
            status: Some(201),
            latency_ms: 3.25,
            user_present: true,
            function: "notes-create",
            version: "4",
            request_id: "abc",
            error: None,
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["method"], "POST");
        assert_eq!(l["path"], "/notes");
        assert_eq!(l["status"], 201);
        assert_eq!(l["latency_ms"], 3.25);
        assert_eq!(l["user_present"], "yes");
        assert_eq!(l["function"], "notes-create");
        assert_eq!(l["version"], "4");
        assert_eq!(l["request_id"], "abc");
        assert!(l.get("error").is_none());
    }

    #[test]
    fn failures_log_at_error_with_detail() {
        let lines = capture(&RequestLog {
            method: "GET",
            path: "/notes",
            status: None,
            latency_ms: 1.0,
            user_present: false,
            function: "notes-list",
            version: "$LATEST",
            request_id: "r",
            error: Some("boom"),
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["status"], 502);
        assert_eq!(lines[0]["invocation_failed"], true);
        assert_eq!(lines[0]["user_present"], "no");
        assert_eq!(lines[0]["error"], "boom");
    }
}
