//! A small, fast, seeded random source; the distributions the traffic model draws from are
//! statrs's, sampled with it.

use rand::distr::Distribution;
use rand_core::{Infallible, TryRng};
use statrs::distribution::{Beta, Binomial, Gamma, Geometric, NegativeBinomial, Normal, Poisson};

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

    /// Draws from a statrs distribution with this generator.
    fn draw<T, D: Distribution<T>>(&mut self, distribution: &D) -> T {
        distribution.sample(self)
    }

    /// Standard normal (statrs).
    pub fn normal(&mut self) -> f64 {
        self.draw(&Normal::standard())
    }

    /// Poisson with mean `lambda` (statrs: exact at every mean); 0 for a mean that is not
    /// positive and finite.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        match Poisson::new(lambda) {
            Ok(d) if lambda.is_finite() => self.draw::<u64, _>(&d),
            _ => 0,
        }
    }

    /// Binomial(`n`, `p`) (statrs: exact, in constant expected time); `p` outside [0, 1] is
    /// clamped, NaN counts as 0.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p.is_nan() || p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        Binomial::new(p, n).map_or(0, |d| self.draw::<u64, _>(&d).min(n))
    }

    /// Geometric on {1, 2, ...} with the given mean (≥ 1): the size of one error cluster.
    pub fn geometric(&mut self, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 1.0 {
            return 1;
        }
        Geometric::new(1.0 / mean).map_or(1, |d| self.draw::<u64, _>(&d).max(1))
    }

    /// The sum of `count` independent geometric sizes with mean `mean`: `count` plus a
    /// negative binomial number of extra requests (statrs).
    pub fn geometric_sum(&mut self, count: u64, mean: f64) -> u64 {
        if mean.is_nan() || mean <= 1.0 || count == 0 {
            return count;
        }
        NegativeBinomial::new(count as f64, 1.0 / mean)
            .map_or(count, |d| count.saturating_add(self.draw::<u64, _>(&d)))
    }

    /// Gamma(`shape`, 1) (statrs); 0 for a shape that is not positive.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        Gamma::new(shape, 1.0).map_or(0.0, |d| self.draw(&d))
    }

    /// Beta(`a`, `b`) (statrs); 0.5 for parameters that are not positive.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        Beta::new(a, b).map_or(0.5, |d| self.draw(&d))
    }
}

/// The generator as a `rand` source, so statrs's samplers can draw from it.
impl TryRng for Rng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
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
        assert!((mean(4000, || r.gamma(3.0)) - 3.0).abs() < 0.1);
        assert!((mean(4000, || r.beta(2.0, 6.0)) - 0.25).abs() < 0.01);
    }
}
