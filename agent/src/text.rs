//! Small text helpers several modules need (durations for people, cleaning text from outside).
//!
//! Lives below `rollout`, `notify`, `tick` and `cli` so none of them imports another for these.

/// Formats seconds as `45s`, `12m`, `2h5m`; never panics, whatever the input.
#[must_use]
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 0 => format!("-{}", human_duration(s.saturating_neg())),
        s if s < 90 => format!("{s}s"),
        s if s < 3600 => format!("{}m", (s + 30) / 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Time of day (UTC) of epoch seconds, `HH:MM:SSZ`: for `canary wait`'s lines and when a bake
/// ends.
#[must_use]
pub fn clock(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Text from outside (a person's `--reason`, an error message) made safe for one line: control
/// characters (line breaks, tabs, escapes) become spaces, runs of spaces collapse, and the result
/// is at most `max` characters (cut with `...`).
#[must_use]
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    cut(&out, max)
}

/// `text` cut to at most `max` characters, ending in `...` when cut.
#[must_use]
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut t: String = text.chars().take(keep).collect();
    t.push_str(&"...".chars().take(max - keep).collect::<String>());
    t
}

/// A line SNS accepts as a `Subject`: printable ASCII only (the arrows and ellipses of our own
/// wording are spelled `->` and `...`, anything else non-ASCII becomes `?`), no control
/// characters, starting with a letter, digit or punctuation mark, and shorter than `limit`
/// characters.
#[must_use]
pub fn ascii_subject(text: &str, limit: usize) -> String {
    let mut ascii = String::with_capacity(text.len());
    for c in one_line(text, usize::MAX).chars() {
        match c {
            '→' => ascii.push_str("->"),
            '…' => ascii.push_str("..."),
            '×' => ascii.push('x'),
            c if c.is_ascii() => ascii.push(c),
            _ => ascii.push('?'),
        }
    }
    let trimmed = ascii.trim_start_matches(|c: char| !c.is_ascii_graphic());
    let subject = if trimmed.is_empty() {
        "lambda-canary".to_string()
    } else {
        trimmed.to_string()
    };
    cut(&subject, limit.saturating_sub(1).max(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(720), "12m");
        assert_eq!(human_duration(7500), "2h5m");
        assert_eq!(human_duration(i64::MIN), "-2562047788015215h30m");
    }

    #[test]
    fn reasons_lose_their_line_breaks() {
        assert_eq!(
            one_line("bad deploy\r\nsee\tticket 42\u{1b}[31m", 100),
            "bad deploy see ticket 42 [31m"
        );
        assert_eq!(one_line("abcdefghij", 6), "abc...");
    }

    #[test]
    fn subjects_follow_sns_rules() {
        let s = ascii_subject("ROLLED BACK f v3 → v2: p99 … ×2 ünïcode", 100);
        assert_eq!(s, "ROLLED BACK f v3 -> v2: p99 ... x2 ?n?code");
        assert_eq!(ascii_subject("\n\n  ", 100), "lambda-canary");
        assert_eq!(ascii_subject(&"x".repeat(300), 100).len(), 99);
    }

    proptest! {
        #[test]
        fn any_text_makes_a_valid_subject(text in ".*", limit in 0usize..200) {
            let s = ascii_subject(&text, limit);
            prop_assert!(s.len() < limit.max(5));
            prop_assert!(s.chars().all(|c| c.is_ascii() && !c.is_control()));
            prop_assert!(s.starts_with(|c: char| c.is_ascii_graphic()));
        }
    }
}
