//! One pass over all policies: read → judge → decide → apply → notify. Idempotent.
//!
//! The only module besides the adapters that does I/O, and only through [`crate::ports`]. Every
//! write is one conditional update; a conflict is re-read and re-decided, never overwritten. The
//! agent can stop between any two calls: the next tick reads the alias and carries on.

use crate::judge::{judge, Judgement, Observations};
use crate::notify::{announcement, Trigger};
use crate::policy::Policy;
use crate::ports::{
    Aliases, Metrics, MetricsQuery, Notification, Notifier, PortError, Series, Snapshot,
};
use crate::rollout::{decide, Action, AliasState, Decision, Override, OverrideError};

/// How many times a conflicting write is re-read and re-decided before giving up for this tick.
const CONFLICT_ATTEMPTS: usize = 3;

/// The agent: ports plus settings.
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
}

/// What happened to one policy in a tick or command.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Function name.
    pub function: String,
    /// Alias name.
    pub alias: String,
    /// The alias as read (before any write).
    pub before: Option<AliasState>,
    /// The judge's view of the running canary, if there was one and metrics answered.
    pub judgement: Option<Judgement>,
    /// The decision (applied unless `dry_run` or `error`).
    pub decision: Option<Decision>,
    /// Whether the announcement was published: `None` if there was nothing to announce.
    pub notified: Option<Result<(), String>>,
    /// What went wrong, if anything did.
    pub error: Option<String>,
}

impl Outcome {
    fn new(policy: &Policy) -> Self {
        Self {
            function: policy.function.clone(),
            alias: policy.alias.clone(),
            before: None,
            judgement: None,
            decision: None,
            notified: None,
            error: None,
        }
    }

    /// One line for logs and the terminal.
    #[must_use]
    pub fn line(&self) -> String {
        let what = match (&self.error, &self.decision) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(d)) => d.action.to_string(),
            (None, None) => "nothing decided".to_string(),
        };
        let numbers = self
            .judgement
            .as_ref()
            .map_or(String::new(), |j| format!(" [{}]", j.summary()));
        let page = match &self.notified {
            Some(Err(e)) => format!(" (page failed, retried next tick: {e})"),
            _ => String::new(),
        };
        format!("{}:{} {what}{numbers}{page}", self.function, self.alias)
    }
}

/// Why a person's command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command does not apply to the alias's state.
    #[error(transparent)]
    Rejected(#[from] OverrideError),
    /// The version does not exist.
    #[error("{function} has no version {version}")]
    NoSuchVersion {
        /// Function name.
        function: String,
        /// The missing version.
        version: u64,
    },
    /// AWS failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Formats seconds as `45s`, `12m`, `2h5m`.
#[must_use]
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 90 => format!("{s}s"),
        s if s < 3600 => format!("{}m", (s + 30) / 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn window(policy: &Policy, snap: &Snapshot, now: i64) -> Option<MetricsQuery> {
    let s = &snap.state;
    let c = s.canary?;
    let from = if s.record.canary == Some(c.version) && s.record.started > 0 {
        s.record.started
    } else {
        now - 300
    };
    Some(MetricsQuery::for_policy(
        policy, s.stable, c.version, from, now,
    ))
}

/// Judges a canary's series. The step's requests include the period the step began in (it
/// served the step's weight for part of it), so a step is never a whole period plus the metric
/// delay slower.
fn judge_series(policy: &Policy, state: &AliasState, series: Series) -> Judgement {
    let period = policy.metrics.period_secs();
    judge(
        policy,
        &Observations {
            canary: series.canary,
            baseline: series.baseline,
            step_start: state.record.since.div_euclid(period) * period,
        },
    )
}

impl<A: Aliases + Sync, M: Metrics + Sync, N: Notifier + Sync> Agent<A, M, N> {
    fn topic(&self, policy: &Policy) -> Option<String> {
        self.topic_override
            .clone()
            .or_else(|| policy.notify.as_ref().map(|n| n.topic_arn.clone()))
    }

    /// Reads every alias, fetches every running canary's metrics in one batch, and judges them.
    async fn survey(
        &self,
        policies: &[Policy],
        now: i64,
    ) -> Vec<(Result<Snapshot, PortError>, Option<Judgement>)> {
        let mut snaps = Vec::with_capacity(policies.len());
        for p in policies {
            snaps.push(self.aliases.read(p).await);
        }
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
            self.metrics.fetch(&qs).await
        };
        let mut judgements: Vec<Option<Judgement>> = vec![None; policies.len()];
        let mut errors: Vec<Option<PortError>> = vec![None; policies.len()];
        for ((i, _), answer) in queries.iter().zip(answers) {
            match (answer, &snaps[*i]) {
                (Ok(series), Ok(snap)) => {
                    judgements[*i] = Some(judge_series(&policies[*i], &snap.state, series));
                }
                (Err(e), _) => errors[*i] = Some(e),
                _ => {}
            }
        }
        snaps
            .into_iter()
            .zip(judgements)
            .zip(errors)
            .map(|((s, j), e)| match (s, e) {
                (Ok(_), Some(e)) => (Err(PortError::Failed(format!("metrics: {e}"))), None),
                (s, _) => (s, j),
            })
            .collect()
    }

    /// One pass over every policy. Failures of one policy never stop the others.
    pub async fn tick(&self, policies: &[Policy], now: i64) -> Vec<Outcome> {
        let survey = self.survey(policies, now).await;
        let mut outcomes = Vec::with_capacity(policies.len());
        for (policy, (snap, judgement)) in policies.iter().zip(survey) {
            let mut out = Outcome::new(policy);
            match snap {
                Err(e) => out.error = Some(e.to_string()),
                Ok(snap) => {
                    out.judgement = judgement;
                    self.apply(policy, snap, None, now, Trigger::Agent, &mut out)
                        .await;
                }
            }
            tracing::info!(
                function = %out.function,
                alias = %out.alias,
                action = %out.decision.as_ref().map_or("none".to_string(), |d| d.action.to_string()),
                verdict = %out.judgement.as_ref().map_or("-".to_string(), |j| j.verdict.to_string()),
                numbers = %out.judgement.as_ref().map_or(String::new(), Judgement::summary),
                error = out.error.as_deref().unwrap_or(""),
                dry_run = self.dry_run,
                "decision"
            );
            outcomes.push(out);
        }
        outcomes
    }

    /// Judges without deciding or writing: what `canary status` shows.
    pub async fn status(&self, policies: &[Policy], now: i64) -> Vec<Outcome> {
        let survey = self.survey(policies, now).await;
        policies
            .iter()
            .zip(survey)
            .map(|(policy, (snap, judgement))| {
                let mut out = Outcome::new(policy);
                match snap {
                    Err(e) => out.error = Some(e.to_string()),
                    Ok(snap) => {
                        out.decision =
                            decide(&snap.state, policy, judgement.as_ref(), None, now).ok();
                        out.before = Some(snap.state);
                        out.judgement = judgement;
                    }
                }
                out
            })
            .collect()
    }

    /// Carries out a person's command at once and announces it.
    ///
    /// # Errors
    /// The command does not apply, the version does not exist, or AWS failed.
    pub async fn command(
        &self,
        policy: &Policy,
        ovr: &Override,
        command_line: &str,
        now: i64,
    ) -> Result<Outcome, CommandError> {
        let target = match ovr {
            Override::Start { version: Some(v) } | Override::Rollback { to: Some(v), .. } => {
                Some(*v)
            }
            _ => None,
        };
        if let Some(version) = target {
            if !self.aliases.version_exists(policy, version).await? {
                return Err(CommandError::NoSuchVersion {
                    function: policy.function.clone(),
                    version,
                });
            }
        }
        let snap = self.aliases.read(policy).await?;
        // Fail before writing if the command does not apply.
        decide(&snap.state, policy, None, Some(ovr), now)?;
        let mut out = Outcome::new(policy);
        let trigger = Trigger::Manual {
            command: command_line.to_string(),
        };
        let judgement = match window(policy, &snap, now) {
            Some(q) => self
                .metrics
                .fetch(&[q])
                .await
                .pop()
                .and_then(Result::ok)
                .map(|series| judge_series(policy, &snap.state, series)),
            None => None,
        };
        out.judgement = judgement;
        self.apply(policy, snap, Some(ovr), now, trigger, &mut out)
            .await;
        match out.error.take() {
            Some(e) => Err(CommandError::Port(PortError::Failed(e))),
            None => Ok(out),
        }
    }

    async fn apply(
        &self,
        policy: &Policy,
        mut snap: Snapshot,
        ovr: Option<&Override>,
        now: i64,
        trigger: Trigger,
        out: &mut Outcome,
    ) {
        out.before = Some(snap.state.clone());
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let decision = match decide(&snap.state, policy, out.judgement.as_ref(), ovr, now) {
                Ok(d) => d,
                Err(e) => {
                    out.error = Some(e.to_string());
                    return;
                }
            };
            out.decision = Some(decision.clone());
            if self.dry_run {
                return;
            }
            let Some(next) = decision.next.clone() else {
                // Nothing to change; re-send an announcement a previous tick could not publish.
                if snap.state.record.pending {
                    self.resend(policy, &snap, out).await;
                }
                return;
            };
            match self.aliases.write(policy, &next, &snap.revision).await {
                Ok(revision) => {
                    self.announce(
                        policy,
                        &snap.state,
                        &decision,
                        next,
                        revision,
                        &trigger,
                        out,
                    )
                    .await;
                    return;
                }
                Err(PortError::Conflict) if attempt < CONFLICT_ATTEMPTS => {
                    tracing::warn!(function = %policy.function, attempt, "alias changed under us; re-reading");
                    match self.aliases.read(policy).await {
                        Ok(s) => {
                            // The judgement is about the versions read first; drop it if they moved.
                            let same = |a: &AliasState| (a.stable, a.canary.map(|c| c.version));
                            if same(&s.state) != same(&snap.state) {
                                out.judgement = None;
                            }
                            out.before = Some(s.state.clone());
                            snap = s;
                        }
                        Err(e) => {
                            out.error = Some(e.to_string());
                            return;
                        }
                    }
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return;
                }
            }
        }
        out.error = Some(PortError::Conflict.to_string());
    }

    #[allow(clippy::too_many_arguments)]
    async fn announce(
        &self,
        policy: &Policy,
        before: &AliasState,
        decision: &Decision,
        written: AliasState,
        revision: String,
        trigger: &Trigger,
        out: &mut Outcome,
    ) {
        let Some(message) = announcement(
            policy,
            before,
            &decision.action,
            out.judgement.as_ref(),
            trigger,
        ) else {
            return;
        };
        out.notified = Some(
            self.publish_and_clear(policy, &message, written, &revision)
                .await,
        );
    }

    /// Publishes `message`; once it is out, clears the record's pending mark with a conditional
    /// write. A failure to clear is harmless: the next tick re-sends (at-least-once).
    async fn publish_and_clear(
        &self,
        policy: &Policy,
        message: &Notification,
        mut state: AliasState,
        revision: &str,
    ) -> Result<(), String> {
        let sent = self.send(policy, message).await;
        if sent.is_ok() && state.record.pending {
            state.record.pending = false;
            if let Err(e) = self.aliases.write(policy, &state, revision).await {
                tracing::warn!(function = %policy.function, error = %e, "could not clear the pending-announcement mark");
            }
        }
        sent
    }

    async fn send(&self, policy: &Policy, message: &Notification) -> Result<(), String> {
        let Some(topic) = self.topic(policy) else {
            return Ok(());
        };
        let r = self
            .notifier
            .publish(&topic, message)
            .await
            .map_err(|e| e.to_string());
        if let Err(e) = &r {
            tracing::error!(function = %policy.function, topic = %topic, error = %e, subject = %message.subject, "publish failed; will retry next tick");
        }
        r
    }

    async fn resend(&self, policy: &Policy, snap: &Snapshot, out: &mut Outcome) {
        let message = crate::notify::retry(policy, &snap.state);
        out.notified = Some(
            self.publish_and_clear(policy, &message, snap.state.clone(), &snap.revision)
                .await,
        );
    }
}

/// Whether an outcome moved traffic backwards (for exit codes and summaries).
#[must_use]
pub fn rolled_back(out: &Outcome) -> bool {
    matches!(
        out.decision.as_ref().map(|d| &d.action),
        Some(Action::Rollback { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::traffic::{Build, Traffic};
    use crate::sim::{agent, block_on, Shared, SimAliases, SimFunction, World};
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
            w.functions
                .push(SimFunction::new(p.clone(), Build::healthy(), T0 - 300));
            policies.push(p);
        }
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
            assert!(f.alias_state().record.pending, "the page is owed");
        }
        *a.notifier.down.lock().expect("lock") = false;
        block_on(a.tick(&policies, now + 60));
        let sent = a.notifier.take();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0]
                .1
                .subject
                .starts_with("(retry) f: rolled back v2 to v1"),
            "{}",
            sent[0].1.subject
        );
        assert!(!w.lock().functions[0].alias_state().record.pending);
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

    #[test]
    fn a_conflicting_write_is_reread_and_redecided_never_overwritten() {
        let (w, policies) = world(&["f"]);
        w.lock().functions[0].deploy(Build::healthy());
        let base = agent(&w);
        let a = Agent {
            aliases: Racing {
                inner: base.aliases.clone(),
                conflicts: AtomicU32::new(1),
                world: w.clone(),
            },
            metrics: base.metrics.clone(),
            notifier: base.notifier.clone(),
            dry_run: false,
            topic_override: None,
        };
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
}
