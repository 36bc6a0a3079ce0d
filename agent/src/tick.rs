//! One pass over all policies: read → judge → decide → apply → notify. Idempotent.
//!
//! The only module besides the adapters that does I/O, and only through [`crate::ports`]. Every
//! write is one conditional update; a conflict is re-read and re-decided, never overwritten. The
//! agent can stop between any two calls: the next tick reads the alias and carries on.
//!
//! Announcements are owed in the alias record from the write that makes the decision until SNS
//! accepts them ([`crate::record::Owed`]): the writer sends them at once; a later tick re-sends
//! one whose sender's lease ran out, after claiming it with a conditional write, so two agents
//! never re-send the same announcement at the same time. With a ledger of pages
//! ([`crate::ports::Notifier::remembers`]) a sent one stays in the record until the next write,
//! and is read as sent.

use crate::judge::Judgement;
use crate::notify::Trigger;
use crate::outage::{Outages, Reach};
use crate::policy::Policy;
use crate::ports::{Aliases, Metrics, MetricsQuery, Notifier, PortError, Snapshot};
use crate::rollout::release::Call;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub use crate::text::human_duration;
pub use release::members_of;

mod commands;
mod judging;
mod outages;
mod outcome;
mod pages;
mod release;
pub mod rotation;
mod write;

pub use commands::CommandError;
pub use outcome::{rolled_back, Outcome};

use judging::{judge_series, window};
use outcome::log;
use write::Written;

/// How many times a conflicting write is re-read and re-decided before giving up for this tick.
const CONFLICT_ATTEMPTS: usize = 3;
/// How many policies are read, judged and written at once (Lambda's control plane allows about
/// 15 requests a second per account; each policy makes two to four).
const CONCURRENCY: usize = 8;
/// A tick's time budget when none is given: below the scheduled Lambda's 50 s timeout.
pub const DEFAULT_TICK_BUDGET: Duration = Duration::from_secs(40);

/// The agent: ports plus settings, and what the process remembers between ticks.
#[derive(Debug, Clone)]
pub struct Agent<A, M, N> {
    /// Alias port.
    pub aliases: A,
    /// Metrics port.
    pub metrics: M,
    /// Notification port.
    pub notifier: N,
    /// Decide and report, but write and publish nothing.
    pub dry_run: bool,
    /// Topic that overrides every policy's `notify.topic_arn` (the deployed stack's topic).
    pub topic_override: Option<String>,
    /// Aliases this process could not read or write, kept between ticks (shared by clones).
    pub outages: Arc<Mutex<Outages>>,
    /// At most this many aliases read per tick (`None`: all). Aliases with something under way
    /// are always read; idle ones take turns ([`rotation`]).
    pub reads_per_tick: Option<usize>,
    /// Which aliases are busy, and whose turn it is, kept between ticks (shared by clones).
    pub rotation: Arc<Mutex<rotation::Rotation>>,
    /// Announcements this process knows were published (with a ledger), kept between ticks.
    published: Arc<Mutex<pages::Published>>,
}

impl<A, M, N> Agent<A, M, N> {
    /// An agent on these ports that writes and publishes, with the policies' own topics and no
    /// outage remembered.
    pub fn new(aliases: A, metrics: M, notifier: N) -> Self {
        Self {
            aliases,
            metrics,
            notifier,
            dry_run: false,
            topic_override: None,
            outages: Arc::default(),
            reads_per_tick: None,
            rotation: Arc::default(),
            published: Arc::default(),
        }
    }
}

/// Awaits `fut`, giving up at `deadline` (if any); `None` when it gave up.
async fn until<F: Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        None => Some(fut.await),
        Some(d) => tokio::time::timeout_at(d, fut).await.ok(),
    }
}

/// One policy's view from the survey.
struct Seen {
    snap: Result<Snapshot, PortError>,
    judgement: Option<Judgement>,
    metrics_error: Option<String>,
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    /// Reads every alias (a few at a time), fetches every running canary's metrics in one batch,
    /// and judges them.
    async fn survey(&self, policies: &[Policy], now: i64, deadline: Option<Instant>) -> Vec<Seen> {
        let permits = tokio::sync::Semaphore::new(CONCURRENCY);
        let reads = policies.iter().map(|p| async {
            let _permit = permits.acquire().await;
            until(deadline, self.read(p, now)).await.unwrap_or_else(|| {
                Err(PortError::Failed(
                    "reading the alias did not finish before the tick's deadline".to_string(),
                ))
            })
        });
        let snaps = futures_util::future::join_all(reads).await;
        let queries: Vec<(usize, MetricsQuery)> = policies
            .iter()
            .zip(&snaps)
            .enumerate()
            .filter_map(|(i, (p, s))| {
                s.as_ref()
                    .ok()
                    .and_then(|s| window(p, s, now))
                    .map(|q| (i, q))
            })
            .collect();
        let qs: Vec<MetricsQuery> = queries.iter().map(|(_, q)| q.clone()).collect();
        let answers = if qs.is_empty() {
            Vec::new()
        } else {
            until(deadline, self.metrics.fetch(&qs))
                .await
                .unwrap_or_else(|| {
                    vec![
                        Err(PortError::Failed(
                            "the metrics query did not finish before the tick's deadline"
                                .to_string()
                        ));
                        qs.len()
                    ]
                })
        };
        let mut seen: Vec<Seen> = snaps
            .into_iter()
            .map(|snap| Seen {
                snap,
                judgement: None,
                metrics_error: None,
            })
            .collect();
        for ((i, _), answer) in queries.iter().zip(answers) {
            let s = &mut seen[*i];
            match (answer, &s.snap) {
                (Ok(series), Ok(snap)) => {
                    s.judgement = Some(judge_series(&policies[*i], &snap.state, series, now));
                }
                (Err(e), _) => s.metrics_error = Some(format!("metrics: {e}")),
                _ => {}
            }
        }
        seen
    }

    /// One pass over every policy with no deadline of its own (the simulator's ports never
    /// wait; the AWS adapters bound every call with the SDK's timeouts).
    pub async fn tick(&self, policies: &[Policy], now: i64) -> Vec<Outcome> {
        self.tick_within(policies, now, None).await
    }

    /// One pass over every policy. Failures of one policy never stop the others; policies are
    /// handled a few at a time, and whatever has not finished by `budget` (when given; it needs a
    /// tokio runtime) is reported as failed and carried on by the next tick.
    pub async fn tick_within(
        &self,
        policies: &[Policy],
        now: i64,
        budget: Option<Duration>,
    ) -> Vec<Outcome> {
        let deadline = budget.map(|b| Instant::now() + b);
        if !self.dry_run {
            let keys: Vec<String> = policies
                .iter()
                .map(|p| format!("{}:{}", p.function, p.alias))
                .collect();
            self.outages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(&keys);
        }
        let rotation = || {
            self.rotation
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let read = rotation().choose(policies, self.reads_per_tick);
        let all = read.len() == policies.len();
        let these: std::borrow::Cow<'_, [Policy]> = if all {
            policies.into()
        } else {
            read.iter().map(|&i| policies[i].clone()).collect()
        };
        let outs = self.tick_these(&these, now, deadline).await;
        rotation().learn(policies, &read, &outs);
        if all {
            return outs;
        }
        let mut outs = outs.into_iter();
        let mut read = read.into_iter().peekable();
        policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if read.next_if_eq(&i).is_some() {
                    outs.next().unwrap_or_else(|| Outcome::new(p))
                } else {
                    let mut o = Outcome::new(p);
                    o.skipped = true;
                    o
                }
            })
            .collect()
    }

    /// [`Self::tick_within`] over exactly these policies.
    async fn tick_these(
        &self,
        policies: &[Policy],
        now: i64,
        deadline: Option<Instant>,
    ) -> Vec<Outcome> {
        let survey = self.survey(policies, now, deadline).await;
        let calls = release::calls(policies, &survey, now);
        let mut slots: Vec<Option<Seen>> = survey.into_iter().map(Some).collect();
        let units: Vec<Vec<(usize, Seen)>> = release::units(policies, &calls)
            .into_iter()
            .map(|unit| {
                unit.into_iter()
                    .filter_map(|i| slots[i].take().map(|seen| (i, seen)))
                    .collect()
            })
            .collect();
        let permits = tokio::sync::Semaphore::new(CONCURRENCY);
        let calls = &calls;
        let work = units.into_iter().map(|unit| {
            let permits = &permits;
            async move {
                let _permit = permits.acquire().await;
                let mut done = Vec::with_capacity(unit.len());
                for (i, seen) in unit {
                    let (out, written, failure) = self
                        .decide_and_write(&policies[i], seen, &calls[i], now, deadline)
                        .await;
                    done.push((i, out, written, failure));
                }
                let note = release::note(policies, &done);
                let mut outs = Vec::with_capacity(done.len());
                for (i, mut out, written, failure) in done {
                    let policy = &policies[i];
                    if let Some(w) = written {
                        let problem = out.error.clone();
                        let sent = until(
                            deadline,
                            self.announce(policy, w, &Trigger::Agent, problem.as_deref(), note.as_ref(), &mut out),
                        )
                        .await;
                        if sent.is_none() {
                            out.error = Some(
                                "sending the announcement did not finish before the tick's deadline; the next tick re-sends it"
                                    .to_string(),
                            );
                        }
                    }
                    self.watch_reach(policy, &mut out, failure, now, deadline)
                        .await;
                    log(&out, self.dry_run);
                    outs.push((i, out));
                }
                outs
            }
        });
        let mut outs: Vec<(usize, Outcome)> = futures_util::future::join_all(work)
            .await
            .into_iter()
            .flatten()
            .collect();
        outs.sort_by_key(|(i, _)| *i);
        outs.into_iter().map(|(_, out)| out).collect()
    }

    /// Decides and writes one policy's alias for the tick (no announcement yet): its outcome,
    /// what was written, and whether its alias could not be read or written.
    async fn decide_and_write(
        &self,
        policy: &Policy,
        seen: Seen,
        call: &Call,
        now: i64,
        deadline: Option<Instant>,
    ) -> (Outcome, Option<Written>, outages::Failure) {
        let mut out = Outcome::new(policy);
        let snap = match seen.snap {
            Err(e) => {
                out.error = Some(e.to_string());
                let failure = Some((Reach::Read, e.to_string()));
                return (out, None, failure);
            }
            Ok(snap) => snap,
        };
        out.judgement = seen.judgement;
        out.error.clone_from(&seen.metrics_error);
        let written = until(
            deadline,
            self.write(policy, snap, None, call, now, &mut out),
        )
        .await;
        let (error, written) = match written {
            None => (
                Some(
                    "did not finish before the tick's deadline; the next tick carries on"
                        .to_string(),
                ),
                None,
            ),
            Some(Err(e)) => (Some(e.to_string()), None),
            Some(Ok(w)) => (None, w),
        };
        let mut failure = None;
        if let Some(e) = error {
            failure = Some((Reach::Write, e.clone()));
            out.error = Some(e);
        }
        (out, written, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Notification, Series};
    use crate::record::LEASE_SECS;
    use crate::rollout::{Action, AliasState, Override};
    use crate::sim::traffic::{Build, Traffic};
    use crate::sim::{agent, block_on, Shared, SimAliases, World};
    use std::sync::atomic::{AtomicU32, Ordering};

    const T0: i64 = 1_795_428_020;

    fn world(functions: &[&str]) -> (Shared, Vec<Policy>) {
        let mut w = World::new(T0 - 300, Traffic::steady(10.0), 60, 7);
        let mut policies = Vec::new();
        for f in functions {
            let mut p = Policy::with_defaults(f);
            p.notify = Some(crate::policy::Notify {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:alerts".into(),
            });
            policies.push(p);
        }
        w.serve_healthy(&policies, T0 - 300);
        w.advance(T0);
        (Shared::new(w), policies)
    }

    fn bad() -> Build {
        Build {
            error_rate: 1.0,
            ..Build::healthy()
        }
    }

    #[test]
    fn dry_run_decides_but_writes_and_publishes_nothing() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let mut a = agent(&w);
        a.dry_run = true;
        let outs = block_on(a.tick(&policies, T0));
        assert!(matches!(
            outs[0].decision.as_ref().map(|d| &d.action),
            Some(Action::Start { version: 2, .. })
        ));
        assert_eq!(w.lock().functions[0].canary, None);
        assert!(a.notifier.take().is_empty());
    }

    #[test]
    fn with_a_read_budget_idle_aliases_take_turns_and_a_bad_deploy_is_still_rolled_back() {
        let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (w, policies) = world(&refs);
        let mut a = agent(&w);
        a.reads_per_tick = Some(20);
        let mut now = T0;
        let mut reads = Vec::new();
        for t in 0..12 {
            if t == 4 {
                w.lock().functions[47].deploy(bad());
            }
            let before = w.lock().alias_reads;
            let outs = block_on(a.tick(&policies, now));
            reads.push(w.lock().alias_reads - before);
            assert_eq!(outs.len(), 60);
            assert!(
                outs.iter().all(|o| !o.failed()),
                "a skipped alias is not a failure"
            );
            now += 60;
            w.lock().advance(now);
        }
        // 60 idle aliases at 20 a tick: each read every 3 ticks; f47 (busy once deployed) on
        // top of the budget by at most itself.
        assert!(reads.iter().all(|&r| r <= 21), "{reads:?}");
        let world = w.lock();
        let f = &world.functions[47];
        assert_eq!(f.stable, 1, "the bad build was rolled back");
        assert_eq!(f.canary, None);
        let started = world
            .history
            .iter()
            .filter(|(_, i, _, c)| *i == 47 && c.is_some())
            .count();
        assert!(started >= 1, "it was started first");
    }

    #[test]
    fn one_metrics_call_per_tick_for_all_policies() {
        let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (w, policies) = world(&refs);
        for f in &mut w.lock().functions {
            f.deploy(Build::healthy());
        }
        let a = agent(&w);
        block_on(a.tick(&policies, T0));
        w.lock().advance(T0 + 60);
        let before = w.lock().metric_calls;
        block_on(a.tick(&policies, T0 + 60));
        assert_eq!(w.lock().metric_calls - before, 1);
    }

    #[test]
    fn a_rollback_happens_even_when_sns_is_down_and_the_page_is_resent_later() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(bad());
        let a = agent(&w);
        block_on(a.tick(&policies, T0));
        a.notifier.take();
        *a.notifier.down.lock().expect("lock") = true;
        let mut now = T0;
        let mut rolled = None;
        for _ in 0..5 {
            now += 60;
            w.lock().advance(now);
            let outs = block_on(a.tick(&policies, now));
            if rolled_back(&outs[0]) {
                rolled = Some(outs[0].clone());
                break;
            }
        }
        let out = rolled.expect("rolled back");
        assert!(matches!(out.notified, Some(Err(_))));
        {
            let guard = w.lock();
            let f = &guard.functions[0];
            assert_eq!((f.stable, f.canary), (1, None), "the rollback stands");
            assert_eq!(f.alias_state().record.owed.len(), 1, "the page is owed");
        }
        *a.notifier.down.lock().expect("lock") = false;
        block_on(a.tick(&policies, now + 60));
        let page = only_page(&a.notifier);
        assert!(
            page.subject.starts_with("(re-sent) ROLLED BACK f v2 -> v1"),
            "{}",
            page.subject
        );
        let attrs = &page.attributes;
        assert!(
            attrs.contains(&("event".into(), "rolled_back".into())),
            "{attrs:?}"
        );
        assert!(
            attrs.contains(&("resend".into(), "true".into())),
            "{attrs:?}"
        );
        assert!(w.lock().functions[0].alias_state().record.owed.is_empty());
        block_on(a.tick(&policies, now + 120));
        assert!(a.notifier.take().is_empty(), "sent once");
    }

    /// Answers `PreconditionFailed` to the first write(s), as when a person wrote first.
    struct Racing {
        inner: SimAliases,
        conflicts: AtomicU32,
        world: Shared,
    }

    impl Aliases for Racing {
        async fn read(&self, policy: &Policy) -> Result<Snapshot, PortError> {
            self.inner.read(policy).await
        }
        async fn write(
            &self,
            policy: &Policy,
            next: &AliasState,
            revision: &str,
        ) -> Result<String, PortError> {
            if self.conflicts.load(Ordering::SeqCst) > 0 {
                self.conflicts.fetch_sub(1, Ordering::SeqCst);
                // Someone pauses the alias in between.
                let mut w = self.world.lock();
                let f = &mut w.functions[0];
                let mut r = f.alias_state().record;
                r.paused = true;
                f.description = r.encode();
                f.revision += 1;
                return Err(PortError::Conflict);
            }
            self.inner.write(policy, next, revision).await
        }
        async fn version_exists(&self, policy: &Policy, version: u64) -> Result<bool, PortError> {
            self.inner.version_exists(policy, version).await
        }
    }

    /// `base` whose first alias write loses a race to a person pausing the alias.
    fn racing(
        base: &crate::sim::SimAgent,
        w: &Shared,
    ) -> Agent<Racing, crate::sim::SimMetrics, crate::sim::SimNotifier> {
        Agent::new(
            Racing {
                inner: base.aliases.clone(),
                conflicts: AtomicU32::new(1),
                world: w.clone(),
            },
            base.metrics.clone(),
            base.notifier.clone(),
        )
    }

    #[test]
    fn a_conflicting_write_is_reread_and_redecided_never_overwritten() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let base = agent(&w);
        let a = racing(&base, &w);
        let outs = block_on(a.tick(&policies, T0));
        // The person's pause was read back and respected: no canary was started over it.
        assert!(
            matches!(outs[0].decision.as_ref().map(|d| &d.action), Some(Action::Hold(h)) if h == "paused"),
            "{:?}",
            outs[0]
        );
        let f = &w.lock().functions[0];
        assert!(f.alias_state().record.paused);
        assert_eq!(f.canary, None);
    }

    #[test]
    fn manual_commands_apply_at_once_and_are_announced() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let a = agent(&w);
        block_on(a.tick(&policies, T0));
        a.notifier.take();
        let out = block_on(a.command(
            &policies[0],
            &Override::PromoteFull,
            "canary promote f --full",
            T0 + 5,
        ))
        .expect("promote");
        assert!(matches!(
            out.decision.map(|d| d.action),
            Some(Action::Promote { version: 2 })
        ));
        assert_eq!(w.lock().functions[0].stable, 2);
        let sent = a.notifier.take();
        assert!(
            sent[0].1.body.contains("`canary promote f --full`"),
            "{}",
            sent[0].1.body
        );
        let err = block_on(a.command(
            &policies[0],
            &Override::Start { version: Some(9) },
            "canary start f --version 9",
            T0 + 6,
        ));
        assert!(matches!(
            err,
            Err(CommandError::NoSuchVersion { version: 9, .. })
        ));
    }

    fn actions(outs: &[Outcome]) -> Vec<Action> {
        outs.iter()
            .filter_map(|o| o.decision.as_ref().map(|d| d.action.clone()))
            .collect()
    }

    /// The one page published since the last take (fails on none or several).
    fn only_page(n: &crate::sim::SimNotifier) -> Notification {
        let mut pages = n.take();
        assert_eq!(pages.len(), 1, "{pages:?}");
        pages.remove(0).1
    }

    fn attr<'a>(n: &'a Notification, name: &str) -> Option<&'a str> {
        n.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Ticks every minute until `stop` says so (at most `limit` ticks); returns the time.
    fn tick_until(
        a: &crate::sim::SimAgent,
        w: &Shared,
        policies: &[Policy],
        mut now: i64,
        limit: usize,
        stop: impl Fn(&[Outcome]) -> bool,
    ) -> (i64, Vec<Outcome>) {
        for _ in 0..limit {
            now += 60;
            w.lock().advance(now);
            let outs = block_on(a.tick(policies, now));
            if stop(&outs) {
                return (now, outs);
            }
        }
        panic!("condition not reached in {limit} ticks");
    }

    #[test]
    fn a_rollback_page_survives_a_new_deploy_while_sns_was_down() {
        // Issue 8, defect 2: SNS fails during the rollback tick, a new deploy follows, and the
        // next tick's announcement must not swallow the owed rollback page.
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(bad());
        let a = agent(&w);
        block_on(a.tick(&policies, T0));
        a.notifier.take();
        *a.notifier.down.lock().expect("lock") = true;
        let (now, _) = tick_until(&a, &w, &policies, T0, 5, |o| rolled_back(&o[0]));
        w.lock().functions[0].deploy(Build::healthy());
        *a.notifier.down.lock().expect("lock") = false;
        w.lock().advance(now + 60);
        let outs = block_on(a.tick(&policies, now + 60));
        assert!(matches!(
            actions(&outs)[..],
            [Action::Start { version: 3, .. }]
        ));
        let sent = a.notifier.take();
        let events: Vec<_> = sent
            .iter()
            .map(|(_, n)| {
                (
                    attr(n, "event"),
                    attr(n, "canary_version"),
                    attr(n, "resend"),
                )
            })
            .collect();
        assert!(
            events.contains(&(Some("rolled_back"), Some("2"), Some("true"))),
            "{events:?}"
        );
        assert!(
            events.contains(&(Some("started"), Some("3"), None)),
            "{events:?}"
        );
        assert!(w.lock().functions[0].alias_state().record.owed.is_empty());
    }

    #[test]
    fn an_announcement_another_process_is_sending_is_not_resent_until_its_lease_ends() {
        // Issue 8, defect 9: a concurrent tick saw the owed mark before the sender cleared it.
        let (w, policies) = world(&["f"]);
        owe_rollback(&w);
        let a = agent(&w);
        for now in [T0 + 30, T0 + 90] {
            block_on(a.tick(&policies, now));
            assert!(
                a.notifier.take().is_empty(),
                "another process owns it at {now}"
            );
        }
        block_on(a.tick(&policies, T0 + LEASE_SECS));
        let page = only_page(&a.notifier);
        assert_eq!(attr(&page, "id"), Some("f:live:rolled_back:2:1795428020"));
        block_on(a.tick(&policies, T0 + LEASE_SECS + 60));
        assert!(a.notifier.take().is_empty(), "sent once");
    }

    /// An agent over `w` whose notifier keeps `ledger` (shared between agents like a table).
    fn ledgered_agent(
        w: &Shared,
        ledger: &std::sync::Arc<std::sync::Mutex<crate::sim::SimLedger>>,
    ) -> crate::sim::SimAgent {
        let mut a = agent(w);
        a.notifier.ledger = Some(ledger.clone());
        a
    }

    #[test]
    fn with_a_ledger_a_page_costs_no_write_of_its_own_and_no_process_sends_it_again() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let ledger = std::sync::Arc::default();
        let a = ledgered_agent(&w, &ledger);
        let mut now = T0;
        let mut pages = Vec::new();
        let mut decisions = 0;
        let writes = w.lock().alias_writes;
        while w.lock().functions[0].stable != 2 {
            assert!(now < T0 + 3600, "promoted within the hour");
            let outs = block_on(a.tick(&policies, now));
            decisions += usize::from(outs[0].wrote);
            assert!(!outs[0].failed(), "{:?}", outs[0]);
            pages.extend(taken_events(&a.notifier));
            now += 60;
            w.lock().advance(now);
        }
        let events: Vec<&str> = pages.iter().map(String::as_str).collect();
        assert_eq!(events[0], "started");
        assert_eq!(events.last(), Some(&"promoted"));
        // One UpdateAlias per decision, each carrying its page; none to clear a sent page.
        assert_eq!(w.lock().alias_writes - writes, decisions as u64);
        assert_eq!(pages.len(), decisions, "{pages:?}");
        let l = ledger.lock().expect("lock").clone();
        assert_eq!(l.writes, decisions as u64, "one ledger item per page");
        assert_eq!(l.reads, 0, "this process knew what it had sent");
        // The promotion's page stays in the record.
        let owed = |w: &Shared| {
            w.lock().functions[0]
                .alias_state()
                .record
                .owed
                .iter()
                .map(|o| o.event.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(owed(&w), ["promoted"]);

        // A cold start with the ledger asks it once and sends nothing again; a person's
        // command from a process without the ledger sends only its own announcement.
        let cold = ledgered_agent(&w, &ledger);
        for k in 0..3 {
            block_on(cold.tick(&policies, now + LEASE_SECS + 60 * k));
        }
        assert!(cold.notifier.take().is_empty());
        assert_eq!(
            ledger.lock().expect("lock").reads,
            1,
            "asked once, then known"
        );
        let person = agent(&w);
        for (ovr, line) in [
            (Override::Pause, "canary pause f"),
            (Override::Resume, "canary resume f"),
        ] {
            let later = now + LEASE_SECS + 240;
            block_on(person.command(&policies[0], &ovr, line, later)).expect("applies");
        }
        assert_eq!(taken_events(&person.notifier), ["paused", "resumed"]);
        assert_eq!(owed(&w), ["promoted"], "its own cleared, the agent's left");

        // The next write drops it (here the bake's end, with its own page).
        let mut events = Vec::new();
        while events.is_empty() {
            assert!(now < T0 + 7200, "the bake ends within the next hour");
            now += 60;
            w.lock().advance(now);
            block_on(cold.tick(&policies, now));
            events = taken_events(&cold.notifier);
        }
        assert_eq!(events, ["baked"]);
        assert_eq!(owed(&w), ["baked"]);
    }

    /// Writes a record owing v2's rollback at `T0`, as if its sender stopped right after the
    /// write.
    fn owe_rollback(w: &Shared) {
        let mut g = w.lock();
        let f = &mut g.functions[0];
        let mut r = f.alias_state().record;
        r.owe(crate::record::Owed {
            event: crate::record::EventKind::RolledBack,
            version: Some(2),
            stable: 1,
            at: T0,
            manual: false,
            lease: T0 + LEASE_SECS,
        });
        r.rejected = Some(2);
        f.description = r.encode();
    }

    #[test]
    fn a_page_whose_sender_stopped_before_sns_took_it_is_resent_once_by_agents_with_the_ledger() {
        let (w, policies) = world(&["f"]);
        owe_rollback(&w);
        let ledger = std::sync::Arc::default();
        let a = ledgered_agent(&w, &ledger);
        block_on(a.tick(&policies, T0 + 60));
        assert!(a.notifier.take().is_empty(), "the sender's lease holds");
        let person = agent(&w);
        block_on(person.command(
            &policies[0],
            &Override::Pause,
            "canary pause f",
            T0 + LEASE_SECS,
        ))
        .expect("pauses");
        assert_eq!(
            taken_events(&person.notifier),
            ["paused"],
            "a command re-sends nothing"
        );
        block_on(a.tick(&policies, T0 + LEASE_SECS));
        let page = only_page(&a.notifier);
        assert!(
            page.subject.starts_with("(re-sent) ROLLED BACK f v2 -> v1"),
            "{}",
            page.subject
        );
        let other = ledgered_agent(&w, &ledger);
        for k in 1..4 {
            block_on(a.tick(&policies, T0 + LEASE_SECS * 2 + 60 * k));
            block_on(other.tick(&policies, T0 + LEASE_SECS * 2 + 60 * k));
        }
        assert!(
            a.notifier.take().is_empty() && other.notifier.take().is_empty(),
            "sent once"
        );
        assert!(ledger
            .lock()
            .expect("lock")
            .ids
            .contains("f:live:rolled_back:2:1795428020"));
    }

    #[test]
    fn when_the_ledger_fails_pages_are_cleared_by_a_write_and_never_sent_twice() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(bad());
        let ledger = std::sync::Arc::<std::sync::Mutex<crate::sim::SimLedger>>::default();
        let a = ledgered_agent(&w, &ledger);
        ledger.lock().expect("lock").down = true;
        let writes = w.lock().alias_writes;
        block_on(a.tick(&policies, T0));
        assert_eq!(taken_events(&a.notifier), ["started"]);
        assert_eq!(
            w.lock().alias_writes - writes,
            2,
            "the decision, then the clearing"
        );
        assert!(w.lock().functions[0].alias_state().record.owed.is_empty());

        // A cold start while the ledger is down does not re-send what it cannot check.
        ledger.lock().expect("lock").down = false;
        let (w, policies) = world(&["f"]);
        owe_rollback(&w);
        ledger.lock().expect("lock").ids.clear();
        ledger.lock().expect("lock").down = true;
        let cold = ledgered_agent(&w, &ledger);
        for k in 0..3 {
            let outs = block_on(cold.tick(&policies, T0 + LEASE_SECS + 60 * k));
            assert!(!outs[0].failed(), "{:?}", outs[0]);
        }
        assert!(
            cold.notifier.take().is_empty(),
            "held while the ledger cannot answer"
        );
        ledger.lock().expect("lock").down = false;
        block_on(cold.tick(&policies, T0 + LEASE_SECS + 240));
        assert_eq!(taken_events(&cold.notifier), ["rolled_back"], "then sent");
    }

    /// The `event` attributes of the pages published since the last take, taking them.
    fn taken_events(n: &crate::sim::SimNotifier) -> Vec<String> {
        n.take()
            .iter()
            .filter_map(|(_, n)| attr(n, "event").map(str::to_string))
            .collect()
    }

    /// Metrics that fail while `down` is set.
    #[derive(Clone)]
    struct FlakyMetrics {
        inner: crate::sim::SimMetrics,
        down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Metrics for FlakyMetrics {
        async fn fetch(&self, queries: &[MetricsQuery]) -> Vec<Result<Series, PortError>> {
            if self.down.load(Ordering::SeqCst) {
                return vec![
                    Err(PortError::Failed(
                        "CloudWatch GetMetricData failed: AccessDenied".into()
                    ));
                    queries.len()
                ];
            }
            self.inner.fetch(queries).await
        }
    }

    #[test]
    fn a_canary_that_cannot_be_judged_pages_once_and_again_when_judged() {
        // Issue 8, defect 10: metrics that cannot be read held the canary forever, silently.
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let base = agent(&w);
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let a = Agent::new(
            base.aliases.clone(),
            FlakyMetrics {
                inner: base.metrics.clone(),
                down: down.clone(),
            },
            base.notifier.clone(),
        );
        block_on(a.tick(&policies, T0));
        a.notifier.take();
        down.store(true, Ordering::SeqCst);
        let mut pages = Vec::new();
        let mut now = T0;
        for _ in 0..12 {
            now += 60;
            w.lock().advance(now);
            let outs = block_on(a.tick(&policies, now));
            assert!(outs[0].failed(), "an unjudged canary is a failed policy");
            pages.extend(a.notifier.take());
        }
        let events: Vec<_> = pages.iter().map(|(_, n)| attr(n, "event")).collect();
        assert_eq!(events, [Some("unprotected")], "paged once");
        assert!(
            pages[0].1.subject.starts_with("CANARY UNPROTECTED: f v2"),
            "{}",
            pages[0].1.subject
        );
        assert!(
            pages[0].1.body.contains("AccessDenied"),
            "{}",
            pages[0].1.body
        );
        assert!(
            w.lock().functions[0].canary.is_some(),
            "held, not rolled back"
        );
        down.store(false, Ordering::SeqCst);
        now += 60;
        w.lock().advance(now);
        let outs = block_on(a.tick(&policies, now));
        assert!(!outs[0].failed(), "{:?}", outs[0]);
        let back = taken_events(&a.notifier);
        assert!(back.contains(&"protected".to_string()), "{back:?}");
        let r = w.lock().functions[0].alias_state().record;
        assert_eq!((r.unjudged_since, r.unprotected_paged), (None, false));
    }

    /// Aliases whose writes fail with `error` once `budget` writes went through (never, while
    /// it is negative): a missing `lambda:UpdateAlias` permission at 0, a crash after N writes.
    #[derive(Clone)]
    pub(super) struct WriteBudget {
        pub(super) inner: SimAliases,
        pub(super) budget: std::sync::Arc<std::sync::atomic::AtomicI64>,
        pub(super) error: &'static str,
    }

    impl WriteBudget {
        pub(super) fn new(inner: SimAliases, error: &'static str) -> Self {
            Self {
                inner,
                budget: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1)),
                error,
            }
        }
    }

    impl Aliases for WriteBudget {
        async fn read(&self, policy: &Policy) -> Result<Snapshot, PortError> {
            self.inner.read(policy).await
        }
        async fn write(
            &self,
            policy: &Policy,
            next: &AliasState,
            revision: &str,
        ) -> Result<String, PortError> {
            match self.budget.load(Ordering::SeqCst) {
                0 => return Err(PortError::Failed(self.error.into())),
                n if n > 0 => {
                    self.budget.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
            self.inner.write(policy, next, revision).await
        }
        async fn version_exists(&self, policy: &Policy, version: u64) -> Result<bool, PortError> {
            self.inner.version_exists(policy, version).await
        }
    }

    #[test]
    fn a_canary_whose_alias_cannot_be_written_pages_once_and_again_when_written() {
        // Issue 8: the record cannot hold the mark when the record is what cannot be written;
        // the process remembers instead.
        let (w, mut policies) = world(&["f"]);
        policies[0].unprotected_after = std::time::Duration::from_secs(300);
        w.lock().functions[0].deploy(Build::healthy());
        let base = agent(&w);
        let ports = WriteBudget::new(
            base.aliases.clone(),
            "AccessDeniedException: not authorized to perform lambda:UpdateAlias",
        );
        let denied = ports.budget.clone();
        let a = Agent::new(ports, base.metrics.clone(), base.notifier.clone());
        block_on(a.tick(&policies, T0));
        a.notifier.take();
        denied.store(0, Ordering::SeqCst);
        let mut pages = Vec::new();
        let mut now = T0;
        let mut first_failure = None;
        for _ in 0..15 {
            now += 60;
            w.lock().advance(now);
            // A clone (what a new `Agent` handle of the same process is) shares the memory.
            let outs = block_on(a.clone().tick(&policies, now));
            if outs[0].failed() {
                first_failure.get_or_insert(now);
            }
            for (_, n) in a.notifier.take() {
                pages.push((now, n));
            }
        }
        let first_failure = first_failure.expect("writes failed");
        let events: Vec<_> = pages.iter().map(|(_, n)| attr(n, "event")).collect();
        assert_eq!(events, [Some("unprotected")], "paged once");
        let (at, page) = &pages[0];
        assert_eq!(
            *at - first_failure,
            300,
            "paged when unprotected_after had passed"
        );
        assert!(
            page.subject
                .starts_with("CANARY UNPROTECTED: the agent cannot write f:live for 5m"),
            "{}",
            page.subject
        );
        assert!(page.body.contains("AccessDeniedException"), "{}", page.body);
        assert!(
            page.body.contains("v2 keeps 10% of live's traffic"),
            "{}",
            page.body
        );
        denied.store(-1, Ordering::SeqCst);
        now += 60;
        w.lock().advance(now);
        let outs = block_on(a.tick(&policies, now));
        assert!(!outs[0].failed(), "{:?}", outs[0]);
        let back = taken_events(&a.notifier);
        assert!(back.contains(&"protected".to_string()), "{back:?}");
        // The outage is over: a new short one pages nothing.
        denied.store(0, Ordering::SeqCst);
        now += 60;
        w.lock().advance(now);
        block_on(a.tick(&policies, now));
        assert!(a.notifier.take().is_empty());
    }

    #[test]
    fn a_rolled_back_build_stays_off_after_a_manual_rollback_further_back() {
        // Issue 8, defect 1: live v2, candidate v3 rolled back, then `rollback --to 1`.
        let (w, policies) = world(&["f"]);
        let a = agent(&w);
        w.lock().functions[0].deploy(Build::healthy());
        block_on(a.command(
            &policies[0],
            &Override::Start { version: Some(2) },
            "canary start f --version 2",
            T0,
        ))
        .expect("start");
        block_on(a.command(
            &policies[0],
            &Override::PromoteFull,
            "canary promote f --full",
            T0 + 1,
        ))
        .expect("promote");
        // v2 bakes; `promote` ends the bake so v3 may start.
        let ended =
            block_on(a.command(&policies[0], &Override::Promote, "canary promote f", T0 + 2))
                .expect("end the bake");
        assert!(matches!(
            ended.decision.map(|d| d.action),
            Some(Action::Baked { version: 2 })
        ));
        w.lock().functions[0].deploy(bad());
        let (now, _) = tick_until(&a, &w, &policies, T0, 6, |o| rolled_back(&o[0]));
        block_on(a.command(
            &policies[0],
            &Override::Rollback {
                to: Some(1),
                reason: Some("customer\nreport".into()),
            },
            "canary rollback f --to 1",
            now + 1,
        ))
        .expect("rollback --to 1");
        let mut t = now;
        for _ in 0..5 {
            t += 60;
            w.lock().advance(t);
            let outs = block_on(a.tick(&policies, t));
            assert!(
                !matches!(actions(&outs)[..], [Action::Start { .. }]),
                "v3 restarted: {:?}",
                outs[0]
            );
        }
        let f = &w.lock().functions[0];
        assert_eq!((f.stable, f.canary), (1, None));
    }

    #[test]
    fn a_bad_build_promoted_by_hand_is_reverted_by_the_bake_with_one_page() {
        let (w, policies) = world(&["f"]);
        let a = agent(&w);
        w.lock().functions[0].deploy(Build {
            error_rate: 0.05,
            ..Build::healthy()
        });
        block_on(a.command(
            &policies[0],
            &Override::PromoteFull,
            "canary promote f --full",
            T0,
        ))
        .expect("promote");
        assert_eq!(w.lock().functions[0].stable, 2);
        let pages = a.notifier.take();
        assert!(
            pages[0].1.body.contains("It bakes until 10:15:20Z (15m)"),
            "{}",
            pages[0].1.body
        );
        let (now, outs) = tick_until(&a, &w, &policies, T0, 14, |o| rolled_back(&o[0]));
        let f = &w.lock().functions[0];
        assert_eq!((f.stable, f.canary), (1, None));
        assert_eq!(f.alias_state().record.rejected, Some(2));
        assert!(now - T0 >= 5 * 60, "five minutes of evidence at the least");
        let page = &only_page(&a.notifier);
        assert!(
            page.subject.starts_with("ROLLED BACK f v2 -> v1"),
            "{}",
            page.subject
        );
        assert!(
            page.body
                .contains("Numbers since the promotion, against v1 in the hour before the canary")
                && page.body.contains("during the bake"),
            "{}",
            page.body
        );
        assert!(
            outs[0].line().contains("roll back to v1"),
            "{}",
            outs[0].line()
        );
    }

    #[test]
    fn a_shared_outage_in_the_bake_is_rechecked_and_the_good_build_canaried_again() {
        // A healthy v2 promoted by hand; from a minute later an outage of a shared dependency
        // fails 5% of every version's requests for 20 minutes.
        let (w, policies) = world(&["f"]);
        {
            let mut w = w.lock();
            w.traffic.origin = T0;
            w.traffic.outages.push(crate::sim::traffic::Outage {
                at: 60,
                secs: 20 * 60,
                errors: 0.05,
            });
            w.functions[0].deploy(Build::healthy());
        }
        let a = agent(&w);
        block_on(a.command(
            &policies[0],
            &Override::PromoteFull,
            "canary promote f --full",
            T0,
        ))
        .expect("promote");
        let (back, _) = tick_until(&a, &w, &policies, T0, 14, |o| rolled_back(&o[0]));
        let state = w.lock().functions[0].alias_state();
        assert!(crate::rollout::rechecking(&state).is_some_and(|r| r.version == 2));
        let pages = a.notifier.take();
        let rollback = pages
            .iter()
            .find(|(_, n)| attr(n, "event") == Some("rolled_back"))
            .expect("a rollback page");
        assert!(
            rollback
                .1
                .body
                .contains("unless v1, judged against the same numbers until"),
            "{}",
            rollback.1.body
        );
        // v1 fails alike: the rollback is lifted, and on-call is told why.
        let (lifted, outs) = tick_until(&a, &w, &policies, back, 10, |o| {
            matches!(actions(o)[..], [Action::Lift { .. }])
        });
        assert!(
            outs[0].line().contains("v1 fails alike"),
            "{}",
            outs[0].line()
        );
        let page = &only_page(&a.notifier);
        assert_eq!(attr(page, "event"), Some("shared_failure"));
        assert!(
            page.subject
                .starts_with("SHARED FAILURE f: v1 fails like v2 did"),
            "{}",
            page.subject
        );
        assert!(
            page.body
                .contains("Numbers since the rollback, against v1 itself")
                && page.body.contains("since the rollback is above"),
            "{}",
            page.body
        );
        // The next tick canaries v2 again.
        w.lock().advance(lifted + 60);
        let outs = block_on(a.tick(&policies, lifted + 60));
        assert_eq!(
            actions(&outs),
            [Action::Start {
                version: 2,
                weight: 10.0
            }]
        );
    }

    #[test]
    fn a_healthy_build_bakes_then_announces_the_end_once() {
        let (w, policies) = world(&["f"]);
        let a = agent(&w);
        w.lock().functions[0].deploy(Build::healthy());
        let (promoted, outs) = tick_until(&a, &w, &policies, T0, 40, |o| {
            matches!(actions(o)[..], [Action::Promote { .. }])
        });
        assert!(outs[0].line().contains("promote v2"));
        let (end, outs) = tick_until(&a, &w, &policies, promoted, 80, |o| {
            !matches!(actions(o)[..], [Action::Hold(_)])
        });
        assert_eq!(actions(&outs), [Action::Baked { version: 2 }]);
        assert!(
            (15 * 60..16 * 60).contains(&(end - promoted)),
            "{}",
            end - promoted
        );
        let baked: Vec<_> = a
            .notifier
            .take()
            .into_iter()
            .filter(|(_, n)| attr(n, "event") == Some("baked"))
            .collect();
        assert_eq!(baked.len(), 1);
        assert!(
            baked[0].1.subject.starts_with("Baked f v2"),
            "{}",
            baked[0].1.subject
        );
    }

    #[test]
    fn a_manual_command_that_loses_a_race_says_what_changed_and_writes_nothing() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let base = agent(&w);
        block_on(base.tick(&policies, T0));
        let a = racing(&base, &w);
        let err = block_on(a.command(&policies[0], &Override::Promote, "canary promote f", T0 + 5))
            .expect_err("lost the race");
        let CommandError::LostRace(what) = err else {
            panic!("{err:?}")
        };
        assert!(what.contains("now stable v1, v2 at 10%, paused"), "{what}");
        let f = &w.lock().functions[0];
        assert_eq!(
            f.canary.map(|c| c.weight),
            Some(10.0),
            "the promote was not applied"
        );
    }

    #[test]
    fn corrupted_records_are_repaired_never_a_panic_or_a_wedged_alias() {
        // Issue 8, defect 6: t = i64::MIN, s = u64::MAX, t = i64::MAX.
        for record in [
            r#"canary:{"c":2,"s":0,"t":-9223372036854775808,"b":-9223372036854775808}"#,
            r#"canary:{"c":2,"s":18446744073709551615,"t":1795428020,"b":1795428020}"#,
            r#"canary:{"c":2,"s":0,"t":9223372036854775807,"b":1795428020}"#,
            r#"canary:{"c":2,"#,
        ] {
            let (w, policies) = world(&["f"]);
            {
                let mut g = w.lock();
                let f = &mut g.functions[0];
                f.deploy(Build::healthy());
                f.canary = Some(crate::rollout::Routing {
                    version: 2,
                    weight: 10.0,
                });
                f.description = record.to_string();
            }
            let a = agent(&w);
            let status = block_on(a.status(&policies, T0));
            assert!(!status[0].problems.is_empty(), "{record}: {:?}", status[0]);
            let outs = block_on(a.tick(&policies, T0));
            assert!(!outs[0].problems.is_empty(), "{record}");
            assert!(
                outs[0].line().contains("record repaired"),
                "{}",
                outs[0].line()
            );
            // Not wedged: the healthy canary goes all the way.
            let (_, _) = tick_until(&a, &w, &policies, T0, 30, |o| {
                matches!(actions(o)[..], [Action::Promote { version: 2 }])
            });
        }
    }

    /// Reads of `slow` never finish; every other function answers at once.
    struct OneSlow(SimAliases);

    impl Aliases for OneSlow {
        async fn read(&self, policy: &Policy) -> Result<Snapshot, PortError> {
            if policy.function == "slow" {
                std::future::pending::<()>().await;
            }
            self.0.read(policy).await
        }
        async fn write(
            &self,
            policy: &Policy,
            next: &AliasState,
            revision: &str,
        ) -> Result<String, PortError> {
            self.0.write(policy, next, revision).await
        }
        async fn version_exists(&self, policy: &Policy, version: u64) -> Result<bool, PortError> {
            self.0.version_exists(policy, version).await
        }
    }

    #[test]
    fn one_policy_that_never_answers_does_not_hold_up_the_others_past_the_deadline() {
        let (w, policies) = world(&["a", "slow", "b"]);
        for f in &mut w.lock().functions {
            f.deploy(Build::healthy());
        }
        let base = agent(&w);
        let a = Agent::new(
            OneSlow(base.aliases.clone()),
            base.metrics.clone(),
            base.notifier.clone(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let outs =
            rt.block_on(a.tick_within(&policies, T0, Some(std::time::Duration::from_millis(200))));
        let started: Vec<bool> = outs
            .iter()
            .map(|o| {
                matches!(
                    o.decision.as_ref().map(|d| &d.action),
                    Some(Action::Start { .. })
                )
            })
            .collect();
        assert_eq!(started, [true, false, true], "{outs:?}");
        assert!(
            outs[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("deadline")),
            "{:?}",
            outs[1]
        );
        assert_eq!(a.notifier.take().len(), 2, "the others were announced");
    }
}
