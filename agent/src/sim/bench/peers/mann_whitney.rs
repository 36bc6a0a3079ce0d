//! Kayenta's metric classifier, re-implemented from its source (spinnaker/kayenta):
//! `kayenta-judge/.../classifiers/metric/MannWhitneyClassifier.scala`,
//! `kayenta-mannwhitney/.../MannWhitney.scala` and `BrentSolver.java`,
//! `kayenta-judge/.../detectors/IQRDetector.scala`, `.../stats/EffectSizes.scala`.
//!
//! What the real code does, and so what this does:
//! - No p-value. `MannWhitney.mannWhitneyUTest` ports R's `wilcox.test(conf.int = TRUE,
//!   exact = FALSE, correct = TRUE)`: the normal approximation of the rank-sum statistic with the
//!   tie correction of its variance and a ±0.5 continuity correction, inverted by root finding
//!   into a confidence interval for the location shift (experiment − control) and its
//!   Hodges–Lehmann estimate. It uses this approximation at every sample size; it never calls
//!   commons-math's `MannWhitneyUTest` (which, in 3.6.1, also uses the normal approximation at
//!   every size, without continuity or tie correction). statrs's `mannwhitneyu` computes p-values
//!   (exact for small tie-free samples), which is not what Kayenta does, so only statrs's `Normal`
//!   is used here, for the quantile.
//! - The roots are found by R's `zeroin` (Brent's method) as `BrentSolver.java` ports it, with
//!   its absolute tolerance of 1e-4 in the units of the metric; the statistic is a step function
//!   of the shift, so where the interval ends depends on that solver, and it is reproduced here.
//! - `High` when the interval's lower end is above `tolerance · |estimate|` (0.25 in
//!   NetflixACAJudge) and the mean ratio experiment/control is at least `allowedIncrease`
//!   (ignored when either mean is 0); `Low` symmetrically.

use statrs::distribution::{ContinuousCDF, Normal};

/// Which change fails a metric (`direction` in a canary config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Only a significant increase fails (error counts, latency).
    Increase,
    /// Only a significant decrease fails.
    Decrease,
    /// Either fails (Kayenta's default).
    Either,
}

/// How one metric is judged: the `analysisConfigurations.canary` block of a Kayenta canary
/// config (docs/canary-config.md). NaN values are always removed (`nanStrategy: remove`, the
/// default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricConfig {
    /// `direction`.
    pub direction: Direction,
    /// `critical`: a failure of this metric fails the whole canary (score 0).
    pub critical: bool,
    /// `outliers.outlierFactor` when `outliers.strategy` is `remove`; `None` keeps outliers (the
    /// default).
    pub outlier_factor: Option<f64>,
    /// `effectSize.allowedIncrease` (mean ratio; default 1).
    pub allowed_increase: f64,
    /// `effectSize.allowedDecrease` (mean ratio; default 1).
    pub allowed_decrease: f64,
    /// `effectSize.criticalIncrease` (default 1).
    pub critical_increase: f64,
    /// `effectSize.criticalDecrease` (default 1).
    pub critical_decrease: f64,
}

impl Default for MetricConfig {
    /// Every key at the default of `NetflixACAJudge.classifyMetric`.
    fn default() -> Self {
        Self {
            direction: Direction::Either,
            critical: false,
            outlier_factor: None,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            critical_increase: 1.0,
            critical_decrease: 1.0,
        }
    }
}

/// A metric's classification label (`BaseMetricClassifier.scala`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// No significant change.
    Pass,
    /// The experiment is significantly higher.
    High,
    /// The experiment is significantly lower.
    Low,
    /// One side had no values after NaN removal.
    NoData,
    /// The classifier threw (all observations tied); the scorer ignores the metric.
    Error,
}

/// A metric's classification and whether it fails the canary on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// The label.
    pub label: Label,
    /// Whether the metric is critical and failed (the scorer then scores the canary 0).
    pub critical: bool,
}

/// The location-shift interval of `MannWhitney.mannWhitneyUTest` (experiment − control).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftInterval {
    /// Lower end of the confidence interval.
    pub lower: f64,
    /// Upper end of the confidence interval.
    pub upper: f64,
    /// Hodges–Lehmann estimate (the root of the continuity-corrected statistic).
    pub estimate: f64,
}

/// The Mann-Whitney classifier with its two constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classifier {
    /// Fraction of |estimate| the interval must clear (`tolerance`).
    pub tolerance: f64,
    /// Confidence level of the interval (`confLevel`).
    pub confidence: f64,
}

/// The classifier as `NetflixACAJudge.classifyMetric` builds it: tolerance 0.25, confidence 0.98.
pub const NETFLIX_ACA: Classifier = Classifier {
    tolerance: 0.25,
    confidence: 0.98,
};

impl Classifier {
    /// Classifies `experiment` against `control` as `NetflixACAJudge.classifyMetric` does: NaN
    /// removal, optional IQR outlier removal, then `MannWhitneyClassifier.classify`.
    /// `noise` draws standard normals for Kayenta's jitter of two constant series.
    pub fn classify(
        &self,
        control: &[f64],
        experiment: &[f64],
        config: &MetricConfig,
        noise: &mut dyn FnMut() -> f64,
    ) -> Classification {
        let prepare = |xs: &[f64]| {
            let kept: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
            match config.outlier_factor {
                Some(factor) => remove_outliers(&kept, factor),
                None => kept,
            }
        };
        let (control, experiment) = (prepare(control), prepare(experiment));
        let plain = |label| Classification {
            label,
            critical: false,
        };
        if control.is_empty() || experiment.is_empty() {
            return Classification {
                label: Label::NoData,
                critical: config.critical,
            };
        }
        if sorted(&experiment) == sorted(&control) || distinct(&[&experiment, &control]) == 1 {
            return plain(Label::Pass);
        }
        let Some((label, effect)) = self.compare(&control, &experiment, config, noise) else {
            return plain(Label::Error);
        };
        let critical = config.critical
            && match label {
                Label::High => effect.is_nan() || effect >= config.critical_increase,
                Label::Low => effect.is_nan() || effect <= config.critical_decrease,
                _ => false,
            };
        Classification { label, critical }
    }

    /// `MannWhitneyClassifier.compare`: the label and the effect size (mean ratio), or `None`
    /// where Kayenta throws (every observation tied).
    fn compare(
        &self,
        control: &[f64],
        experiment: &[f64],
        config: &MetricConfig,
        noise: &mut dyn FnMut() -> f64,
    ) -> Option<(Label, f64)> {
        // Two constant series are jittered by Gaussian noise of sd 1e-5 × their value.
        let jitter = distinct(&[experiment]) == 1 && distinct(&[control]) == 1;
        let shake = |xs: &[f64], noise: &mut dyn FnMut() -> f64| -> Vec<f64> {
            let sd = xs[0] * 1e-5;
            xs.iter().map(|&x| x + sd * noise()).collect()
        };
        let (x, y) = if jitter {
            (shake(experiment, noise), shake(control, noise))
        } else {
            (experiment.to_vec(), control.to_vec())
        };
        let shift = location_shift(&x, &y, self.confidence)?;
        let effect = mean_ratio(&y, &x);
        let bound = self.tolerance * shift.estimate.abs();
        let up = matches!(config.direction, Direction::Increase | Direction::Either);
        let down = matches!(config.direction, Direction::Decrease | Direction::Either);
        let label = if up
            && shift.lower > bound
            && (effect.is_nan() || effect >= config.allowed_increase)
        {
            Label::High
        } else if down
            && shift.upper < -bound
            && (effect.is_nan() || effect <= config.allowed_decrease)
        {
            Label::Low
        } else {
            Label::Pass
        };
        Some((label, effect))
    }
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn distinct(sets: &[&[f64]]) -> usize {
    let mut all: Vec<f64> = sets.iter().flat_map(|s| s.iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all.len()
}

/// `EffectSizes.meanRatio`: mean(experiment) / mean(control), NaN when either mean is 0.
#[must_use]
pub fn mean_ratio(control: &[f64], experiment: &[f64]) -> f64 {
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (c, e) = (mean(control), mean(experiment));
    if c == 0.0 || e == 0.0 {
        f64::NAN
    } else {
        e / c
    }
}

/// The R-7 percentile (`DescriptiveStatistics.percentile`, commons-math `Percentile` R_7) of
/// `xs` at `p` percent; NaN for no values.
#[must_use]
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let v = sorted(xs);
    match v.len() {
        0 => f64::NAN,
        1 => v[0],
        n => {
            let h = (n - 1) as f64 * p / 100.0;
            let lo = (h.floor() as usize).min(n - 1);
            let hi = (lo + 1).min(n - 1);
            v[lo] + (h - lo as f64) * (v[hi] - v[lo])
        }
    }
}

/// `IQRDetector(factor, reduceSensitivity)`: which values lie outside the fences
/// `Q1 − factor·IQR`, `Q3 + factor·IQR`; with `reduce_sensitivity` (as NetflixACAJudge uses it)
/// the fences widen to at least the 1st and 99th percentiles.
#[must_use]
pub fn iqr_outliers(xs: &[f64], factor: f64, reduce_sensitivity: bool) -> Vec<bool> {
    let (q1, q3) = (percentile(xs, 25.0), percentile(xs, 75.0));
    let iqr = q3 - q1;
    let (mut low, mut high) = (q1 - factor * iqr, q3 + factor * iqr);
    if reduce_sensitivity {
        low = low.min(percentile(xs, 1.0));
        high = high.max(percentile(xs, 99.0));
    }
    xs.iter().map(|&x| x > high || x < low).collect()
}

/// `Transforms.removeOutliers` with NetflixACAJudge's detector (`reduceSensitivity = true`).
fn remove_outliers(xs: &[f64], factor: f64) -> Vec<f64> {
    xs.iter()
        .zip(iqr_outliers(xs, factor, true))
        .filter(|(_, out)| !out)
        .map(|(&x, _)| x)
        .collect()
}

/// Every observation tied: the statistic has no variance (Kayenta throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AllTied;

/// `MannWhitney.wilcoxonDiff`: the continuity-corrected, tie-corrected standardized rank-sum
/// statistic of `x − mu` against `y`, minus `quantile`.
fn standardized(mu: f64, quantile: f64, x: &[f64], y: &[f64]) -> Result<f64, AllTied> {
    let (n, m) = (x.len() as f64, y.len() as f64);
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v - mu, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let j = (i..all.len())
            .take_while(|&k| all[k].0 == all[i].0)
            .last()
            .unwrap_or(i);
        let t = (j - i + 1) as f64;
        let average = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|(_, in_x)| *in_x).count() as f64 * average;
        ties += t * t * t - t;
        i = j + 1;
    }
    let dz = rank_sum - n * (n + 1.0) / 2.0 - n * m / 2.0;
    let correction = 0.5
        * if dz > 0.0 {
            1.0
        } else if dz < 0.0 {
            -1.0
        } else {
            0.0
        };
    let sigma = (n * m / 12.0 * ((n + m + 1.0) - ties / ((n + m) * (n + m - 1.0)))).sqrt();
    if sigma == 0.0 || sigma.is_nan() {
        return Err(AllTied);
    }
    Ok((dz - correction) / sigma - quantile)
}

/// `MannWhitney.calculateConfidenceInterval`: the interval at `confidence` and the estimate of
/// the shift `x − y`; `None` where Kayenta throws.
#[must_use]
pub fn location_shift(x: &[f64], y: &[f64], confidence: f64) -> Option<ShiftInterval> {
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (mu_min, mu_max) = (min(x) - max(y), max(x) - min(y));
    let f = |mu: f64, q: f64| standardized(mu, q, x, y);
    let root = |q: f64| -> Result<f64, AllTied> {
        let (at_min, at_max) = (f(mu_min, q)?, f(mu_max, q)?);
        if at_min <= 0.0 {
            Ok(mu_min)
        } else if at_max >= 0.0 {
            Ok(mu_max)
        } else {
            zeroin(mu_min, mu_max, at_min, at_max, |mu| f(mu, q))
        }
    };
    let z = Normal::standard().inverse_cdf((1.0 - confidence) / 2.0);
    let interval = || -> Result<ShiftInterval, AllTied> {
        let lower = root(-z)?;
        let upper = root(z)?;
        let (at_min, at_max) = (f(mu_min, 0.0)?, f(mu_max, 0.0)?);
        let estimate = zeroin(mu_min, mu_max, at_min, at_max, |mu| f(mu, 0.0))?;
        Ok(ShiftInterval {
            lower,
            upper,
            estimate,
        })
    };
    interval().ok()
}

/// Whether `v` is 0 within one ulp (commons-math `Precision.equals(v, 0)`).
fn is_zero(v: f64) -> bool {
    v.abs() <= f64::from_bits(1)
}

/// Brent's root finder as R's `zeroin` and Kayenta's `BrentSolver.solve` run it: absolute
/// tolerance 1e-4, at most 1001 steps, `fa`/`fb` the values at `a`/`b`.
fn zeroin(
    a: f64,
    b: f64,
    fa: f64,
    fb: f64,
    mut f: impl FnMut(f64) -> Result<f64, AllTied>,
) -> Result<f64, AllTied> {
    const TOLERANCE: f64 = 1e-4;
    if is_zero(fa) {
        return Ok(a);
    }
    if is_zero(fb) {
        return Ok(b);
    }
    // `b` is the best guess, `a` the previous one, `c` the far end of the bracket.
    let (mut a, mut b, mut fa, mut fb) = (a, b, fa, fb);
    let (mut c, mut fc) = (a, fa);
    for _ in 0..=1000 {
        let previous_step = b - a;
        if fc.abs() < fb.abs() {
            (a, b, c) = (b, c, b);
            (fa, fb, fc) = (fb, fc, fb);
        }
        let tol = 2.0 * f64::EPSILON * b.abs() + TOLERANCE / 2.0;
        let mut step = (c - b) / 2.0;
        if step.abs() <= tol || is_zero(fb) {
            return Ok(b);
        }
        if previous_step.abs() >= tol && fa.abs() > fb.abs() {
            if let Some(s) = interpolated_step(a, b, c, fa, fb, fc, previous_step, tol) {
                step = s;
            }
        }
        if step.abs() < tol {
            step = if step > 0.0 { tol } else { -tol };
        }
        (a, fa) = (b, fb);
        b += step;
        fb = f(b)?;
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            (c, fc) = (a, fa);
        }
    }
    Ok(b)
}

/// The secant (two points) or inverse quadratic (three points) step of `zeroin`, if it is
/// accepted over bisection.
#[allow(clippy::too_many_arguments)]
fn interpolated_step(
    a: f64,
    b: f64,
    c: f64,
    fa: f64,
    fb: f64,
    fc: f64,
    previous_step: f64,
    tol: f64,
) -> Option<f64> {
    let cb = c - b;
    let (mut p, mut q) = if a == c {
        let t1 = fb / fa;
        (cb * t1, 1.0 - t1)
    } else {
        let (qa, t1, t2) = (fa / fc, fb / fc, fb / fa);
        (
            t2 * (cb * qa * (qa - t1) - (b - a) * (t1 - 1.0)),
            (qa - 1.0) * (t1 - 1.0) * (t2 - 1.0),
        )
    };
    if p > 0.0 {
        q = -q;
    } else {
        p = -p;
    }
    (p < 0.75 * cb * q - (tol * q).abs() / 2.0 && p < (previous_step * q / 2.0).abs())
        .then(|| p / q)
}
