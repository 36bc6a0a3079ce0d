//! The state machine's values: what it knows about an alias, and what it decides.

use super::{EventKind, Record, Version};
use std::fmt;

/// The canary half of an alias's routing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Routing {
    /// The canary version.
    pub version: Version,
    /// Percent of traffic it receives.
    pub weight: f64,
}

/// Everything the state machine knows about one protected alias.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasState {
    /// The version the alias points at (the stable, baseline version).
    pub stable: Version,
    /// The canary, when the alias splits traffic.
    pub canary: Option<Routing>,
    /// The version the candidate alias points at, if that alias exists.
    pub candidate: Option<Version>,
    /// The agent's record.
    pub record: Record,
}

/// The action chosen for this tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Change nothing; the reason says why.
    Hold(String),
    /// Begin a canary of `version` at `weight` percent.
    Start {
        /// Canary version.
        version: Version,
        /// Percent of traffic.
        weight: f64,
    },
    /// Move the canary to step `step` (`weight` percent).
    Step {
        /// Canary version.
        version: Version,
        /// New step index.
        step: usize,
        /// Percent of traffic.
        weight: f64,
    },
    /// Make `version` the stable version (100%, no routing).
    Promote {
        /// The new stable version.
        version: Version,
    },
    /// Point the alias at `to` with no routing; `rejected` is not started again.
    Rollback {
        /// Version that gets all traffic.
        to: Version,
        /// Version recorded as rejected.
        rejected: Option<Version>,
        /// Why.
        why: String,
    },
    /// Tell on-call the canary has seen no traffic, or too little to finish its step (once per
    /// step).
    NoData,
    /// Freeze forward moves.
    Pause,
    /// Unfreeze forward moves.
    Resume,
    /// End the bake of the stable version `version`: its time is up, or a person ended it.
    Baked {
        /// The promoted version.
        version: Version,
    },
    /// The version rolled back in its bake is no longer held against it: the version before it,
    /// back on the alias, regressed against the same reference (a shared cause).
    Lift {
        /// The version whose rollback is lifted.
        version: Version,
        /// The version the alias serves, which failed alike.
        stable: Version,
        /// Its regression, in the judge's words.
        why: String,
    },
    /// Tell on-call the running canary has not been judged for `unprotected_after`.
    Unprotected {
        /// The canary version left unjudged.
        version: Version,
        /// Since when (epoch seconds).
        since: i64,
    },
}

impl Action {
    /// The event this action announces, if any (holds are silent).
    #[must_use]
    pub fn event(&self) -> Option<EventKind> {
        Some(match self {
            Self::Hold(_) => return None,
            Self::Start { .. } => EventKind::Started,
            Self::Step { .. } => EventKind::Stepped,
            Self::Promote { .. } => EventKind::Promoted,
            Self::Rollback { .. } => EventKind::RolledBack,
            Self::NoData => EventKind::NoData,
            Self::Pause => EventKind::Paused,
            Self::Resume => EventKind::Resumed,
            Self::Unprotected { .. } => EventKind::Unprotected,
            Self::Baked { .. } => EventKind::Baked,
            Self::Lift { .. } => EventKind::SharedFailure,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hold(why) => write!(f, "hold: {why}"),
            Self::Start { version, weight } => write!(f, "start v{version} at {weight}%"),
            Self::Step {
                version, weight, ..
            } => write!(f, "step v{version} to {weight}%"),
            Self::Promote { version } => write!(f, "promote v{version} to 100%"),
            Self::Rollback { to, why, .. } => write!(f, "roll back to v{to}: {why}"),
            Self::NoData => write!(f, "no canary traffic"),
            Self::Pause => write!(f, "pause"),
            Self::Resume => write!(f, "resume"),
            Self::Baked { version } => write!(f, "end the bake of v{version}"),
            Self::Lift {
                version,
                stable,
                why,
            } => write!(
                f,
                "lift v{version}'s rollback: v{stable} fails alike ({why})"
            ),
            Self::Unprotected { version, since } => {
                write!(f, "v{version} unprotected: not judged since {since}")
            }
        }
    }
}

/// A decision: the action and the alias state to write (if it changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The state to write with one conditional `UpdateAlias`; `None` when nothing changes. Its
    /// record owes the announcement of `action` (and of any other event this decision caused).
    pub next: Option<AliasState>,
    /// What was wrong with the record as read and was repaired, or announcements the full
    /// record had to give up: for the error log.
    pub problems: Vec<String>,
}

impl Decision {
    pub(super) fn new(action: Action, next: Option<AliasState>) -> Self {
        Self {
            action,
            next,
            problems: Vec::new(),
        }
    }
}
