//! The wall clock, read in one place below `cli`, `aws` and the binary. Everything else takes
//! `now` as a value (the simulator's clock is virtual).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 for a clock set before it, saturating far after it.
#[must_use]
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch; 0 for a clock set before it.
#[must_use]
pub fn now_secs() -> i64 {
    i64::try_from(now_millis() / 1000).unwrap_or(i64::MAX)
}
