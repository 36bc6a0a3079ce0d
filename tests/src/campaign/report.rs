//! What a campaign found: its figures, the invariants broken and the first examples, as Markdown.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proxy::{FaultKind, RejectedSubject, Service, Stats};

/// An invariant the campaign checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// The alias's routing and the record in its description disagree.
    HalfApplied,
    /// An agent started a version that was rolled back, with no newer candidate since and no
    /// person's `start --version` in between.
    RestartedRollback,
}

impl ViolationKind {
    /// Name for tables.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::HalfApplied => "half-applied alias",
            Self::RestartedRollback => "rolled-back version restarted by an agent",
        }
    }
}

/// What a campaign measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Rounds run.
    pub rounds: usize,
    /// Builds deployed that fail every request.
    pub bad_builds: u64,
    /// Agent ticks run.
    pub ticks: u64,
    /// Ticks whose outcome carried an error (e.g. AWS failed after retries, lost races).
    pub tick_errors: u64,
    /// Ticks of the settle phase (faults off) whose outcome carried an error.
    pub settle_errors: u64,
    /// Announcements whose publish failed, as the ticks and commands reported them.
    pub publish_failures: u64,
    /// Commands a person ran, by result (`ok`, `rejected`, `lost race`, `failed`, ...).
    pub commands: BTreeMap<String, u64>,
    /// The proxy's counters at the end.
    pub proxy: Stats,
    /// Rollbacks seen in the `UpdateAlias` log.
    pub rollbacks: u64,
    /// Canary starts by an agent seen in the log.
    pub agent_starts: u64,
    /// Canary starts by a person seen in the log.
    pub person_starts: u64,
    /// Alias checks made (after every step).
    pub alias_checks: u64,
    /// Invariant violations by kind.
    pub violations: BTreeMap<ViolationKind, u64>,
    /// Messages received by the unfiltered queue.
    pub pages: u64,
    /// Messages received by the filtered (`event` = `rolled_back`) queue.
    pub pages_filtered: u64,
    /// Rollbacks with no `rolled_back` page (with the right `canary_version`) in the unfiltered
    /// queue by the end of their round.
    pub pages_lost: u64,
    /// The same, for the filtered queue.
    pub pages_lost_filtered: u64,
    /// Lost pages (unfiltered) whose rollback did reach the queue, but only as a re-send with
    /// `event` = `retry` (which carries no `canary_version` and misses the filter).
    pub lost_as_retry: u64,
    /// Messages (either queue) whose `event` is `retry` or that carry `resend` = `true`.
    pub resent_pages: u64,
    /// Messages (per queue) whose `id` attribute was seen before in that queue.
    pub duplicates: u64,
    /// Messages without an `id` attribute (duplicates among them cannot be recognised).
    pub pages_without_id: u64,
    /// Ticks and commands that panicked.
    pub panics: u64,
    /// Ticks and commands that did not finish within [`CampaignConfig::hang_after`].
    pub hangs: u64,
    /// Subjects the proxy refused (first 20).
    pub rejected_subjects: Vec<RejectedSubject>,
    /// Descriptions of the first violations, lost pages, panics and hangs (up to 30).
    pub examples: Vec<String>,
    /// Wall-clock time of the campaign.
    pub elapsed: Duration,
}

/// How many examples a report keeps.
pub(super) const EXAMPLES: usize = 30;

impl Report {
    /// Violations of every kind.
    #[must_use]
    pub fn violations_total(&self) -> u64 {
        self.violations.values().sum()
    }

    /// Violations of `kind`.
    #[must_use]
    pub fn violations_of(&self, kind: ViolationKind) -> u64 {
        self.violations.get(&kind).copied().unwrap_or(0)
    }

    pub(super) fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }

    pub(super) fn violation(&mut self, kind: ViolationKind, text: String) {
        *self.violations.entry(kind).or_default() += 1;
        self.example(format!("{}: {text}", kind.name()));
    }

    /// The figures as a Markdown table, then the examples.
    #[must_use]
    pub fn markdown(&self) -> String {
        let mut out = String::from("| figure | value |\n|---|---|\n");
        for (k, v) in [self.work_rows(), self.outcome_rows(), self.page_rows()].concat() {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
        if !self.rejected_subjects.is_empty() {
            out.push_str("\nSubjects refused (first ones):\n");
            for r in &self.rejected_subjects {
                out.push_str(&format!("- `{:?}`: {}\n", r.subject, r.why));
            }
        }
        if !self.examples.is_empty() {
            out.push_str("\nFirst findings:\n");
            for e in &self.examples {
                out.push_str(&format!("- {e}\n"));
            }
        }
        out
    }

    /// What the campaign did: rounds, ticks, commands, requests and the faults injected.
    pub(super) fn work_rows(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = vec![
            ("rounds".into(), self.rounds.to_string()),
            (
                "failing builds deployed".into(),
                self.bad_builds.to_string(),
            ),
            ("agent ticks".into(), self.ticks.to_string()),
            (
                "person commands".into(),
                self.commands.values().sum::<u64>().to_string(),
            ),
            (
                "  by result".into(),
                self.commands
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "requests through the proxy".into(),
                self.proxy.requests.to_string(),
            ),
            (
                "UpdateAlias requests checked".into(),
                self.proxy.update_alias.to_string(),
            ),
            (
                "alias writes (applied)".into(),
                self.proxy.alias_writes.to_string(),
            ),
            (
                "412 PreconditionFailed".into(),
                self.proxy.precondition_failed.to_string(),
            ),
            (
                "faults injected".into(),
                self.proxy.total_faults().to_string(),
            ),
        ];
        for kind in FaultKind::ALL {
            rows.push((
                format!("  {}", kind.name()),
                self.proxy.faults_of(kind).to_string(),
            ));
        }
        for service in [
            Service::Lambda,
            Service::Monitoring,
            Service::Sns,
            Service::DynamoDb,
        ] {
            let n: u64 = self
                .proxy
                .faults
                .iter()
                .filter(|((s, _), _)| *s == service)
                .map(|(_, n)| n)
                .sum();
            rows.push((format!("  on {}", service.name()), n.to_string()));
        }
        rows
    }

    /// How the agent fared: refusals, errors, starts, rollbacks and the violations found.
    pub(super) fn outcome_rows(&self) -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = vec![
            (
                "subjects refused (400)".into(),
                self.proxy.subject_rejected.to_string(),
            ),
            ("ticks with an error".into(), self.tick_errors.to_string()),
            (
                "  of them in the settle phase".into(),
                self.settle_errors.to_string(),
            ),
            (
                "publish failures reported".into(),
                self.publish_failures.to_string(),
            ),
            (
                "starts (agent / person)".into(),
                format!("{} / {}", self.agent_starts, self.person_starts),
            ),
            ("rollbacks".into(), self.rollbacks.to_string()),
            ("alias checks".into(), self.alias_checks.to_string()),
            ("**violations**".into(), self.violations_total().to_string()),
        ];
        for kind in [ViolationKind::HalfApplied, ViolationKind::RestartedRollback] {
            rows.push((
                format!("  {}", kind.name()),
                self.violations_of(kind).to_string(),
            ));
        }
        rows
    }

    /// What on-call received: pages, losses, re-sends and duplicates; panics, hangs, time.
    pub(super) fn page_rows(&self) -> Vec<(String, String)> {
        vec![
            (
                "pages received (unfiltered / filtered)".into(),
                format!("{} / {}", self.pages, self.pages_filtered),
            ),
            (
                "**pages lost** (unfiltered)".into(),
                self.pages_lost.to_string(),
            ),
            (
                "**pages lost** (filtered on `event`)".into(),
                self.pages_lost_filtered.to_string(),
            ),
            (
                "  lost, but re-sent as `event=retry`".into(),
                self.lost_as_retry.to_string(),
            ),
            ("re-sent pages".into(), self.resent_pages.to_string()),
            ("duplicates (same `id`)".into(), self.duplicates.to_string()),
            (
                "pages without an `id`".into(),
                self.pages_without_id.to_string(),
            ),
            ("**panics**".into(), self.panics.to_string()),
            ("**hangs**".into(), self.hangs.to_string()),
            (
                "wall-clock time".into(),
                format!("{:.0} s", self.elapsed.as_secs_f64()),
            ),
        ]
    }
}
