//! Fault injection for game days: `NOTES_FAULT`, off by default.
//!
//! The value is a comma-separated list of:
//! - `crash`: every request fails the invocation (the handler returns `Err`; Lambda records an
//!   error and API Gateway answers 502), like a build that does not work at all;
//! - `error-rate:<p>`: each request answers 500 with probability `p` (0..=1);
//! - `latency:<n>ms` or `latency:<n>s`: every request is delayed by that long (at most 900 s).
//!
//! Lambda snapshots environment variables into a published version, so setting `NOTES_FAULT` at
//! deploy time produces a bad *version* the canary can judge and roll back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the environment variable that configures fault injection.
pub const ENV_VAR: &str = "NOTES_FAULT";

/// Upper bound for `latency:` (the maximum Lambda timeout).
pub const MAX_LATENCY: Duration = Duration::from_secs(900);

/// Parsed `NOTES_FAULT`. The default injects nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Every invocation fails with an error.
    pub crash: bool,
    /// Probability (0..=1) that a request answers 500.
    pub error_rate: f64,
    /// Delay added to every request.
    pub latency: Duration,
}

/// `NOTES_FAULT` has a value this code does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {ENV_VAR} value {value:?}: {reason}; expected a comma-separated list of `crash`, \
     `error-rate:<0..1>`, `latency:<n>ms|<n>s` (e.g. {ENV_VAR}=latency:300ms,error-rate:0.05), \
     or unset/empty for no faults"
)]
pub struct FaultError {
    /// The whole raw value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// Handle the request normally.
    Proceed,
    /// Fail the invocation (handler returns `Err`).
    Crash,
    /// Answer 500.
    Fail,
}

impl FaultConfig {
    /// Parses a `NOTES_FAULT` value; `None`, empty, `none` and `off` mean no faults.
    ///
    /// # Errors
    /// [`FaultError`] naming the offending item: unknown kind, duplicate kind, a rate outside
    /// 0..=1, a latency without unit (`ms`/`s`) or above [`MAX_LATENCY`].
    pub fn parse(value: Option<&str>) -> Result<Self, FaultError> {
        let Some(raw) = value else {
            return Ok(Self::default());
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") || trimmed == "off" {
            return Ok(Self::default());
        }
        let fail = |reason: String| FaultError {
            value: raw.to_owned(),
            reason,
        };
        let mut cfg = Self::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in trimmed.split(',').map(str::trim) {
            let (kind, arg) = match item.split_once(':') {
                Some((k, a)) => (k.trim(), Some(a.trim())),
                None => (item, None),
            };
            if seen.contains(&kind) {
                return Err(fail(format!("`{kind}` appears more than once")));
            }
            match (kind, arg) {
                ("crash", None) => cfg.crash = true,
                ("error-rate", Some(a)) => {
                    cfg.error_rate = match a.parse::<f64>() {
                        Ok(p) if (0.0..=1.0).contains(&p) => p,
                        _ => {
                            return Err(fail(format!(
                                "error-rate must be a number from 0 to 1, got {a:?}"
                            )))
                        }
                    }
                }
                ("latency", Some(a)) => {
                    cfg.latency = parse_duration(a).map_err(fail)?;
                }
                ("crash", Some(_)) => return Err(fail("`crash` takes no argument".into())),
                ("error-rate" | "latency", None) => {
                    return Err(fail(format!(
                        "`{kind}` needs an argument, e.g. `{kind}:...`"
                    )))
                }
                ("", _) => return Err(fail("empty item".into())),
                (other, _) => return Err(fail(format!("unknown fault `{other}`"))),
            }
            seen.push(kind);
        }
        Ok(cfg)
    }

    /// True if this configuration injects nothing.
    #[must_use]
    pub fn is_off(&self) -> bool {
        !self.crash && self.error_rate == 0.0 && self.latency.is_zero()
    }

    /// The delay to add to a request, if any.
    #[must_use]
    pub fn delay(&self) -> Option<Duration> {
        (!self.latency.is_zero()).then_some(self.latency)
    }

    /// Decides one request's fate from a uniform random `roll` in `[0, 1)`.
    #[must_use]
    pub fn outcome(&self, roll: f64) -> FaultOutcome {
        if self.crash {
            FaultOutcome::Crash
        } else if roll < self.error_rate {
            FaultOutcome::Fail
        } else {
            FaultOutcome::Proceed
        }
    }
}

fn parse_duration(a: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = a.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = a.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!(
            "latency needs a unit, `ms` or `s` (e.g. 300ms), got {a:?}"
        ));
    };
    let secs = match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => v * scale,
        _ => {
            return Err(format!(
                "latency must be a non-negative number with a unit, got {a:?}"
            ))
        }
    };
    let d = Duration::from_secs_f64(secs);
    if d > MAX_LATENCY {
        return Err(format!("latency {a:?} is above the maximum of 900s"));
    }
    Ok(d)
}

/// A tiny xorshift64* generator: enough randomness to pick which requests fail, no `rand` needed.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from any seed (mixed with splitmix64 so similar seeds diverge; never zero).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// A generator seeded from the wall clock and the request id.
    #[must_use]
    pub fn from_request(request_id: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // FNV-1a of the request id.
        let hash = request_id.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        });
        Self::new(nanos ^ hash)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FaultConfig {
        FaultConfig::parse(Some(s)).expect("valid NOTES_FAULT")
    }

    #[test]
    fn unset_and_empty_mean_off() {
        assert!(FaultConfig::parse(None).expect("ok").is_off());
        assert!(parse("").is_off());
        assert!(parse("  ").is_off());
        assert!(parse("none").is_off());
        assert!(parse("off").is_off());
    }

    #[test]
    fn parses_each_kind_and_combinations() {
        assert!(parse("crash").crash);
        assert_eq!(parse("error-rate:0.05").error_rate, 0.05);
        assert_eq!(parse("error-rate:1").error_rate, 1.0);
        assert_eq!(parse("latency:300ms").latency, Duration::from_millis(300));
        assert_eq!(parse("latency:2s").latency, Duration::from_secs(2));
        assert_eq!(parse("latency:1.5s").latency, Duration::from_millis(1500));
        let c = parse("latency:300ms, error-rate:0.25");
        assert_eq!(c.latency, Duration::from_millis(300));
        assert_eq!(c.error_rate, 0.25);
        assert!(!c.crash);
        assert_eq!(c.delay(), Some(Duration::from_millis(300)));
        assert_eq!(FaultConfig::default().delay(), None);
    }

    #[test]
    fn rejects_invalid_values_with_a_clear_message() {
        for (value, needle) in [
            ("explode", "unknown fault `explode`"),
            ("error-rate:1.5", "from 0 to 1"),
            ("error-rate:-0.1", "from 0 to 1"),
            ("error-rate:abc", "from 0 to 1"),
            ("error-rate", "needs an argument"),
            ("latency:300", "needs a unit"),
            ("latency:-5ms", "non-negative"),
            ("latency:1000s", "maximum"),
            ("crash:now", "takes no argument"),
            ("crash,crash", "more than once"),
            ("crash,,latency:1ms", "empty item"),
        ] {
            let e = FaultConfig::parse(Some(value)).expect_err(value);
            let msg = e.to_string();
            assert!(msg.contains(needle), "{value}: {msg}");
            assert!(msg.contains("NOTES_FAULT"), "{value}: {msg}");
            assert!(msg.contains(value), "{value}: {msg}");
        }
    }

    #[test]
    fn outcome_follows_config() {
        let crash = parse("crash");
        assert_eq!(crash.outcome(0.99), FaultOutcome::Crash);
        let rate = parse("error-rate:0.1");
        assert_eq!(rate.outcome(0.05), FaultOutcome::Fail);
        assert_eq!(rate.outcome(0.1), FaultOutcome::Proceed);
        assert_eq!(FaultConfig::default().outcome(0.0), FaultOutcome::Proceed);
        assert_eq!(parse("error-rate:1").outcome(0.999_999), FaultOutcome::Fail);
    }

    #[test]
    fn xorshift_is_deterministic_uniform_enough() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut zero = XorShift64::new(0);
        assert_ne!(zero.next_u64(), 0);

        let cfg = parse("error-rate:0.05");
        let mut rng = XorShift64::new(7);
        let n = 20_000;
        let mut fails = 0;
        for _ in 0..n {
            let r = rng.next_f64();
            assert!((0.0..1.0).contains(&r));
            if cfg.outcome(r) == FaultOutcome::Fail {
                fails += 1;
            }
        }
        let rate = f64::from(fails) / f64::from(n);
        assert!((0.04..0.06).contains(&rate), "observed rate {rate}");
        // Seeds from requests differ even for the same id.
        let x = XorShift64::from_request("req-1").next_u64();
        let y = XorShift64::from_request("req-2").next_u64();
        assert_ne!(x, y);
    }
}
