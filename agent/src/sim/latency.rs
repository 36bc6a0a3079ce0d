//! Handler time of one version over one period, as a mixture of shifted lognormals, and the
//! per-period statistic CloudWatch would publish for it.
//!
//! Each request's handler time is `add_ms + LogNormal(mu, sigma)`: the version's lognormal
//! (moved by its drift) plus whatever it paid extra (a tail regression, a cold start). The traffic
//! model draws how many requests fell in each component; the statistic is then taken from those
//! requests: by drawing every one when there are few, and otherwise by drawing the order
//! statistic the policy's percentile picks (a uniform order statistic, drawn from its Beta distribution)
//! and mapping it through the mixture's quantile function. Normal quantiles, the Beta draw and
//! the error function come from statrs.

use super::rng::Rng;
use crate::policy::LatencyStat;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;
use statrs::statistics::{Max, Min};

/// Up to this many requests in a period, every request's time is drawn.
pub const SAMPLE_MAX: u64 = 256;

/// Requests whose handler time is `add_ms + LogNormal(mu, sigma)` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    /// Log of the lognormal part's median (milliseconds).
    pub mu: f64,
    /// Log-scale spread of the lognormal part (0 = every request takes the median).
    pub sigma: f64,
    /// Milliseconds every request of the component takes on top.
    pub add_ms: f64,
    /// Requests in the component.
    pub count: u64,
}

impl Component {
    fn cdf(&self, x: f64) -> f64 {
        let y = x - self.add_ms;
        if y <= 0.0 {
            return 0.0;
        }
        if self.sigma <= 0.0 {
            return if y.ln() >= self.mu { 1.0 } else { 0.0 };
        }
        0.5 * erfc(-(y.ln() - self.mu) / (self.sigma * std::f64::consts::SQRT_2))
    }

    fn sf(&self, x: f64) -> f64 {
        let y = x - self.add_ms;
        if y <= 0.0 {
            return 1.0;
        }
        if self.sigma <= 0.0 {
            return if y.ln() >= self.mu { 0.0 } else { 1.0 };
        }
        0.5 * erfc((y.ln() - self.mu) / (self.sigma * std::f64::consts::SQRT_2))
    }

    fn quantile(&self, p: f64) -> f64 {
        self.add_ms + (self.mu + self.sigma * standard_normal_quantile(p)).exp()
    }

    fn mean(&self) -> f64 {
        self.add_ms + (self.mu + self.sigma * self.sigma / 2.0).exp()
    }

    fn second_moment(&self) -> f64 {
        let m = (self.mu + self.sigma * self.sigma / 2.0).exp();
        let m2 = (2.0 * self.mu + 2.0 * self.sigma * self.sigma).exp();
        self.add_ms * self.add_ms + 2.0 * self.add_ms * m + m2
    }

    fn draw(&self, rng: &mut Rng) -> f64 {
        self.add_ms + (self.mu + self.sigma * rng.normal()).exp()
    }
}

/// The standard normal quantile (statrs).
#[must_use]
pub fn standard_normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    Normal::standard().inverse_cdf(p)
}

/// The handler times of one version's requests in one period: components with their counts.
/// As a distribution (statrs [`ContinuousCDF`]) each component weighs its share of the requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mixture {
    components: Vec<Component>,
    total: u64,
}

impl Mixture {
    /// Adds `c.count` requests of component `c` (merged with an identical component).
    pub fn add(&mut self, c: Component) {
        if c.count == 0 {
            return;
        }
        self.total += c.count;
        if let Some(same) = self
            .components
            .iter_mut()
            .find(|x| x.mu == c.mu && x.sigma == c.sigma && x.add_ms == c.add_ms)
        {
            same.count += c.count;
        } else {
            self.components.push(c);
        }
    }

    /// Requests in the mixture.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.total
    }

    fn weights(&self) -> impl Iterator<Item = (f64, &Component)> {
        let total = self.total.max(1) as f64;
        self.components
            .iter()
            .map(move |c| (c.count as f64 / total, c))
    }

    /// Adds every request of `other`.
    pub fn merge(&mut self, other: &Mixture) {
        for c in &other.components {
            self.add(*c);
        }
    }

    /// How many of the requests took longer than `ms`: each component's count thinned by its
    /// probability of exceeding it (the count CloudWatch's percentile rank `PR(:ms)` implies).
    pub fn slower_than(&self, rng: &mut Rng, ms: f64) -> u64 {
        self.components
            .iter()
            .map(|c| rng.binomial(c.count, c.sf(ms)))
            .sum()
    }

    /// Mean handler time of the mixture.
    #[must_use]
    pub fn mean(&self) -> f64 {
        self.weights().map(|(w, c)| w * c.mean()).sum()
    }

    /// Variance of one request's handler time.
    #[must_use]
    pub fn variance(&self) -> f64 {
        let m = self.mean();
        let m2: f64 = self.weights().map(|(w, c)| w * c.second_moment()).sum();
        (m2 - m * m).max(0.0)
    }

    /// The period's `stat` over its requests, drawn as CloudWatch would compute it from them;
    /// `None` without requests.
    pub fn statistic(&self, rng: &mut Rng, stat: LatencyStat) -> Option<f64> {
        let n = self.total;
        if n == 0 {
            return None;
        }
        if n <= SAMPLE_MAX {
            return Some(self.sampled(rng, stat));
        }
        let rank = match stat {
            LatencyStat::Average => {
                let sd = (self.variance() / n as f64).sqrt();
                return Some((self.mean() + sd * rng.normal()).max(f64::MIN_POSITIVE));
            }
            LatencyStat::Maximum => n,
            _ => rank_of(n, stat.quantile().unwrap_or(0.5)),
        };
        Some(self.inverse_cdf(uniform_order_statistic(rng, n, rank)))
    }

    fn sampled(&self, rng: &mut Rng, stat: LatencyStat) -> f64 {
        let mut xs: Vec<f64> = Vec::with_capacity(self.total as usize);
        for c in &self.components {
            xs.extend((0..c.count).map(|_| c.draw(rng)));
        }
        match stat {
            LatencyStat::Average => xs.iter().sum::<f64>() / xs.len() as f64,
            LatencyStat::Maximum => xs.iter().copied().fold(0.0, f64::max),
            _ => {
                let rank = rank_of(xs.len() as u64, stat.quantile().unwrap_or(0.5));
                let idx = (rank as usize).clamp(1, xs.len()) - 1;
                let (_, v, _) = xs.select_nth_unstable_by(idx, f64::total_cmp);
                *v
            }
        }
    }
}

/// The 1-based rank of the `q` quantile among `n` sorted values (nearest rank).
fn rank_of(n: u64, q: f64) -> u64 {
    ((n as f64 * q).ceil() as u64).clamp(1, n)
}

/// Draws the `rank`-th smallest of `n` independent uniforms: Beta(rank, n − rank + 1), exactly.
fn uniform_order_statistic(rng: &mut Rng, n: u64, rank: u64) -> f64 {
    rng.beta(rank as f64, (n - rank + 1) as f64)
}

impl Min<f64> for Mixture {
    fn min(&self) -> f64 {
        self.components
            .iter()
            .map(|c| c.add_ms)
            .reduce(f64::min)
            .unwrap_or(0.0)
    }
}

impl Max<f64> for Mixture {
    fn max(&self) -> f64 {
        f64::INFINITY
    }
}

impl ContinuousCDF<f64, f64> for Mixture {
    fn cdf(&self, x: f64) -> f64 {
        self.weights().map(|(w, c)| w * c.cdf(x)).sum()
    }

    fn sf(&self, x: f64) -> f64 {
        self.weights().map(|(w, c)| w * c.sf(x)).sum()
    }

    /// Bisection between the components' own `p` quantiles, which bracket the mixture's; the
    /// upper half inverts the survival function so that tails keep their precision.
    fn inverse_cdf(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        let quantiles = self.components.iter().map(|c| c.quantile(p));
        let (mut low, mut high) = quantiles.fold((f64::INFINITY, 0.0_f64), |(lo, hi), q| {
            (lo.min(q), hi.max(q))
        });
        if self.components.len() <= 1 || low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            return high;
        }
        let upper = p > 0.5;
        let target = if upper { 1.0 - p } else { p };
        for _ in 0..80 {
            let mid = low + (high - low) / 2.0;
            let above = if upper {
                self.sf(mid) <= target
            } else {
                self.cdf(mid) >= target
            };
            if above {
                high = mid;
            } else {
                low = mid;
            }
            if high - low <= 1e-9 * high {
                break;
            }
        }
        low + (high - low) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lognormal(median: f64, sigma: f64, add_ms: f64, count: u64) -> Component {
        Component {
            mu: median.ln(),
            sigma,
            add_ms,
            count,
        }
    }

    fn mean_stat(m: &Mixture, stat: LatencyStat, runs: u32) -> f64 {
        let mut r = Rng::new(3);
        (0..runs)
            .filter_map(|_| m.statistic(&mut r, stat))
            .sum::<f64>()
            / f64::from(runs)
    }

    #[test]
    fn p99_of_a_lognormal_is_near_its_true_value() {
        let truth = (80f64.ln() + 0.5 * 2.326_347_874).exp();
        for n in [200, 500, 5000, 100_000] {
            let mut m = Mixture::default();
            m.add(lognormal(80.0, 0.5, 0.0, n));
            let mean = mean_stat(&m, LatencyStat::P99, 300);
            assert!((mean / truth - 1.0).abs() < 0.1, "n={n}: {mean} vs {truth}");
        }
    }

    #[test]
    fn mixture_quantiles_follow_the_slow_share() {
        // 3% of requests 500 ms slower: p99 lands in the slow component, p50 does not move.
        let mut m = Mixture::default();
        m.add(lognormal(80.0, 0.5, 0.0, 97_000));
        m.add(lognormal(80.0, 0.5, 500.0, 3_000));
        let p99 = m.inverse_cdf(0.99);
        assert!(p99 > 550.0 && p99 < 700.0, "{p99}");
        assert!((m.cdf(p99) - 0.99).abs() < 1e-6);
        let p50 = m.inverse_cdf(0.5);
        assert!((p50 / 80.0 - 1.0).abs() < 0.05, "{p50}");
        for n in [100, 1000, 100_000] {
            let mut small = Mixture::default();
            small.add(lognormal(80.0, 0.5, 0.0, n * 97 / 100));
            small.add(lognormal(80.0, 0.5, 500.0, n * 3 / 100));
            let drawn = mean_stat(&small, LatencyStat::P99, 300);
            assert!(drawn > 450.0, "n={n}: p99 {drawn}");
        }
    }

    #[test]
    fn average_and_maximum_see_the_mixture() {
        let mut m = Mixture::default();
        m.add(lognormal(80.0, 0.5, 0.0, 9_000));
        m.add(lognormal(80.0, 0.5, 500.0, 1_000));
        let truth = 80.0 * (0.125f64).exp() + 50.0;
        assert!((m.mean() - truth).abs() < 1e-9);
        assert!((mean_stat(&m, LatencyStat::Average, 200) / truth - 1.0).abs() < 0.01);
        let max = mean_stat(&m, LatencyStat::Maximum, 200);
        assert!(max > 500.0 + m.components[0].quantile(0.999), "{max}");
    }

    #[test]
    fn zero_sigma_is_a_point_mass() {
        let mut m = Mixture::default();
        m.add(lognormal(80.0, 0.0, 0.0, 1000));
        let mut r = Rng::new(1);
        let p = m.statistic(&mut r, LatencyStat::P99).unwrap_or(0.0);
        assert!((p - 80.0).abs() < 1e-6, "{p}");
        assert_eq!(Mixture::default().statistic(&mut r, LatencyStat::P50), None);
    }
}
