//! What `canary wait` reads from an alias: whether the version a deploy put on the candidate
//! alias has reached an outcome, and a one-line account of where its canary stands that changes
//! only when something a person cares about changes (a step, a hold's kind, a pause).

use super::{baking, rechecking, AliasState};
use crate::judge::{Judgement, Verdict, HOLDING, LATENCY_WAIT, SHARED_OUTAGE};
use crate::record::Version;

/// How the wait for one version ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The version serves all of the alias's traffic, and its bake (if any) is over.
    Promoted,
    /// The version was rolled back (by the agent or a person).
    RolledBack,
    /// A newer version replaced it before it reached an outcome of its own.
    Superseded(Version),
}

impl Finished {
    /// `canary wait`'s exit code: 0 promoted, 1 anything else.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Promoted => 0,
            Self::RolledBack | Self::Superseded(_) => 1,
        }
    }
}

/// Whether `version` has reached an outcome on an alias as read. Rolled back when it is the
/// newest version ever rolled back, the alias no longer serves it and no recheck may lift its
/// rollback (a rollback in the bake is final once its recheck is over); promoted when the alias
/// serves only it and its bake is over; superseded when a newer version is live, on canary,
/// rolled back, or on the candidate alias.
#[must_use]
pub fn finished(state: &AliasState, version: Version) -> Option<Finished> {
    let rejected = state.record.rejected;
    if rejected == Some(version) && state.stable != version {
        if rechecking(state).is_some_and(|r| r.version == version) {
            return None;
        }
        return Some(Finished::RolledBack);
    }
    if state.stable == version && state.canary.is_none() {
        return match baking(state) {
            Some(_) => None,
            None => Some(Finished::Promoted),
        };
    }
    let newer = [
        Some(state.stable),
        state.canary.map(|c| c.version),
        rejected,
        state.candidate,
    ]
    .into_iter()
    .flatten()
    .filter(|&v| v > version)
    .max();
    newer.map(Finished::Superseded)
}

/// Where the canary of `version` stands, in words that stay the same between ticks unless a
/// step, a hold's kind or a pause changes (no counts, no countdowns).
#[must_use]
pub fn standing(state: &AliasState, version: Version, judgement: Option<&Judgement>) -> String {
    if let Some(b) = baking(state).filter(|b| b.version == version) {
        let how = match judgement.map(|j| &j.verdict) {
            Some(Verdict::Regressed(_)) => "regressed, rolling back",
            None => "not judged yet",
            Some(_) => "no regression so far",
        };
        return format!(
            "v{version} at 100%, baking until {} against v{}: {how}",
            crate::text::clock(b.until),
            b.previous
        );
    }
    if let Some(r) = rechecking(state).filter(|r| r.version == version) {
        return format!(
            "v{version} rolled back in its bake; until {} the agent checks whether v{} fails alike (then v{version} is canaried again)",
            crate::text::clock(r.until),
            r.stable
        );
    }
    let Some(canary) = state.canary.filter(|c| c.version == version) else {
        return format!(
            "v{version} waits for the agent to start its canary (stable v{})",
            state.stable
        );
    };
    let at = format!(
        "v{version} at {}% (stable v{})",
        canary.weight, state.stable
    );
    if state.record.paused {
        return format!("{at}: paused");
    }
    let why = match judgement.map(|j| &j.verdict) {
        None => "not judged yet".to_string(),
        Some(Verdict::Healthy) => "healthy".to_string(),
        Some(Verdict::Regressed(_)) => "regressed, rolling back".to_string(),
        Some(Verdict::NotEnoughData(reason)) => match reason.strip_prefix(HOLDING) {
            Some(tests) => {
                let names: Vec<&str> = tests
                    .split(", ")
                    .map(|t| t.split(" evidence").next().unwrap_or(t))
                    .collect();
                format!("holding, suspicious: {}", names.join(", "))
            }
            None if reason.starts_with(LATENCY_WAIT) => {
                "waiting for latency past the warm-up".to_string()
            }
            None if reason.starts_with(SHARED_OUTAGE) => {
                "holding through a shared outage".to_string()
            }
            None => "waiting for canary requests".to_string(),
        },
    };
    format!("{at}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Record, Routing};
    use proptest::prelude::*;

    fn state(
        stable: Version,
        canary: Option<(Version, f64)>,
        candidate: Option<Version>,
    ) -> AliasState {
        AliasState {
            stable,
            canary: canary.map(|(version, weight)| Routing { version, weight }),
            candidate,
            record: Record::default(),
        }
    }

    #[test]
    fn outcomes_of_a_deploy() {
        assert_eq!(finished(&state(6, Some((7, 25.0)), Some(7)), 7), None);
        assert_eq!(
            finished(&state(6, None, Some(7)), 7),
            None,
            "not started yet"
        );
        assert_eq!(
            finished(&state(7, None, Some(7)), 7),
            Some(Finished::Promoted)
        );
        let mut back = state(6, None, Some(7));
        back.record.rejected = Some(7);
        assert_eq!(finished(&back, 7), Some(Finished::RolledBack));
        assert_eq!(
            finished(&state(6, Some((8, 5.0)), Some(8)), 7),
            Some(Finished::Superseded(8))
        );
        assert_eq!(Finished::Promoted.exit_code(), 0);
        assert_eq!(Finished::RolledBack.exit_code(), 1);
        // At 100% but still baking: not done yet; a bake rollback is a rollback.
        let mut baking = state(7, None, Some(7));
        baking.record.bake = Some(crate::record::Bake {
            version: 7,
            previous: 6,
            until: 1_795_428_900,
        });
        assert_eq!(finished(&baking, 7), None);
        assert_eq!(
            standing(&baking, 7, None),
            "v7 at 100%, baking until 10:15:00Z against v6: not judged yet"
        );
        let mut reverted = state(6, None, Some(7));
        reverted.record.rejected = Some(7);
        assert_eq!(finished(&reverted, 7), Some(Finished::RolledBack));
        // While its recheck may still lift the rollback, the wait goes on.
        reverted.record.recheck = Some(crate::record::Recheck {
            version: 7,
            stable: 6,
            from: 1_795_428_000,
            until: 1_795_428_900,
            rejected_before: None,
        });
        assert_eq!(finished(&reverted, 7), None);
        assert_eq!(
            standing(&reverted, 7, None),
            "v7 rolled back in its bake; until 10:15:00Z the agent checks whether v6 fails alike (then v7 is canaried again)"
        );
    }

    #[test]
    fn standing_names_the_hold_without_numbers_that_change_every_tick() {
        let s = state(6, Some((7, 25.0)), Some(7));
        let mut j = crate::judge::judge(
            &crate::policy::Policy::with_defaults("f"),
            &crate::judge::Observations::default(),
        );
        j.verdict = Verdict::NotEnoughData(format!(
            "{HOLDING}5xx vs baseline evidence 14 (rollback at 400), latency evidence 5 (rollback at 400)"
        ));
        assert_eq!(
            standing(&s, 7, Some(&j)),
            "v7 at 25% (stable v6): holding, suspicious: 5xx vs baseline, latency"
        );
        j.verdict = Verdict::NotEnoughData("3 of 100 canary requests at this step".into());
        assert_eq!(
            standing(&s, 7, Some(&j)),
            "v7 at 25% (stable v6): waiting for canary requests"
        );
        j.verdict = Verdict::NotEnoughData(crate::judge::LatencySeen::default().waiting(120));
        assert_eq!(
            standing(&s, 7, Some(&j)),
            "v7 at 25% (stable v6): waiting for latency past the warm-up"
        );
        j.verdict = Verdict::NotEnoughData(format!("{SHARED_OUTAGE} (3.1% 5xx): holding"));
        assert_eq!(
            standing(&s, 7, Some(&j)),
            "v7 at 25% (stable v6): holding through a shared outage"
        );
        assert_eq!(
            standing(&state(6, None, Some(7)), 7, None),
            "v7 waits for the agent to start its canary (stable v6)"
        );
    }

    proptest! {
        /// An outcome is never claimed that the alias does not show: promoted means the alias
        /// serves only the version; rolled back means it does not serve it.
        #[test]
        fn outcomes_match_the_alias(
            stable in 1u64..20,
            canary in proptest::option::of((1u64..20, 1.0f64..99.0)),
            candidate in proptest::option::of(1u64..20),
            rejected in proptest::option::of(1u64..20),
            version in 1u64..20,
            bake in proptest::option::of((1u64..20, 1u64..20)),
        ) {
            let mut s = state(stable, canary, candidate);
            s.record.rejected = rejected;
            s.record.bake = bake.map(|(version, previous)| crate::record::Bake { version, previous, until: 1 });
            match finished(&s, version) {
                Some(Finished::Promoted) => prop_assert!(s.stable == version && s.canary.is_none() && baking(&s).is_none()),
                Some(Finished::RolledBack) => prop_assert!(s.stable != version && rejected == Some(version)),
                Some(Finished::Superseded(v)) => prop_assert!(v > version),
                // Not finished: not live alone, or live alone and still baking.
                None => prop_assert!(s.stable != version || s.canary.is_some() || baking(&s).is_some()),
            }
        }
    }
}
