//! CloudWatch Embedded Metric Format (EMF): one record per request, printed to stdout as a single
//! JSON line; CloudWatch Logs turns it into metrics in namespace [`NAMESPACE`].

use serde_json::{json, Value};

/// CloudWatch namespace of the notes API's own metrics.
pub const NAMESPACE: &str = "NotesApi";

/// What one request contributes to the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestMetrics<'a> {
    /// Lambda function name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: &'a str,
    /// Lambda function version (`AWS_LAMBDA_FUNCTION_VERSION`), e.g. `7` or `$LATEST`.
    pub version: &'a str,
    /// HTTP status answered.
    pub status: u16,
    /// Time spent in the handler, milliseconds; for a cold start, from the process start
    /// (initialisation included, [`cold_start_ms`]).
    pub latency_ms: f64,
    /// When the request finished, epoch milliseconds.
    pub timestamp_ms: u64,
    /// The first request of its execution environment (a cold start).
    pub cold: bool,
}

/// When the process started, as marked by [`mark_process_start`].
static PROCESS_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Marks the process start (the first thing `main` does, through `telemetry::init`): a cold
/// start's `ColdLatency` counts from here, so it includes the environment's initialisation
/// (configuration, SDK clients), which the handler's own clock never sees.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(std::time::Instant::now);
}

/// What a cold start cost the request that waited for it, in milliseconds: the time since the
/// process started (initialisation plus the first request), or the handler time alone if the
/// start was never marked.
#[must_use]
pub fn cold_start_ms(handler_ms: f64) -> f64 {
    PROCESS_START.get().map_or(handler_ms, |t| {
        (t.elapsed().as_secs_f64() * 1000.0).max(handler_ms)
    })
}

/// Whether this is the first request the process handles (a Lambda cold start): true once per
/// execution environment.
pub fn first_request() -> bool {
    static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    !SEEN.swap(true, std::sync::atomic::Ordering::Relaxed)
}

/// Builds the EMF record for one request: metrics `Requests` (Count, 1), `4xx` and `5xx`
/// (Count, 0 or 1), and the time (Milliseconds) as `Latency` for a warm request (handler time)
/// or `ColdLatency` for the first request of an execution environment (initialisation plus the
/// request, [`cold_start_ms`]), all high-resolution
/// (`StorageResolution: 1`), with dimension sets `[FunctionName, Version]` and `[FunctionName]`.
/// Keeping cold starts out of `Latency` lets the canary judge compare warm latency, unmoved by
/// the new environments every weight increase brings; `ColdLatency` keeps init visible.
#[must_use]
pub fn emf_record(m: &RequestMetrics<'_>) -> Value {
    let metric =
        |name: &str, unit: &str| json!({ "Name": name, "Unit": unit, "StorageResolution": 1 });
    let latency = if m.cold { "ColdLatency" } else { "Latency" };
    let mut record = json!({
        "_aws": {
            "Timestamp": m.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName", "Version"], ["FunctionName"]],
                "Metrics": [
                    metric("Requests", "Count"),
                    metric("4xx", "Count"),
                    metric("5xx", "Count"),
                    metric(latency, "Milliseconds"),
                ],
            }],
        },
        "FunctionName": m.function_name,
        "Version": m.version,
        "Requests": 1,
        "4xx": u8::from((400..500).contains(&m.status)),
        "5xx": u8::from(m.status >= 500),
        "StatusCode": m.status,
        "ColdStart": m.cold,
    });
    record[latency] = json!(m.latency_ms);
    record
}

/// The EMF record as the single line to print.
#[must_use]
pub fn emf_line(m: &RequestMetrics<'_>) -> String {
    emf_record(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: u16) -> RequestMetrics<'static> {
        RequestMetrics {
            function_name: "notes-create",
            version: "7",
            status,
            latency_ms: 12.5,
            timestamp_ms: 1_700_000_000_000,
            cold: false,
        }
    }

    #[test]
    fn a_cold_start_reports_its_time_as_cold_latency_not_latency() {
        let v = emf_record(&RequestMetrics {
            cold: true,
            ..sample(200)
        });
        let names: Vec<_> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| m["Name"].clone())
            .collect();
        assert!(names.contains(&json!("ColdLatency")), "{names:?}");
        assert!(!names.contains(&json!("Latency")), "{names:?}");
        assert_eq!(v["ColdLatency"], 12.5);
        assert!(v.get("Latency").is_none());
        assert_eq!(v["ColdStart"], true);
        assert_eq!(v["Requests"], 1);
    }

    #[test]
    fn only_the_first_request_of_the_process_is_cold() {
        let first = first_request();
        assert!(!first_request());
        assert!(!first_request());
        // Tests share the process, so only the first caller anywhere sees `true`.
        let _ = first;
    }

    #[test]
    fn record_declares_namespace_dimensions_and_high_resolution_metrics() {
        let v = emf_record(&sample(201));
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        assert_eq!(decl["Namespace"], "NotesApi");
        assert_eq!(
            decl["Dimensions"],
            json!([["FunctionName", "Version"], ["FunctionName"]])
        );
        let metrics = decl["Metrics"].as_array().expect("metrics");
        let names: Vec<_> = metrics.iter().map(|m| m["Name"].clone()).collect();
        assert_eq!(
            names,
            vec![
                json!("Requests"),
                json!("4xx"),
                json!("5xx"),
                json!("Latency")
            ]
        );
        for m in metrics {
            assert_eq!(m["StorageResolution"], 1);
            // Every declared metric and dimension has a value at the top level.
            assert!(v.get(m["Name"].as_str().expect("name")).is_some());
        }
        assert_eq!(metrics[3]["Unit"], "Milliseconds");
        assert_eq!(metrics[0]["Unit"], "Count");
        assert_eq!(v["FunctionName"], "notes-create");
        assert_eq!(v["Version"], "7");
        assert_eq!(v["Requests"], 1);
        assert_eq!(v["Latency"], 12.5);
    }

    #[test]
    fn status_classes_are_counted() {
        let ok = emf_record(&sample(200));
        assert_eq!((ok["4xx"].clone(), ok["5xx"].clone()), (json!(0), json!(0)));
        let bad = emf_record(&sample(404));
        assert_eq!(
            (bad["4xx"].clone(), bad["5xx"].clone()),
            (json!(1), json!(0))
        );
        let err = emf_record(&sample(500));
        assert_eq!(
            (err["4xx"].clone(), err["5xx"].clone()),
            (json!(0), json!(1))
        );
    }

    #[test]
    fn line_is_a_single_json_line() {
        let line = emf_line(&sample(200));
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(back, emf_record(&sample(200)));
    }

    #[test]
    fn a_cold_start_counts_from_the_process_start() {
        mark_process_start();
        std::thread::sleep(std::time::Duration::from_millis(30));
        // Initialisation (30 ms and more) plus a 5 ms request: at least the time since start.
        let cold = cold_start_ms(5.0);
        assert!(cold >= 30.0, "{cold}");
        // Never less than the handler's own time.
        assert!(cold_start_ms(1e9) >= 1e9);
    }
}
