//! A release of two functions against moto: canaried as one, rolled back as one with one page
//! when one member fails, and its fix (one member redeployed) promoted as one, unattended.

use super::{action, one_message, tick_all, World, FAILING_CANARY, HEALTHY_CANARY};
use canary_agent::rollout::Action;

const CREATE: &str = "notes-create";
const GET: &str = "notes-get";

#[tokio::test]
async fn a_release_of_two_functions_is_rolled_back_as_one_with_one_page_and_its_fix_ships_as_one() {
    let w = World::new().await;
    w.create_function(CREATE).await;
    w.create_function(GET).await;
    let extra = "release: notes-api\nbake: 0s\n";
    let policies = [
        w.policy(CREATE, "[10, 50, 100]", extra),
        w.policy(GET, "[10, 50, 100]", extra),
    ];
    let agent = w.agent();
    let t0 = super::an_hour_ago();

    // One `sam deploy` changes both: v2 of each behind `candidate`.
    assert_eq!((w.release(CREATE).await, w.release(GET).await), (2, 2));
    let outs = tick_all(&agent, &policies, t0 + 5).await;
    assert!(outs
        .iter()
        .all(|o| matches!(action(o), Action::Start { version: 2, .. })));
    let started = one_message(&w).await;
    assert_eq!(
        started.subject,
        "Release notes-api: canary started (2 functions)"
    );
    assert!(
        started
            .message
            .contains("notes-create v2 at 10%; notes-get v2 at 10%"),
        "{}",
        started.message
    );

    // get's v2 fails every request; create's is healthy. Both go back, with one page.
    w.traffic(CREATE, 1, 2, t0 + 60, HEALTHY_CANARY).await;
    w.traffic(GET, 1, 2, t0 + 60, FAILING_CANARY).await;
    let outs = tick_all(&agent, &policies, t0 + 90).await;
    for o in &outs {
        assert!(
            matches!(
                action(o),
                Action::Rollback {
                    to: 1,
                    rejected: Some(2),
                    ..
                }
            ),
            "{}",
            o.line()
        );
    }
    for f in [CREATE, GET] {
        let live = w.live(f).await;
        assert_eq!(live.stable, "1", "{f}");
        assert!(live.weights.is_empty(), "{f}: {:?}", live.weights);
        assert!(live.record.owed.is_empty(), "{f}: {:?}", live.record.owed);
    }
    let create = w.live(CREATE).await.record.release.expect("release mark");
    assert!(create.rolled_back && create.follower, "{create:?}");
    let page = one_message(&w).await;
    assert!(
        page.subject
            .starts_with("ROLLED BACK release notes-api: notes-get v2 -> v1: 5xx 100%"),
        "names the member and its numbers: {}",
        page.subject
    );
    assert!(
        page.message.contains("notes-create v2 -> v1")
            && page.message.contains("notes-get v2 -> v1"),
        "{}",
        page.message
    );
    assert_eq!(
        page.attributes.get("release").map(String::as_str),
        Some("notes-api")
    );

    // The fix redeploys get only; create's v2, rolled back only because of get, ships with it.
    assert_eq!(w.release(GET).await, 3);
    let outs = tick_all(&agent, &policies, t0 + 150).await;
    let versions: Vec<_> = outs
        .iter()
        .map(|o| match action(o) {
            Action::Start { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [Some(2), Some(3)]);
    one_message(&w).await;
    let mut now = t0 + 150;
    let mut promoted = false;
    for minute in 1..=8 {
        let at = t0 + 120 + 60 * minute;
        w.traffic(CREATE, 1, 2, at, HEALTHY_CANARY).await;
        w.traffic(GET, 1, 3, at, HEALTHY_CANARY).await;
        now = at + 30;
        let outs = tick_all(&agent, &policies, now).await;
        let kinds: Vec<bool> = outs
            .iter()
            .map(|o| matches!(action(o), Action::Promote { .. }))
            .collect();
        assert!(
            kinds == [false, false] || kinds == [true, true],
            "together: {kinds:?}"
        );
        if kinds == [true, true] {
            promoted = true;
            break;
        }
    }
    assert!(promoted, "not promoted by {now}");
    assert_eq!(
        (w.live(CREATE).await.stable, w.live(GET).await.stable),
        ("2".to_string(), "3".to_string())
    );
    let messages = w.inbox.drain().await;
    let promotions: Vec<&str> = messages
        .iter()
        .map(|m| m.subject.as_str())
        .filter(|s| s.contains("promoted"))
        .collect();
    assert_eq!(
        promotions,
        ["Release notes-api: promoted to 100% (2 functions)"],
        "{:?}",
        messages.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn release_commands_and_canary_wait_release_act_on_every_member_with_one_page() {
    let w = World::new().await;
    w.create_function(CREATE).await;
    w.create_function(GET).await;
    let extra = "release: notes-api\nbake: 0s\n";
    w.policy(CREATE, "[10, 50, 100]", extra);
    w.policy(GET, "[10, 50, 100]", extra);
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(1500));

    // Promoted while waiting, by people's release commands.
    w.release(CREATE).await;
    w.release(GET).await;
    let (waited, ()) = tokio::join!(
        w.canary(&[
            "wait",
            "--release",
            "notes-api",
            "--timeout",
            "60s",
            "--interval",
            "1s"
        ]),
        async {
            pause().await;
            w.canary(&["start", "--release", "notes-api"])
                .await
                .expect("start");
            w.canary(&["status", "--release", "notes-api"])
                .await
                .expect("status");
            pause().await;
            w.canary(&["promote", "--release", "notes-api", "--full"])
                .await
                .expect("promote");
        }
    );
    waited.expect("every member promoted: exit 0");
    let messages = w.inbox.drain().await;
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "Release notes-api: canary started (2 functions)",
            "Release notes-api: promoted to 100% (2 functions)"
        ]
    );

    // Rolled back while waiting: exit 1, one page, both back on v2.
    w.release(CREATE).await;
    w.release(GET).await;
    let (waited, ()) = tokio::join!(
        w.canary(&[
            "wait",
            "--release",
            "notes-api",
            "--timeout",
            "60s",
            "--interval",
            "1s"
        ]),
        async {
            pause().await;
            w.canary(&["start", "--release", "notes-api"])
                .await
                .expect("start");
            pause().await;
            w.canary(&[
                "rollback",
                "--release",
                "notes-api",
                "--reason",
                "bad build",
            ])
            .await
            .expect("rollback");
        }
    );
    let err = waited.expect_err("rolled back");
    assert_eq!(err.exit_code(), 1, "{err}");
    for f in [CREATE, GET] {
        let live = w.live(f).await;
        assert_eq!(
            (live.stable.as_str(), live.record.rejected),
            ("2", Some(3)),
            "{f}"
        );
    }
    let messages = w.inbox.drain().await;
    let rollbacks: Vec<&str> = messages
        .iter()
        .map(|m| m.subject.as_str())
        .filter(|s| s.starts_with("ROLLED BACK"))
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert!(
        rollbacks[0].starts_with("ROLLED BACK release notes-api: notes-create v3 -> v2: bad build"),
        "{}",
        rollbacks[0]
    );

    // Usage errors name what is wrong.
    let err = w
        .canary(&["rollback", "--release", "nope"])
        .await
        .expect_err("unknown release");
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("releases there: notes-api"),
        "{err}"
    );
    let err = w
        .canary(&["promote", "--release", "notes-api"])
        .await
        .expect_err("nothing under way");
    assert_eq!(err.exit_code(), 2, "{err}");
}
