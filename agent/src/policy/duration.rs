//! Durations as people write them in policy files: `90s`, `2m`, `1h`, `1m30s`.

use std::time::Duration;

const NOT_A_DURATION: &str = "must be a duration of whole numbers with h, m or s (no spaces)";

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Parses `90s`, `2m`, `1h`, `1h30m`, `1m30s`: whole numbers followed by `h`, `m` or `s`, each
/// unit at most once, largest first. `0s` parses (to zero); callers decide whether zero is valid.
///
/// # Errors
///
/// A message a person understands when the text is empty, has no unit, an unknown unit, units out
/// of order, or overflows.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail =
        |why: &str| DurationError(format!("{why}, got {text:?}; write e.g. 90s, 2m or 1h30m"));
    if text.is_empty() {
        return Err(fail("must be a duration"));
    }
    let mut total: u64 = 0;
    // Rank of the previous unit: 3 = h, 2 = m, 1 = s; units must strictly decrease.
    let mut previous_rank = u8::MAX;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail(NOT_A_DURATION));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let (rank, seconds_per_unit) = match unit {
            "h" => (3, 3600),
            "m" => (2, 60),
            "s" => (1, 1),
            "" if after.is_empty() => return Err(fail("needs a unit (h, m or s)")),
            "" => return Err(fail(NOT_A_DURATION)),
            _ => return Err(fail(&format!("unknown unit {unit:?} (use h, m or s)"))),
        };
        if rank >= previous_rank {
            return Err(fail("units must appear once each, largest first"));
        }
        previous_rank = rank;
        let value: u64 = number.parse().map_err(|_| fail("number too large"))?;
        total = value
            .checked_mul(seconds_per_unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| fail("duration too large"))?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h2m3s`, `2m`, `0s`); sub-second
/// parts are dropped.
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, 'h'), (m, 'm'), (s, 's')] {
        if value > 0 {
            out.push_str(&value.to_string());
            out.push(unit);
        }
    }
    out
}
