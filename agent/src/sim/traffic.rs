//! A traffic model with a seeded random source: requests, 5xx and latency per version per period.

use crate::judge::Sample;
use crate::policy::LatencyStat;

/// A small, fast, seeded random source (xoshiro256**; seeded with splitmix64).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`; the same seed gives the same stream.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson with mean `lambda` (exact for small means, normal approximation above 50).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 50.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.uniform();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }

    /// Binomial(`n`, `p`): exact for small expected counts, normal approximation otherwise.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        let mean = n as f64 * p;
        if n <= 64 || mean < 20.0 || n as f64 * (1.0 - p) < 20.0 {
            if n <= 2000 {
                return (0..n).filter(|_| self.uniform() < p).count() as u64;
            }
            // Rare events in many trials: Poisson is exact enough.
            return self.poisson(mean).min(n);
        }
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64
    }
}

/// How one build behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Build {
    /// Probability a request answers 5xx.
    pub error_rate: f64,
    /// Median latency in milliseconds.
    pub latency_median_ms: f64,
    /// Log-scale spread of latency (lognormal sigma).
    pub latency_sigma: f64,
}

impl Build {
    /// A healthy build: 0.1% 5xx, 80 ms median.
    #[must_use]
    pub fn healthy() -> Self {
        Self {
            error_rate: 0.001,
            latency_median_ms: 80.0,
            latency_sigma: 0.5,
        }
    }
}

/// The traffic both versions see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Mean requests per second to the alias.
    pub rps: f64,
    /// Log-scale minute-to-minute noise on the request rate.
    pub rate_noise: f64,
    /// Log-scale minute-to-minute noise on the error rate, shared by both versions (a noisy dependency).
    pub error_noise: f64,
    /// Chance per period of a shared error burst (a dependency blip that hits both versions).
    pub burst_chance: f64,
    /// Error rate during a burst (added to both versions).
    pub burst_error_rate: f64,
}

impl Traffic {
    /// Steady traffic at `rps`.
    #[must_use]
    pub fn steady(rps: f64) -> Self {
        Self {
            rps,
            rate_noise: 0.1,
            error_noise: 0.0,
            burst_chance: 0.0,
            burst_error_rate: 0.0,
        }
    }
}

/// Shared conditions of one period, drawn once and applied to both versions.
#[derive(Debug, Clone, Copy)]
pub struct PeriodConditions {
    rate_factor: f64,
    error_factor: f64,
    burst: f64,
}

impl Traffic {
    /// Draws the shared conditions of one period.
    pub fn conditions(&self, rng: &mut Rng) -> PeriodConditions {
        let burst = if rng.uniform() < self.burst_chance {
            self.burst_error_rate
        } else {
            0.0
        };
        PeriodConditions {
            rate_factor: (self.rate_noise * rng.normal()).exp(),
            error_factor: (self.error_noise * rng.normal() - self.error_noise.powi(2) / 2.0).exp(),
            burst,
        }
    }
}

/// Simulates one period of one version receiving `share` of the traffic.
#[allow(clippy::too_many_arguments)]
pub fn period(
    rng: &mut Rng,
    traffic: &Traffic,
    cond: &PeriodConditions,
    build: &Build,
    share: f64,
    start: i64,
    seconds: f64,
    stat: LatencyStat,
) -> (Sample, u64) {
    let n = rng.poisson(traffic.rps * share * seconds * cond.rate_factor);
    let p = (build.error_rate * cond.error_factor + cond.burst).min(1.0);
    let errors = rng.binomial(n, p);
    let latency_ms = if n == 0 {
        None
    } else {
        Some(latency_stat(rng, n, build, stat))
    };
    (
        Sample {
            start,
            requests: n as f64,
            errors: errors as f64,
            latency_ms,
        },
        errors,
    )
}

fn latency_stat(rng: &mut Rng, n: u64, build: &Build, stat: LatencyStat) -> f64 {
    let mu = build.latency_median_ms.ln();
    let s = build.latency_sigma;
    // Above a few thousand requests the sample statistic is close to its asymptotic distribution.
    if n > 2000 {
        let z = match stat.quantile() {
            Some(q) => inverse_normal(q),
            None if stat == LatencyStat::Average => {
                return (mu + s * s / 2.0).exp()
                    * (1.0 + s / (n as f64).sqrt() * rng.normal() * 0.5)
            }
            None => inverse_normal(1.0 - 1.0 / n as f64),
        };
        let q = stat.quantile().unwrap_or(0.5);
        let density = (-(z * z) / 2.0).exp() / (std::f64::consts::TAU).sqrt();
        let sd = (q * (1.0 - q) / n as f64).sqrt() / density.max(1e-9);
        return (mu + s * (z + sd * rng.normal())).exp();
    }
    let mut xs: Vec<f64> = (0..n).map(|_| (mu + s * rng.normal()).exp()).collect();
    match stat {
        LatencyStat::Average => xs.iter().sum::<f64>() / n as f64,
        LatencyStat::Maximum => xs.iter().copied().fold(0.0, f64::max),
        _ => {
            let q = stat.quantile().unwrap_or(0.5);
            let idx = (((n as f64) * q).ceil() as usize).clamp(1, xs.len()) - 1;
            let (_, v, _) = xs.select_nth_unstable_by(idx, f64::total_cmp);
            *v
        }
    }
}

/// Inverse standard normal cdf (Acklam's rational approximation; |error| < 1.2e-9).
#[must_use]
pub fn inverse_normal(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn binomial_and_poisson_have_the_right_means() {
        let mut r = Rng::new(1);
        let runs = 4000;
        let mean = |f: &mut dyn FnMut() -> u64| {
            (0..runs).map(|_| f() as f64).sum::<f64>() / f64::from(runs)
        };
        assert!((mean(&mut || r.poisson(3.0)) - 3.0).abs() < 0.15);
        assert!((mean(&mut || r.binomial(600, 0.01)) - 6.0).abs() < 0.3);
        assert!((mean(&mut || r.binomial(100_000, 0.3)) - 30_000.0).abs() < 50.0);
    }

    #[test]
    fn inverse_normal_matches_known_quantiles() {
        assert!((inverse_normal(0.99) - 2.326_347_874).abs() < 1e-6);
        assert!((inverse_normal(0.5)).abs() < 1e-9);
    }

    #[test]
    fn p99_of_a_lognormal_is_near_its_true_value() {
        let mut r = Rng::new(3);
        let b = Build::healthy();
        let truth = (b.latency_median_ms.ln() + b.latency_sigma * 2.326).exp();
        for n in [500, 5000] {
            let v: Vec<f64> = (0..200)
                .map(|_| latency_stat(&mut r, n, &b, LatencyStat::P99))
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            assert!((m / truth - 1.0).abs() < 0.1, "n={n}: {m} vs {truth}");
        }
    }
}
