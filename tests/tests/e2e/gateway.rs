//! The CloudWatch gateway in front of moto (`lambda_canary_tests::gateway`): the current SDK
//! client, which speaks only RPC v2 CBOR, against moto's JSON 1.0; and the CBOR ↔ JSON codec
//! on its own.

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use lambda_canary_tests::{cbor, Moto};
use serde_json::json;

/// The `FunctionName` dimension of `function`.
fn of(function: &str) -> Dimension {
    Dimension::builder()
        .name("FunctionName")
        .value(function)
        .build()
}

fn query(id: &str, function: &str, stat: &str) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace("AWS/Lambda")
        .metric_name("Duration")
        .dimensions(of(function))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(60)
                .stat(stat)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn the_current_cloudwatch_client_writes_and_reads_moto_through_the_gateway() {
    let moto = Moto::start();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    let minute = 1_790_000_040; // a whole minute
    let datum = |function: &str, second: i64, values: Vec<f64>, counts: Vec<f64>| {
        MetricDatum::builder()
            .metric_name("Duration")
            .dimensions(of(function))
            .timestamp(DateTime::from_secs_f64(
                minute as f64 + second as f64 + 0.25,
            ))
            .set_values(Some(values))
            .set_counts(Some(counts))
            .unit(StandardUnit::Milliseconds)
            .build()
    };
    // Small (sent as is) and over 10 KB (the SDK gzips it).
    cloudwatch
        .put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(datum("small", 1, vec![10.0, 30.5], vec![1.0, 2.0]))
        .metric_data(datum("small", 61, vec![7.0], vec![1.0]))
        .send()
        .await
        .expect("put a small body");
    let mut big = cloudwatch.put_metric_data().namespace("AWS/Lambda");
    for i in 0..300 {
        big = big.metric_data(datum("big", i % 60, vec![2.0], vec![1.0]));
    }
    big.send().await.expect("put a gzipped body");

    let out = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(minute - 60))
        .end_time(DateTime::from_secs(minute + 180))
        .metric_data_queries(query("s", "small", "Sum"))
        .metric_data_queries(query("b", "big", "SampleCount"))
        .send()
        .await
        .expect("get metric data");
    let results = out.metric_data_results();
    let small = results.iter().find(|r| r.id() == Some("s")).expect("s");
    let mut points: Vec<(i64, f64)> = small
        .timestamps()
        .iter()
        .map(|t| t.secs())
        .zip(small.values().iter().copied())
        .collect();
    points.sort_by_key(|p| p.0);
    assert_eq!(points, [(minute, 71.0), (minute + 60, 7.0)], "{small:?}");
    let big = results.iter().find(|r| r.id() == Some("b")).expect("b");
    assert_eq!(big.values(), [300.0], "{big:?}");
    assert_eq!(
        big.timestamps()
            .iter()
            .map(DateTime::secs)
            .collect::<Vec<_>>(),
        [minute]
    );
}

#[tokio::test]
async fn moto_s_errors_reach_the_client_as_cloudwatch_errors() {
    let moto = Moto::start();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    // A query without MetricStat or Expression: moto's ValidationError, with the query error
    // code CloudWatch's query-compatible errors carry.
    let err = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(1_790_000_000))
        .end_time(DateTime::from_secs(1_790_000_600))
        .metric_data_queries(MetricDataQuery::builder().id("q").build())
        .send()
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("ValidationError"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("MetricStat"),
        "{err:?}"
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    // A percentile, which moto does not compute: its HTML 500, as a CBOR error naming moto.
    cloudwatch
        .put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(
            MetricDatum::builder()
                .metric_name("Duration")
                .dimensions(of("f"))
                .timestamp(DateTime::from_secs(1_790_000_100))
                .value(12.0)
                .build(),
        )
        .send()
        .await
        .expect("put");
    let err = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(1_790_000_000))
        .end_time(DateTime::from_secs(1_790_000_600))
        .metric_data_queries(query("p", "f", "p99"))
        .send()
        .await
        .expect_err("moto fails");
    assert_eq!(err.code(), Some("InternalFailure"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("moto answered HTTP 500"),
        "{err:?}"
    );
}

#[test]
fn cbor_and_json_round_trip_with_timestamps_and_doubles_typed_by_member() {
    let doc = json!({
        "MetricDataResults": [{
            "Id": "q",
            "Timestamps": [1_790_000_040, 1_790_000_100.5],
            "Values": [5, 0.5],
            "StatusCode": "Complete",
        }],
        "Count": 3,
        "Ok": true,
        "Nothing": null,
    });
    let bytes = cbor::from_json(&doc);
    // Timestamps are tag 1 (0xc1) and Values are floats, as the SDK's decoder reads them.
    let mut d = minicbor::Decoder::new(&bytes);
    let mut tags = 0;
    let mut floats = 0;
    for token in d.tokens() {
        match token.expect("well-formed") {
            minicbor::data::Token::Tag(t) => {
                assert_eq!(t.as_u64(), 1);
                tags += 1;
            }
            minicbor::data::Token::F64(_) => floats += 1,
            _ => {}
        }
    }
    assert_eq!((tags, floats), (2, 3), "two timestamps; 5.0, 0.5 and 100.5");
    let back = cbor::to_json(&bytes).expect("decodes");
    assert_eq!(back["MetricDataResults"][0]["Timestamps"][0], 1_790_000_040);
    assert_eq!(back["MetricDataResults"][0]["Values"][0], 5.0);
    assert_eq!(back["Count"], 3);
    assert_eq!(back["Ok"], true);
    assert_eq!(back["Nothing"], serde_json::Value::Null);
}

#[test]
fn indefinite_lengths_are_read_and_what_json_cannot_hold_is_refused() {
    // {_ "a": [_ 1, "x"], "b": (_ "he", "llo")} with indefinite map, array and text.
    let indefinite = [
        0xbf, 0x61, b'a', 0x9f, 0x01, 0x61, b'x', 0xff, 0x61, b'b', 0x7f, 0x62, b'h', b'e', 0x63,
        b'l', b'l', b'o', 0xff, 0xff,
    ];
    assert_eq!(
        cbor::to_json(&indefinite).expect("decodes"),
        json!({"a": [1, "x"], "b": "hello"})
    );
    let refused = |bytes: &[u8], why: &str| {
        let err = cbor::to_json(bytes).expect_err(why);
        assert!(err.contains(why), "{err}");
    };
    refused(&[0x43, 1, 2, 3], "no JSON 1.0 form"); // a byte string
    refused(&[0xc2, 0x41, 1], "tag 2"); // a bignum
    refused(&[0xa1, 0x01, 0x02], "not text"); // {1: 2}
    refused(&[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], "non-finite"); // NaN
    refused(&[0x01, 0x02], "trailing"); // two documents
    refused(&[0x82, 0x01], "malformed"); // an array cut short
    refused(&[0x81; 100], "deeper than"); // 100 nested arrays
}
