//! A small, fast, seeded random source and the few distributions the traffic model draws from.

/// A seeded random source (xoshiro256**; seeded with splitmix64).
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

    /// Uniform in (0, 1): safe to take the logarithm of.
    pub fn open_uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.open_uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Standard exponential (mean 1).
    pub fn exponential(&mut self) -> f64 {
        -self.open_uniform().ln()
    }

    /// Poisson with mean `lambda` (exact for small means, normal approximation above 50).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda.is_nan() || lambda <= 0.0 {
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
        if p.is_nan() || p <= 0.0 || n == 0 {
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
            if mean < 20.0 {
                // Rare events in many trials: Poisson is exact enough.
                return self.poisson(mean).min(n);
            }
            // Common events, rare non-events: count the non-events instead.
            return n - self.poisson(n as f64 * (1.0 - p)).min(n);
        }
        let sd = (mean * (1.0 - p)).sqrt();
        (mean + sd * self.normal()).round().clamp(0.0, n as f64) as u64
    }

    /// Geometric on {1, 2, ...} with the given mean (≥ 1): the size of one error cluster.
    pub fn geometric(&mut self, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 1.0 {
            return 1;
        }
        let stop = 1.0 / mean;
        // Inverse transform: P(K > k) = (1 - stop)^k.
        let k = (self.open_uniform().ln() / (1.0 - stop).ln()).floor();
        1 + k.clamp(0.0, 1e12) as u64
    }

    /// The sum of `count` independent geometric sizes with mean `mean` (exact for up to a
    /// thousand clusters, normal approximation beyond).
    pub fn geometric_sum(&mut self, count: u64, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 1.0 {
            return count;
        }
        if count <= 1000 {
            return (0..count).map(|_| self.geometric(mean)).sum();
        }
        let variance = (mean - 1.0) * mean;
        let total = count as f64 * mean + (count as f64 * variance).sqrt() * self.normal();
        total.round().max(count as f64) as u64
    }

    /// Gamma(`shape`, 1) for a whole-number shape: the sum of `shape` standard exponentials.
    pub fn gamma_whole(&mut self, shape: u64) -> f64 {
        (0..shape).map(|_| self.exponential()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(runs: u32, mut f: impl FnMut() -> f64) -> f64 {
        (0..runs).map(|_| f()).sum::<f64>() / f64::from(runs)
    }

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn binomial_and_poisson_have_the_right_means() {
        let mut r = Rng::new(1);
        assert!((mean(4000, || r.poisson(3.0) as f64) - 3.0).abs() < 0.15);
        assert!((mean(4000, || r.binomial(600, 0.01) as f64) - 6.0).abs() < 0.3);
        assert!((mean(4000, || r.binomial(100_000, 0.3) as f64) - 30_000.0).abs() < 50.0);
        assert!((mean(4000, || r.binomial(100_000, 0.9999) as f64) - 99_990.0).abs() < 1.0);
    }

    #[test]
    fn geometric_sizes_have_the_asked_mean() {
        let mut r = Rng::new(2);
        assert!((mean(20_000, || r.geometric(5.0) as f64) - 5.0).abs() < 0.15);
        assert_eq!(r.geometric(1.0), 1);
        assert!((mean(200, || r.geometric_sum(5000, 3.0) as f64) - 15_000.0).abs() < 100.0);
        assert!((mean(4000, || r.gamma_whole(3)) - 3.0).abs() < 0.1);
    }
}
