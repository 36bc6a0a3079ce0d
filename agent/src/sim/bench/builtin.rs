//! The built-in benchmark: the scenarios and judges `canary bench` runs without `--scenarios`
//! (the table of BENCHMARKS.md).

use super::{default_policy, Footing, Judge, Peer, Scenario};
use crate::policy::{MetricsSource, Policy};
use crate::sim::traffic::{Build, Traffic};
use std::time::Duration;

/// The built-in scenarios, in order: the baseline is always [`Build::healthy`], a run lasts an hour.
#[must_use]
pub fn scenarios() -> Vec<Scenario> {
    let h = Build::healthy();
    let t = Traffic::steady(10.0);
    let noisy = Traffic {
        error_noise: 0.8,
        burst_chance: 0.05,
        burst_error_rate: 0.02,
        rate_noise: 0.3,
        ..t.clone()
    };
    let failing = Build {
        error_rate: 1.0,
        ..h
    };
    let with = |name: &str, candidate: Build, traffic: &Traffic, bad: bool| Scenario {
        name: name.to_string(),
        bad,
        minutes: 60,
        traffic: traffic.clone(),
        stable: h,
        candidate,
        latency_history: true,
    };
    let errors = |rate: f64| Build {
        error_rate: rate,
        ..h
    };
    let slower = |factor: f64| Build {
        latency_median_ms: factor * h.latency_median_ms,
        ..h
    };
    vec![
        with("fails every request", failing, &t, true),
        with("5% 5xx", errors(0.05), &t, true),
        with("1% 5xx", errors(0.01), &t, true),
        with("2x latency", slower(2.0), &t, true),
        with("+30% latency", slower(1.3), &t, true),
        with("healthy", h, &t, false),
        with("healthy, noisy baseline", h, &noisy, false),
        with("healthy, 0.5 req/s", h, &Traffic::steady(0.5), false),
        with(
            "fails every request, 0.5 req/s",
            failing,
            &Traffic::steady(0.5),
            true,
        ),
    ]
}

/// The contenders of the built-in table: the defaults, the peers, the floor-lowering variants
/// (a 2% probe step; 10 s EMF metrics), and each shipped policy.
#[must_use]
pub fn judges(shipped: &[Policy]) -> Vec<Judge> {
    let base = default_policy();
    let mut probe = base.clone();
    probe.steps = vec![2.0, 10.0, 25.0, 50.0, 100.0];
    probe.min_requests = 20;
    probe.step_interval = Duration::from_secs(60);
    let mut emf = probe.clone();
    emf.metrics = MetricsSource::Emf {
        namespace: "NotesApi".to_string(),
        period: Duration::from_secs(10),
    };
    let mut out = vec![
        Judge::ours(
            "lambda-canary (defaults: 10/25/50/100, 5m, 60 s Lambda metrics)".to_string(),
            base,
        ),
        Judge::Peer(Peer::CodeDeploy, Footing::Documented),
        Judge::Peer(Peer::Flagger, Footing::Documented),
        Judge::Peer(Peer::Kayenta, Footing::Documented),
        Judge::ours(
            "lambda-canary + 2% probe step, 1m interval".to_string(),
            probe,
        ),
        Judge::ours(
            "lambda-canary + probe + 10 s EMF metrics, 10 s ticks".to_string(),
            emf,
        ),
    ];
    for p in shipped {
        out.push(Judge::ours(
            format!("lambda-canary, {}", p.source.display()),
            p.clone(),
        ));
    }
    out
}
