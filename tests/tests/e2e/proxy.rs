//! The fault proxy (`lambda_canary_tests::proxy`) in front of moto: what moto does with
//! `RevisionId`, and what the proxy enforces and injects, through the real SDK clients.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use lambda_canary_tests::campaign::Lab;
use lambda_canary_tests::proxy::{
    check_subject, FaultKind, FaultRates, Proxy, ProxyConfig, Service, SubjectRule,
    SNS_MESSAGE_LIMIT,
};

const F: &str = "notes-create";

/// A lab with `F` (version 1, aliases `live` and `candidate`) and version 2 published.
async fn lab() -> Lab {
    let lab = Lab::start().await;
    lab.create_function(F).await;
    assert_eq!(lab.release(F).await, 2);
    lab
}

async fn proxy(lab: &Lab, config: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Proxy {
    Proxy::start(config(ProxyConfig::new(&lab.moto.endpoint, 7)))
        .await
        .expect("start the proxy")
}

/// SDK configuration through the proxy, with no retries (each fault reaches the caller).
async fn via(lab: &Lab, proxy: &Proxy, app: &str) -> aws_config::SdkConfig {
    lab.moto
        .sdk_config_via(proxy.endpoint(), Some(app), RetryConfig::disabled())
        .await
}

async fn revision(lambda: &aws_sdk_lambda::Client) -> String {
    lambda
        .get_alias()
        .function_name(F)
        .name("live")
        .send()
        .await
        .expect("get alias")
        .revision_id()
        .expect("a RevisionId")
        .to_string()
}

/// The `live` revision as `ListAliases` (the agent's read) answers it.
async fn listed_revision(lambda: &aws_sdk_lambda::Client) -> String {
    let listed = lambda
        .list_aliases()
        .function_name(F)
        .send()
        .await
        .expect("list aliases");
    listed
        .aliases()
        .iter()
        .find(|a| a.name() == Some("live"))
        .and_then(|a| a.revision_id())
        .expect("live with a RevisionId")
        .to_string()
}

fn update(
    lambda: &aws_sdk_lambda::Client,
    description: &str,
) -> aws_sdk_lambda::operation::update_alias::builders::UpdateAliasFluentBuilder {
    lambda
        .update_alias()
        .function_name(F)
        .name("live")
        .function_version("1")
        .description(description)
}

#[tokio::test]
async fn moto_keeps_an_alias_revision_id_for_life_and_ignores_it_on_update_alias() {
    let lab = lab().await;
    let before = revision(&lab.lambda).await;
    let updated = update(&lab.lambda, "one")
        .revision_id("not-the-revision")
        .send()
        .await
        .expect("moto does not check RevisionId");
    assert_eq!(updated.revision_id(), Some(before.as_str()));
    assert_eq!(revision(&lab.lambda).await, before, "moto never changes it");
    assert_eq!(lab.alias(F, "live").await.description, "one");
}

#[tokio::test]
async fn the_proxy_answers_a_stale_update_alias_with_precondition_failed_and_changes_nothing() {
    let lab = lab().await;
    let proxy = proxy(&lab, |c| c).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);

    let r1 = revision(&lambda).await;
    assert_ne!(r1, revision(&lab.lambda).await, "the proxy's own revision");
    assert_eq!(revision(&lambda).await, r1, "stable while nothing changes");
    let written = update(&lambda, "first")
        .revision_id(&r1)
        .send()
        .await
        .expect("a write with the current revision");
    let r2 = written.revision_id().expect("new revision").to_string();
    assert_ne!(r2, r1, "every write moves the revision");
    assert_eq!(revision(&lambda).await, r2);
    assert_eq!(
        listed_revision(&lambda).await,
        r2,
        "ListAliases agrees with GetAlias"
    );

    // A second writer that read r1 loses.
    let err = update(&lambda, "stale")
        .revision_id(&r1)
        .send()
        .await
        .expect_err("a stale revision");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_precondition_failed_exception()),
        "{err:?}"
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    assert_eq!(lab.alias(F, "live").await.description, "first");

    // A write around the proxy (straight to moto) also moves the revision.
    update(&lab.lambda, "around the proxy")
        .send()
        .await
        .expect("direct write");
    let err = update(&lambda, "stale again")
        .revision_id(&r2)
        .send()
        .await
        .expect_err("stale after a write the proxy did not see");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_precondition_failed_exception()),
        "{err:?}"
    );
    let r3 = listed_revision(&lambda).await;
    assert_ne!(r3, r2, "a list sees the write around the proxy too");
    assert_eq!(revision(&lambda).await, r3);
    // Without a RevisionId, a write is unconditional (as in Lambda).
    update(&lambda, "unconditional")
        .send()
        .await
        .expect("no RevisionId");
    assert_ne!(revision(&lambda).await, r3);

    let stats = proxy.stats();
    assert_eq!(stats.update_alias, 4);
    assert_eq!(stats.alias_writes, 2);
    assert_eq!(stats.precondition_failed, 2);
    let log = proxy.alias_writes();
    let descriptions: Vec<&str> = log.iter().map(|w| w.description.as_str()).collect();
    assert_eq!(descriptions, ["first", "unconditional"]);
    assert_eq!(log[0].caller.as_deref(), Some("tester"));
    assert_eq!(
        (log[0].function.as_str(), log[0].alias.as_str()),
        (F, "live")
    );
    assert_eq!(log[0].revision, r2);
}

#[tokio::test]
async fn the_proxy_logs_routing_and_version_of_every_applied_alias_write() {
    let lab = lab().await;
    let proxy = proxy(&lab, |c| c).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);
    let r = revision(&lambda).await;
    let weights = std::collections::HashMap::from([("2".to_string(), 0.1)]);
    update(&lambda, "canary")
        .revision_id(r)
        .routing_config(
            aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(weights))
                .build(),
        )
        .send()
        .await
        .expect("write");
    let log = proxy.alias_writes_since(0);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].function_version, "1");
    assert_eq!(log[0].weights.get("2"), Some(&0.1));
    assert_eq!(log[0].answer_fault, None);
    assert!(proxy.alias_writes_since(1).is_empty());
}

#[test]
fn subject_rules_follow_sns() {
    let ok = [
        "Canary started: f v2 at 10% (stable v1)",
        "(retry) x",
        "9 lives",
        &"a".repeat(99),
    ];
    for s in ok {
        assert_eq!(check_subject(s, SubjectRule::Ascii), Ok(()), "{s:?}");
        assert_eq!(check_subject(s, SubjectRule::Utf8), Ok(()), "{s:?}");
    }
    let bad_everywhere = ["", "two\nlines", "tab\there", &"a".repeat(100)];
    for s in bad_everywhere {
        assert!(check_subject(s, SubjectRule::Ascii).is_err(), "{s:?}");
        assert!(check_subject(s, SubjectRule::Utf8).is_err(), "{s:?}");
    }
    for s in ["ROLLED BACK f v3 → v2", " leading space", "ends with …"] {
        assert!(check_subject(s, SubjectRule::Ascii).is_err(), "{s:?}");
    }
    assert_eq!(
        check_subject("ROLLED BACK f v3 → v2", SubjectRule::Utf8),
        Ok(())
    );
    assert!(check_subject(&"é".repeat(100), SubjectRule::Utf8).is_err());
}

#[tokio::test]
async fn the_proxy_refuses_publish_subjects_that_sns_refuses() {
    let lab = lab().await;
    let proxy = proxy(&lab, |c| c).await;
    let sns = aws_sdk_sns::Client::new(&via(&lab, &proxy, "tester").await);
    let publish = |subject: String| {
        sns.publish()
            .topic_arn(&lab.topic_arn)
            .subject(subject)
            .message("body")
            .send()
    };
    publish("Canary started: notes-create v2 at 10%".into())
        .await
        .expect("a fine subject");
    for subject in [
        "line\nbreak".to_string(),
        "x".repeat(100),
        "ROLLED BACK notes-create v2 → v1".to_string(),
    ] {
        let err = publish(subject.clone()).await.expect_err(&subject);
        assert_eq!(err.code(), Some("InvalidParameter"), "{subject:?}: {err:?}");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    }
    let stats = proxy.stats();
    assert_eq!(stats.subject_rejected, 3);
    assert_eq!(stats.by_service.get(&Service::Sns), Some(&4));
    assert_eq!(proxy.rejected_subjects().len(), 3);
    assert!(proxy.rejected_subjects()[2]
        .why
        .contains("not printable ASCII"));

    // Under the UTF-8 rule the arrow passes.
    let utf8 = Proxy::start(ProxyConfig {
        subject_rule: SubjectRule::Utf8,
        ..ProxyConfig::new(&lab.moto.endpoint, 7)
    })
    .await
    .expect("start the proxy");
    aws_sdk_sns::Client::new(&via(&lab, &utf8, "tester").await)
        .publish()
        .topic_arn(&lab.topic_arn)
        .subject("ROLLED BACK notes-create v2 → v1")
        .message("body")
        .send()
        .await
        .expect("UTF-8 subject");
}

/// A proxy that injects only `kind`, always, on every service.
async fn always(lab: &Lab, kind: FaultKind) -> Proxy {
    proxy(lab, |c| {
        ProxyConfig {
            delay: (Duration::from_millis(300), Duration::from_millis(300)),
            ..c
        }
        .with_faults(FaultRates::only(kind, 1.0))
    })
    .await
}

fn status<E>(err: &SdkError<E, aws_sdk_lambda::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn the_proxy_answers_injected_errors_in_each_service_s_own_shape() {
    let lab = lab().await;
    for (kind, lambda_code, lambda_status, query_code, query_status) in [
        (
            FaultKind::Http500,
            "ServiceException",
            500,
            "InternalError",
            500,
        ),
        (
            FaultKind::Http503,
            "ServiceException",
            503,
            "ServiceUnavailable",
            503,
        ),
        (
            FaultKind::Throttle,
            "TooManyRequestsException",
            429,
            "Throttling",
            400,
        ),
    ] {
        let proxy = always(&lab, kind).await;
        let sdk = via(&lab, &proxy, "tester").await;
        let err = aws_sdk_lambda::Client::new(&sdk)
            .get_alias()
            .function_name(F)
            .name("live")
            .send()
            .await
            .expect_err("faulted");
        assert_eq!(err.code(), Some(lambda_code), "{kind:?}: {err:?}");
        assert_eq!(status(&err), Some(lambda_status), "{kind:?}");
        let err = aws_sdk_sns::Client::new(&sdk)
            .publish()
            .topic_arn(&lab.topic_arn)
            .message("m")
            .send()
            .await
            .expect_err("faulted");
        assert_eq!(err.code(), Some(query_code), "{kind:?}: {err:?}");
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(query_status)
        );
        let err = aws_sdk_cloudwatch::Client::new(&sdk)
            .list_metrics()
            .send()
            .await
            .expect_err("faulted");
        let cw_code = if kind == FaultKind::Http500 {
            "InternalServiceFault"
        } else {
            query_code
        };
        assert_eq!(err.code(), Some(cw_code), "{kind:?}: {err:?}");
        let err = aws_sdk_dynamodb::Client::new(&sdk)
            .list_tables()
            .send()
            .await
            .expect_err("faulted");
        let db_code = match kind {
            FaultKind::Http500 => "InternalServerError",
            FaultKind::Throttle => "ThrottlingException",
            _ => query_code,
        };
        assert_eq!(err.code(), Some(db_code), "{kind:?}: {err:?}");
        let stats = proxy.stats();
        assert_eq!(stats.faults_of(kind), 4, "{stats:?}");
        assert_eq!(stats.total_faults(), 4);
        for service in [
            Service::Lambda,
            Service::Sns,
            Service::Monitoring,
            Service::DynamoDb,
        ] {
            assert_eq!(stats.faults.get(&(service, kind)), Some(&1), "{service:?}");
        }
    }
}

#[tokio::test]
async fn a_reset_before_forwarding_changes_nothing_and_one_after_forwarding_applies_unheard() {
    let lab = lab().await;

    let proxy = always(&lab, FaultKind::ResetBefore).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);
    let err = update(&lambda, "never").send().await.expect_err("reset");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    assert_eq!(lab.alias(F, "live").await.description, "");
    assert!(proxy.alias_writes().is_empty());

    let proxy = always(&lab, FaultKind::ResetAfter).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);
    let err = update(&lambda, "applied").send().await.expect_err("reset");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    assert_eq!(lab.alias(F, "live").await.description, "applied");
    let log = proxy.alias_writes();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].answer_fault, Some(FaultKind::ResetAfter));
    assert_eq!(proxy.stats().faults_of(FaultKind::ResetAfter), 1);
}

#[tokio::test]
async fn a_truncated_answer_fails_the_call_after_moto_applied_it() {
    let lab = lab().await;
    let proxy = always(&lab, FaultKind::Truncate).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);
    let err = update(&lambda, "applied")
        .send()
        .await
        .expect_err("truncated");
    assert!(
        !matches!(err, SdkError::ServiceError(_)),
        "a broken answer, not a service error: {err:?}"
    );
    assert_eq!(lab.alias(F, "live").await.description, "applied");
    assert_eq!(
        proxy.alias_writes()[0].answer_fault,
        Some(FaultKind::Truncate)
    );
}

#[tokio::test]
async fn a_delayed_answer_arrives_late_and_faults_can_be_switched_off() {
    let lab = lab().await;
    let proxy = always(&lab, FaultKind::Delay).await;
    let lambda = aws_sdk_lambda::Client::new(&via(&lab, &proxy, "tester").await);
    let started = Instant::now();
    revision(&lambda).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.stats().faults_of(FaultKind::Delay), 1);

    proxy.set_faults(false);
    assert!(!proxy.faults_on());
    revision(&lambda).await;
    assert_eq!(proxy.stats().total_faults(), 1, "no fault while off");
    assert_eq!(proxy.stats().requests, 2);
}

// ---- The agent when its role may not write the alias ----

/// One tick of `agent` over `policy` at `now`.
async fn tick_via(
    agent: &lambda_canary_tests::campaign::AwsAgent,
    policy: &canary_agent::policy::Policy,
    now: i64,
) -> canary_agent::tick::Outcome {
    agent
        .tick(std::slice::from_ref(policy), now)
        .await
        .pop()
        .expect("one outcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_may_not_write_the_alias_pages_once_and_again_when_it_may() {
    use lambda_canary_tests::campaign::{agent, Minute, FAILING, HEALTHY};
    let lab = lab().await;
    let inbox = lambda_canary_tests::Inbox::subscribe(&lab.sdk, &lab.topic_arn, "on-call").await;
    let p = proxy(&lab, |c| c).await;
    let sdk = lab
        .moto
        .sdk_config_via(p.endpoint(), Some("denied-agent"), RetryConfig::standard())
        .await;
    let text = lambda_canary_tests::lambda_lab::policy_yaml(
        F,
        "[10, 50, 100]",
        &lab.topic_arn,
        "unprotected_after: 3m\n",
    );
    let policy = canary_agent::policy::parse_policy(std::path::Path::new("denied.yaml"), &text)
        .expect("valid policy");
    let a = agent(&sdk);
    let now = lambda_canary_tests::this_minute() - 1800;
    let series: [(u64, Minute); 2] = [(1, HEALTHY), (2, FAILING)];
    lab.put_minutes(F, &series, now - 60, 20).await;

    // The canary starts; then the role loses lambda:UpdateAlias while v2 fails every request.
    let started = tick_via(&a, &policy, now).await;
    assert!(started.wrote, "{started:?}");
    inbox.drain().await;
    p.set_alias_writes_denied(true);
    let mut pages = Vec::new();
    let mut first_denied = None;
    for k in 1..=7 {
        let out = tick_via(&a, &policy, now + 60 * k).await;
        assert!(!out.wrote, "tick {k}: {out:?}");
        if out.failed() {
            first_denied.get_or_insert(k);
            let error = out.error.clone().unwrap_or_default();
            assert!(error.contains("AccessDenied"), "tick {k}: {error}");
        } else {
            assert!(
                first_denied.is_none(),
                "tick {k}: the rollback is retried every tick"
            );
        }
        pages.extend(inbox.drain().await.into_iter().map(|d| (k, d)));
    }
    let first_denied = first_denied.expect("the agent tried to roll the failing canary back");
    assert!(first_denied <= 2, "rollback decided by tick {first_denied}");
    assert!(p.stats().denied >= 5, "{:?}", p.stats());
    let events: Vec<_> = pages
        .iter()
        .map(|(k, d)| (*k, d.attributes.get("event").cloned().unwrap_or_default()))
        .collect();
    // Paged once, when unprotected_after (3m) had passed since the first denied write.
    assert_eq!(
        events,
        [(first_denied + 3, "unprotected".to_string())],
        "{pages:#?}"
    );
    let page = &pages[0].1;
    assert!(
        page.subject
            .starts_with("CANARY UNPROTECTED: the agent cannot write notes-create:live for 3m"),
        "{}",
        page.subject
    );
    assert!(
        page.message.contains("v2 keeps 10% of live's traffic"),
        "{}",
        page.message
    );
    assert!(
        page.message
            .contains("not authorized to perform: lambda:UpdateAlias"),
        "{}",
        page.message
    );
    assert_eq!(
        page.attributes.get("canary_version").map(String::as_str),
        Some("2")
    );

    // The permission comes back: the rollback is written, and on-call hears both.
    p.set_alias_writes_denied(false);
    let back = tick_via(&a, &policy, now + 480).await;
    assert!(back.wrote && !back.failed(), "{back:?}");
    let mut events: Vec<String> = inbox
        .drain()
        .await
        .iter()
        .filter_map(|d| d.attributes.get("event").cloned())
        .collect();
    events.sort();
    assert_eq!(events, ["protected", "rolled_back"]);
    let live = lab.alias(F, "live").await;
    assert_eq!((live.stable, live.weights.len()), (1, 0), "v2 rolled back");

    // Chat subscribers (`https`, how AWS Chatbot subscribes) get the same pages as custom
    // notifications; e-mail and SQS get the text on-call read above.
    let published = p.published();
    let rollback = published
        .iter()
        .find(|m| m.for_protocol("sqs").contains("was pointed back at v1"))
        .expect("the rollback went through the proxy");
    assert_eq!(
        rollback.by_protocol.keys().collect::<Vec<_>>(),
        ["default", "https"]
    );
    let chat: serde_json::Value =
        serde_json::from_str(rollback.for_protocol("https")).expect("the chat form is JSON");
    assert_eq!(
        (&chat["version"], &chat["source"]),
        (&"1.0".into(), &"custom".into())
    );
    let title = chat["content"]["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("ROLLED BACK notes-create v2 -> v1"),
        "{chat:#}"
    );
    assert_eq!(chat["metadata"]["eventType"], "rolled_back");
    assert_eq!(
        chat["metadata"]["threadId"],
        "lambda-canary/notes-create:live/v2"
    );
    let steps = chat["content"]["nextSteps"].to_string();
    assert!(
        steps.contains("`canary start notes-create --version 2`"),
        "{steps}"
    );
    assert_eq!(p.stats().message_rejected, 0);
}

#[tokio::test]
async fn the_proxy_refuses_messages_that_sns_refuses() {
    let lab = lab().await;
    let proxy = proxy(&lab, |c| c).await;
    let sns = aws_sdk_sns::Client::new(&via(&lab, &proxy, "tester").await);
    let publish = |message: String, structure: Option<&'static str>| {
        sns.publish()
            .topic_arn(&lab.topic_arn)
            .subject("s")
            .set_message_structure(structure.map(str::to_string))
            .message(message)
            .send()
    };
    publish(r#"{"default": "text", "https": "{}"}"#.into(), Some("json"))
        .await
        .expect("a structured message with a default entry");
    for (message, structure, why) in [
        (
            r#"{"https": "x"}"#.to_string(),
            Some("json"),
            "No default entry",
        ),
        ("not json".to_string(), Some("json"), "failed to parse"),
        (
            r#"{"default": 1}"#.to_string(),
            Some("json"),
            "not a string",
        ),
        ("x".repeat(SNS_MESSAGE_LIMIT + 1), None, "bytes"),
    ] {
        let err = publish(message, structure).await.expect_err(why);
        assert_eq!(err.code(), Some("InvalidParameter"), "{why}: {err:?}");
        assert!(err.message().unwrap_or_default().contains(why), "{err:?}");
    }
    assert_eq!(proxy.stats().message_rejected, 4);
    assert_eq!(proxy.published().len(), 1);
}

// ---- The agent's ledger of pages ----

/// The `event` attributes of what on-call received since the last drain.
async fn events_of(inbox: &lambda_canary_tests::Inbox) -> Vec<String> {
    inbox
        .drain()
        .await
        .iter()
        .filter_map(|d| d.attributes.get("event").cloned())
        .collect()
}

/// The events of the pages owed in `F`'s `live` record.
async fn owed_events(lab: &Lab) -> Vec<&'static str> {
    canary_agent::rollout::Record::decode(&lab.alias(F, "live").await.description)
        .owed
        .iter()
        .map(|o| o.event.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_ledger_a_page_costs_one_update_alias_and_no_agent_sends_it_twice() {
    use lambda_canary_tests::campaign::{ledgered_agent, Minute, FAILING, HEALTHY};
    const TABLE: &str = "lambda-canary-sent";
    let lab = lab().await;
    lab.create_ledger(TABLE).await;
    let inbox = lambda_canary_tests::Inbox::subscribe(&lab.sdk, &lab.topic_arn, "on-call").await;
    let p = proxy(&lab, |c| c).await;
    let sdk = lab
        .moto
        .sdk_config_via(
            p.endpoint(),
            Some("ledgered-agent"),
            RetryConfig::standard(),
        )
        .await;
    let policy = lambda_canary_tests::campaign::policy(F, &lab.topic_arn);
    let now = lambda_canary_tests::this_minute() - 1800;
    let series: [(u64, Minute); 2] = [(1, HEALTHY), (2, HEALTHY)];
    lab.put_minutes(F, &series, now - 60, 4).await;

    // The start: one UpdateAlias carries the decision and its page; SNS took the page, the
    // ledger holds it, and it stays owed in the alias until the next write.
    let a = ledgered_agent(&sdk, &sdk, TABLE);
    let started = tick_via(&a, &policy, now).await;
    assert!(
        started.wrote && started.notified == Some(Ok(())),
        "{started:?}"
    );
    assert_eq!(p.stats().update_alias, 1, "{:?}", p.stats());
    let pages = inbox.drain().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let id = pages[0].attributes.get("id").cloned().unwrap_or_default();
    assert_eq!(id, format!("{F}:live:started:2:{now}"));
    let db = aws_sdk_dynamodb::Client::new(&lab.sdk);
    let item = db
        .get_item()
        .table_name(TABLE)
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S(id.clone()))
        .send()
        .await
        .expect("get item");
    let expires = item
        .item()
        .and_then(|i| i.get("expires"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<i64>().ok());
    assert_eq!(expires, Some(now + 30 * 86_400), "{item:?}");
    assert_eq!(
        owed_events(&lab).await,
        ["started"],
        "left owed in the alias"
    );

    // A cold start past the page's lease asks the ledger and sends nothing again; its step's
    // write drops the sent page and carries only its own.
    let b = ledgered_agent(&sdk, &sdk, TABLE);
    let stepped = tick_via(&b, &policy, now + 180).await;
    assert!(stepped.wrote, "{stepped:?}");
    let events = events_of(&inbox).await;
    assert_eq!(events, ["stepped"], "the start is not re-sent");
    assert_eq!(p.stats().update_alias, 2, "{:?}", p.stats());
    assert_eq!(owed_events(&lab).await, ["stepped"]);

    // The ledger unreachable: the rollback is written and paged, and its page cleared from
    // the alias with a second write, as without a ledger. The step's page, past its lease,
    // is neither re-sent nor dropped: it stays for an agent that can ask the ledger.
    let nowhere = lab
        .moto
        .sdk_config_via(
            "http://127.0.0.1:9",
            Some("no-ledger"),
            RetryConfig::disabled(),
        )
        .await;
    let c = ledgered_agent(&sdk, &nowhere, TABLE);
    lab.put_minutes(F, &[(1, HEALTHY), (2, FAILING)], now + 180, 5)
        .await;
    let rolled = tick_via(&c, &policy, now + 480).await;
    assert!(
        rolled.wrote && rolled.notified == Some(Ok(())),
        "{rolled:?}"
    );
    let events = events_of(&inbox).await;
    assert_eq!(events, ["rolled_back"]);
    assert_eq!(p.stats().update_alias, 4, "the decision, then the clearing");
    let live = lab.alias(F, "live").await;
    assert_eq!((live.stable, live.routed()), (1, vec![]));
    assert_eq!(owed_events(&lab).await, ["stepped"]);
}
