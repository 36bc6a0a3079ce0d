//! The contenders' moves: our agent through its real `tick`, and the three peers re-implemented
//! from their documentation and source, each acting on the simulated alias.
//!
//! Every peer reads the same metrics the benchmark gives everyone on a 60 s source: per-version
//! one-minute periods (requests, 5xx, the period's p99 latency), each visible 60 s after it
//! ends, and ticks once a minute (20 s after the minute). What each peer does with them is in its
//! module: [`codedeploy`], [`flagger`], [`kayenta`] (with [`mann_whitney`], Kayenta's classifier).

pub mod codedeploy;
pub mod flagger;
pub mod kayenta;
pub mod mann_whitney;

use super::{Contender, End};
use crate::judge::Sample;
use crate::policy::Policy;
use crate::rollout::{Routing, Version};
use crate::sim::{block_on, Shared, SimAgent};

/// The peers of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// AWS CodeDeploy `Canary10Percent5Minutes` with the SAM documentation's two alarms.
    CodeDeploy,
    /// Flagger with its built-in request-success-rate and request-duration checks.
    Flagger,
    /// Kayenta's NetflixACAJudge, scheduled by Spinnaker's Orca.
    Kayenta,
}

/// Which configuration a judge runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footing {
    /// As its documentation configures it (ours: as its policy says).
    Documented,
    /// Every judge on 60 s AWS/Lambda metrics, ticking every minute, with a 10% first step.
    Equal,
}

impl Peer {
    /// Every peer, in table order.
    pub const ALL: [Self; 3] = [Self::CodeDeploy, Self::Flagger, Self::Kayenta];

    /// Judge id of scenario-file output (SCENARIOS.md).
    #[must_use]
    pub fn id(self) -> &'static str {
        match self {
            Self::CodeDeploy => "codedeploy",
            Self::Flagger => "flagger",
            Self::Kayenta => "kayenta",
        }
    }

    /// Row label of the built-in table.
    #[must_use]
    pub fn label(self, footing: Footing) -> String {
        match self {
            Self::CodeDeploy => {
                "CodeDeploy Canary10Percent5Minutes + SAM Errors>0 alarms (2 of 2 min)".to_string()
            }
            Self::Flagger => flagger::FlaggerConfig::for_footing(footing).label(),
            Self::Kayenta => {
                "Kayenta NetflixACAJudge (98%, 3 x 5 min intervals, 75/50)".to_string()
            }
        }
    }

    /// The share of traffic (percent) the peer first gives the new version.
    #[must_use]
    pub fn first_weight(self, footing: Footing) -> f64 {
        match self {
            Self::CodeDeploy => codedeploy::WEIGHT,
            Self::Flagger => flagger::FlaggerConfig::for_footing(footing)
                .weights
                .first()
                .copied()
                .unwrap_or(100.0),
            Self::Kayenta => kayenta::WEIGHT,
        }
    }

    /// A fresh contender; `seed` feeds its own random draws (Kayenta's jitter).
    pub(super) fn contender(self, footing: Footing, seed: u64) -> Box<dyn Contender> {
        match self {
            Self::CodeDeploy => Box::new(codedeploy::CodeDeploy::default()),
            Self::Flagger => Box::new(flagger::Flagger::new(flagger::FlaggerConfig::for_footing(
                footing,
            ))),
            Self::Kayenta => Box::new(kayenta::Kayenta::new(seed)),
        }
    }
}

/// Our agent, ticking with its policy.
pub(super) struct Ours {
    pub(super) agent: SimAgent,
    pub(super) policies: Vec<Policy>,
}

impl Contender for Ours {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        block_on(self.agent.tick(&self.policies, now));
        let w = world.lock();
        let f = &w.functions[0];
        let state = f.alias_state();
        let baking = crate::rollout::baking(&state).is_some();
        // A rollback in the bake is final once its recheck is over (and did not lift it).
        let rechecking = crate::rollout::rechecking(&state).is_some();
        match (f.stable, f.canary) {
            (2, None) if !baking => End::Promoted,
            (1, None) if state.record.rejected == Some(2) && !rechecking => End::RolledBack,
            _ => End::Running,
        }
    }
}

/// Points the alias at `stable` with `canary` routing, and records the write.
fn set(world: &Shared, stable: Version, canary: Option<Routing>) {
    let mut w = world.lock();
    let now = w.now;
    let f = &mut w.functions[0];
    f.stable = stable;
    f.canary = canary;
    w.history.push((now, 0, stable, canary));
}

/// Sends `weight` percent of the alias's traffic to the new version (2).
fn route(world: &Shared, weight: f64) {
    set(world, 1, Some(Routing { version: 2, weight }));
}

/// The alias back on the stable version: the run ends rolled back.
fn roll_back(world: &Shared) -> End {
    set(world, 1, None);
    End::RolledBack
}

/// The alias fully on the new version: the run ends promoted.
fn promote(world: &Shared) -> End {
    set(world, 2, None);
    End::Promoted
}

/// The new version's share of traffic now (percent), if it has one.
fn weight(world: &Shared) -> Option<f64> {
    world.lock().functions[0].canary.map(|c| c.weight)
}

/// `version`'s periods visible at `now`, oldest first.
fn visible(world: &Shared, version: Version, now: i64) -> Vec<Sample> {
    let w = world.lock();
    w.functions[0]
        .samples
        .iter()
        .filter(|(v, _, vis)| *v == version && *vis <= now)
        .map(|(_, s, _)| *s)
        .collect()
}

/// Start of the newest one-minute period whose datapoint is visible at `now` (it ended at least
/// the world's delay ago).
fn newest_period(world: &Shared, now: i64) -> i64 {
    let delay = world.lock().delay;
    (now - delay).div_euclid(60) * 60 - 60
}

/// `version`'s datapoint for the period starting at `start`, if visible at `now` (none when the
/// version served no request in it: CloudWatch has no datapoint then).
fn period(world: &Shared, version: Version, start: i64, now: i64) -> Option<Sample> {
    visible(world, version, now)
        .into_iter()
        .find(|s| s.start == start)
}

#[cfg(test)]
mod tests;
