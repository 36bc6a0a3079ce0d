//! Aliases the agent cannot read or write. Pure.
//!
//! A canary whose metrics cannot be read is remembered in its alias record
//! ([`crate::record::Record::unjudged_since`]); one whose alias cannot be written cannot be, since
//! the record is what fails to be written. So the process remembers: a warm scheduled Lambda
//! (reserved concurrency 1) and `canary run` keep an [`Outages`] between ticks, page on-call once
//! when an alias has been out of reach for the policy's `unprotected_after`, and again when the
//! agent writes it successfully. A cold start forgets, and pages again after another
//! `unprotected_after` if the outage lasts: at most one page per process and outage.

use crate::rollout::AliasState;
use std::collections::HashMap;

/// What the agent could not do with an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Reading it failed.
    Read,
    /// Writing it failed (an error other than a race it lost, or races lost on every attempt).
    Write,
}

impl Reach {
    /// "read" or "write".
    #[must_use]
    pub fn verb(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// One alias's outage.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// When the first failure of this outage happened (epoch seconds).
    pub since: i64,
    /// When the latest failure happened.
    pub last_at: i64,
    /// What failed last.
    pub reach: Reach,
    /// The latest error, as the adapter worded it.
    pub error: String,
    /// The stable version, as last read (0 if the alias was never read).
    pub stable: u64,
    /// The canary version and its weight, as last read.
    pub canary: Option<(u64, f64)>,
    /// Whether on-call was told (the "unprotected" page was accepted by SNS).
    pub paged: bool,
}

/// The outages of one process, by `function:alias`.
#[derive(Debug, Default)]
pub struct Outages {
    by_alias: HashMap<String, Outage>,
}

impl Outages {
    /// Records a failure of `key` at `now` (with the alias as read, if it was). Returns the
    /// outage when its "unprotected" page is due: it has lasted `after_secs` and on-call was not
    /// told yet. Call [`Outages::paged`] once SNS accepted the page.
    pub fn failed(
        &mut self,
        key: &str,
        now: i64,
        reach: Reach,
        error: &str,
        seen: Option<&AliasState>,
        after_secs: i64,
    ) -> Option<Outage> {
        let o = self
            .by_alias
            .entry(key.to_string())
            .or_insert_with(|| Outage {
                since: now,
                last_at: now,
                reach,
                error: String::new(),
                stable: 0,
                canary: None,
                paged: false,
            });
        // A clock that went backwards starts the outage again rather than paging early.
        if now < o.since {
            o.since = now;
        }
        o.last_at = now;
        o.reach = reach;
        o.error = error.to_string();
        if let Some(s) = seen {
            o.stable = s.stable;
            o.canary = s.canary.map(|c| (c.version, c.weight));
        }
        (!o.paged && now.saturating_sub(o.since) >= after_secs).then(|| o.clone())
    }

    /// Marks `key`'s outage as told to on-call.
    pub fn paged(&mut self, key: &str) {
        if let Some(o) = self.by_alias.get_mut(key) {
            o.paged = true;
        }
    }

    /// The agent wrote `key` (or read it and found nothing to protect). Ends an outage nobody
    /// was told about; returns one on-call was told about, whose "protected again" page is due:
    /// call [`Outages::cleared`] once SNS accepted it (until then it stays, and is returned again
    /// by the next success).
    pub fn recovered(&mut self, key: &str) -> Option<Outage> {
        match self.by_alias.get(key) {
            Some(o) if o.paged => Some(o.clone()),
            Some(_) => {
                self.by_alias.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets `key`'s outage (its "protected again" page was sent).
    pub fn cleared(&mut self, key: &str) {
        self.by_alias.remove(key);
    }

    /// Forgets the outages of aliases no policy protects any more.
    pub fn retain(&mut self, keys: &[String]) {
        self.by_alias.retain(|k, _| keys.contains(k));
    }

    /// The outage of `key`, if there is one.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Outage> {
        self.by_alias.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Record, Routing};
    use proptest::prelude::*;

    const K: &str = "f:live";

    fn state() -> AliasState {
        AliasState {
            stable: 3,
            canary: Some(Routing {
                version: 4,
                weight: 10.0,
            }),
            candidate: Some(4),
            record: Record::default(),
        }
    }

    #[test]
    fn pages_once_after_the_set_time_and_again_when_writes_succeed() {
        let mut o = Outages::default();
        let s = state();
        assert_eq!(
            o.failed(K, 100, Reach::Write, "AccessDenied", Some(&s), 300),
            None
        );
        assert_eq!(
            o.failed(K, 399, Reach::Write, "AccessDenied", None, 300),
            None
        );
        let due = o
            .failed(K, 400, Reach::Write, "AccessDenied", None, 300)
            .expect("due after 300 s");
        assert_eq!(
            (due.since, due.stable, due.canary),
            (100, 3, Some((4, 10.0)))
        );
        // Not accepted by SNS: due again on the next failure.
        assert!(o.failed(K, 460, Reach::Write, "x", None, 300).is_some());
        o.paged(K);
        assert_eq!(o.failed(K, 520, Reach::Write, "x", None, 300), None);
        let back = o.recovered(K).expect("protected page due");
        assert!(back.paged);
        // Not accepted: due again on the next success, and a failure in between pages nothing.
        assert_eq!(o.failed(K, 580, Reach::Read, "x", None, 300), None);
        assert!(o.recovered(K).is_some());
        o.cleared(K);
        assert_eq!(o.recovered(K), None);
        assert_eq!(
            o.failed(K, 600, Reach::Write, "x", None, 300),
            None,
            "a new outage starts"
        );
        assert_eq!(o.get(K).map(|o| o.since), Some(600));
    }

    #[test]
    fn a_short_outage_nobody_was_told_about_ends_silently() {
        let mut o = Outages::default();
        assert_eq!(o.failed(K, 100, Reach::Write, "x", None, 300), None);
        assert_eq!(o.recovered(K), None);
        assert_eq!(o.get(K), None);
        assert_eq!(o.failed(K, 350, Reach::Write, "x", None, 300), None);
    }

    #[test]
    fn a_clock_that_goes_back_restarts_the_outage_instead_of_paging_early() {
        let mut o = Outages::default();
        o.failed(K, 1_000, Reach::Write, "x", None, 300);
        assert_eq!(o.failed(K, 10, Reach::Write, "x", None, 300), None);
        assert!(o.failed(K, 310, Reach::Write, "x", None, 300).is_some());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut o = Outages::default();
        o.failed(K, i64::MIN, Reach::Write, "x", None, 300);
        assert!(o
            .failed(K, i64::MAX, Reach::Write, "x", None, 300)
            .is_some());
    }

    #[test]
    fn policies_that_are_gone_are_forgotten() {
        let mut o = Outages::default();
        o.failed(K, 1, Reach::Write, "x", None, 300);
        o.failed("g:live", 1, Reach::Write, "x", None, 300);
        o.retain(&["g:live".to_string()]);
        assert!(o.get(K).is_none());
        assert!(o.get("g:live").is_some());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Fail(i64),
        Succeed,
        SnsAccepts(bool),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (0i64..200).prop_map(Step::Fail),
                Just(Step::Succeed),
                any::<bool>().prop_map(Step::SnsAccepts),
            ],
            0..60,
        )
    }

    proptest! {
        /// Pages alternate: "unprotected" only after a failure that lasted the set time since the
        /// outage began, at most once per outage; "protected again" only after an "unprotected"
        /// that SNS accepted.
        #[test]
        fn pages_alternate_and_unprotected_waits_for_the_set_time(script in steps()) {
            let mut o = Outages::default();
            let mut now = 0i64;
            let mut accepts = true;
            let mut told = false; // on-call's view: last page accepted was "unprotected"
            let mut first_failure: Option<i64> = None;
            for step in script {
                match step {
                    Step::SnsAccepts(a) => accepts = a,
                    Step::Fail(dt) => {
                        now += dt;
                        first_failure.get_or_insert(now);
                        if let Some(due) = o.failed(K, now, Reach::Write, "e", None, 300) {
                            prop_assert!(!told, "unprotected twice in one outage");
                            prop_assert!(now - first_failure.unwrap_or(now) >= 300);
                            prop_assert_eq!(Some(due.since), first_failure);
                            if accepts {
                                o.paged(K);
                                told = true;
                            }
                        }
                    }
                    Step::Succeed => {
                        if let Some(back) = o.recovered(K) {
                            prop_assert!(told && back.paged);
                            if accepts {
                                o.cleared(K);
                                told = false;
                                first_failure = None;
                            }
                        } else {
                            prop_assert!(!told);
                            first_failure = None;
                        }
                    }
                }
            }
        }
    }
}
