//! The contenders' moves: our agent through its real `tick`, and the three peers re-implemented
//! from their documented rules, each acting on the simulated alias.

use super::{Contender, End};
use crate::judge::Sample;
use crate::policy::Policy;
use crate::rollout::{Routing, Version};
use crate::sim::latency::standard_normal_quantile;
use crate::sim::{block_on, Shared, SimAgent};

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
        match (f.stable, f.canary) {
            (2, None) => End::Promoted,
            (1, None) if f.alias_state().record.rejected == Some(2) => End::RolledBack,
            _ => End::Running,
        }
    }
}

fn set(world: &Shared, stable: Version, canary: Option<Routing>) {
    let mut w = world.lock();
    let now = w.now;
    let f = &mut w.functions[0];
    f.stable = stable;
    f.canary = canary;
    w.history.push((now, 0, stable, canary));
}

/// Peers start the new build at 10%.
fn begin(world: &Shared) {
    set(
        world,
        1,
        Some(Routing {
            version: 2,
            weight: 10.0,
        }),
    );
}

fn visible(world: &Shared, version: Version, now: i64) -> Vec<Sample> {
    let w = world.lock();
    w.functions[0]
        .samples
        .iter()
        .filter(|(v, _, vis)| *v == version && *vis <= now)
        .map(|(_, s, _)| *s)
        .collect()
}

/// CodeDeploy: 10% for 5 minutes, then 100%; an alarm on the alias's Errors (both versions together)
/// at ≥ 1% of the alias's expected per-minute requests, 1 of 1 one-minute periods, rolls back.
pub(super) struct CodeDeploy {
    pub(super) started: Option<i64>,
}

impl Contender for CodeDeploy {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(start) = self.started else {
            begin(world);
            self.started = Some(now);
            return End::Running;
        };
        let threshold = (world.lock().traffic.rps * 60.0 * 0.01).max(1.0);
        let mut per_minute = std::collections::BTreeMap::<i64, f64>::new();
        for v in [1, 2] {
            for s in visible(world, v, now) {
                if s.start >= start - 60 {
                    *per_minute.entry(s.start).or_default() += s.errors;
                }
            }
        }
        // The alarm evaluates the newest complete minute it can see.
        if per_minute
            .values()
            .next_back()
            .is_some_and(|&e| e >= threshold)
        {
            set(world, 1, None);
            return End::RolledBack;
        }
        if now - start >= 300 {
            set(world, 2, None);
            return End::Promoted;
        }
        End::Running
    }
}

/// Flagger: every minute, the canary's request success rate over its newest visible minute must be
/// ≥ 99% (no data within 3 minutes is a failed check); a pass adds 10% up to 50%, then promotes;
/// 5 failed checks roll back.
pub(super) struct Flagger {
    pub(super) failed: u32,
    pub(super) last_checked: i64,
}

impl Contender for Flagger {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let weight = world.lock().functions[0].canary.map(|c| c.weight);
        let Some(weight) = weight else {
            begin(world);
            return End::Running;
        };
        let newest = visible(world, 2, now)
            .into_iter()
            .rfind(|s| s.start >= now - 240);
        let pass = match newest {
            Some(s) if s.start > self.last_checked || s.requests > 0.0 => {
                self.last_checked = s.start;
                s.requests > 0.0 && 1.0 - s.errors / s.requests >= 0.99
            }
            _ => false,
        };
        if !pass {
            self.failed += 1;
            if self.failed >= 5 {
                set(world, 1, None);
                return End::RolledBack;
            }
            return End::Running;
        }
        if weight >= 50.0 {
            set(world, 2, None);
            return End::Promoted;
        }
        set(
            world,
            1,
            Some(Routing {
                version: 2,
                weight: weight + 10.0,
            }),
        );
        End::Running
    }
}

/// Kayenta: 10% for three 5-minute intervals; after each, a Mann-Whitney test (98%) per metric on
/// the per-minute series since the start: error rate (critical) and latency; a critical High
/// fails at once, otherwise score = % of metrics passing; < 50 fails, ≥ 75 after the last passes.
pub(super) struct Kayenta {
    pub(super) started: Option<i64>,
}

impl Contender for Kayenta {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let Some(start) = self.started else {
            begin(world);
            self.started = Some(now);
            return End::Running;
        };
        let elapsed = now - start;
        if elapsed % 300 != 0 || elapsed == 0 {
            return End::Running;
        }
        let c: Vec<Sample> = visible(world, 2, now)
            .into_iter()
            .filter(|s| s.start >= start - 60)
            .collect();
        let b: Vec<Sample> = visible(world, 1, now)
            .into_iter()
            .filter(|s| s.start >= start - 60)
            .collect();
        let rate = |xs: &[Sample]| {
            xs.iter()
                .filter(|s| s.requests > 0.0)
                .map(|s| s.errors / s.requests)
                .collect::<Vec<_>>()
        };
        let lat = |xs: &[Sample]| xs.iter().filter_map(|s| s.latency_ms).collect::<Vec<_>>();
        let errors_high = mann_whitney_high(&rate(&c), &rate(&b), 0.98);
        let latency_high = mann_whitney_high(&lat(&c), &lat(&b), 0.98);
        let score = if errors_high {
            0.0
        } else if latency_high {
            50.0
        } else {
            100.0
        };
        let last = elapsed >= 900;
        if score < 50.0 || (last && score < 75.0) {
            set(world, 1, None);
            return End::RolledBack;
        }
        if last {
            set(world, 2, None);
            return End::Promoted;
        }
        End::Running
    }
}

/// Mann-Whitney U (normal approximation with tie correction; exact enough for Kayenta's use):
/// whether `canary` is significantly higher than `control` at `confidence` (two-sided).
#[must_use]
pub fn mann_whitney_high(canary: &[f64], control: &[f64], confidence: f64) -> bool {
    let (n1, n2) = (canary.len() as f64, control.len() as f64);
    if canary.is_empty() || control.is_empty() {
        return false;
    }
    let mut all: Vec<(f64, bool)> = canary
        .iter()
        .map(|&x| (x, true))
        .chain(control.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum += all[i..=j].iter().filter(|(_, c)| *c).count() as f64 * avg;
        i = j + 1;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return false;
    }
    let z = (u - n1 * n2 / 2.0) / var.sqrt();
    let critical = standard_normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let med = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    z > critical && med(canary) > med(control)
}
