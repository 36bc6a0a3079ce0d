//! Race and fault campaigns (`lambda_canary_tests::campaign`): two agents and a person at
//! once, through the proxy that enforces `RevisionId` and SNS's subject rules and injects faults.
//! Bounded and seeded; the long version is `cargo run -p lambda-canary-tests --bin campaign`.

use std::time::Duration;

use lambda_canary_tests::campaign::{run, CampaignConfig, Report};
use lambda_canary_tests::proxy::{FaultKind, FaultRates};

/// What must hold after any campaign: listed together so one run shows every failure.
fn problems(report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, n) in [
        ("violations", report.violations_total()),
        ("lost pages (unfiltered queue)", report.pages_lost),
        (
            "lost pages (queue filtered on event)",
            report.pages_lost_filtered,
        ),
        ("panics", report.panics),
        ("hangs", report.hangs),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    problems
}

fn short(config: CampaignConfig) -> CampaignConfig {
    CampaignConfig {
        delay: (Duration::from_millis(20), Duration::from_millis(150)),
        hang_after: Duration::from_secs(60),
        ..config
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_between_two_agents_and_a_person_leave_consistent_aliases_and_every_page() {
    let config = short(CampaignConfig {
        faults: FaultRates::NONE,
        ..CampaignConfig::new(15, 11)
    });
    let report = run(&config).await;
    let table = report.markdown();
    assert_eq!(report.rounds, 15);
    assert!(
        report.rollbacks > 0,
        "the campaign rolled something back\n{table}"
    );
    assert!(
        report.proxy.precondition_failed > 0,
        "agents raced\n{table}"
    );
    assert_eq!(report.proxy.total_faults(), 0, "{table}");
    assert_eq!(problems(&report), Vec::<String>::new(), "\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_every_service_leave_consistent_aliases_and_every_page() {
    let config = short(CampaignConfig::new(25, 5));
    let report = run(&config).await;
    let table = report.markdown();
    assert_eq!(report.rounds, 25);
    assert!(
        report.rollbacks > 0,
        "the campaign rolled something back\n{table}"
    );
    for kind in FaultKind::ALL {
        assert!(
            report.proxy.faults_of(kind) > 0,
            "no {kind:?} injected\n{table}"
        );
    }
    assert!(report.proxy.precondition_failed > 0, "{table}");
    assert_eq!(problems(&report), Vec::<String>::new(), "\n{table}");
}
