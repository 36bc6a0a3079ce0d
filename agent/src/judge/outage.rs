//! Shared outages: minutes in which the stable version fails well above its usual rate (a
//! dependency both versions share is down). The 5xx tests leave them out, and the canary holds
//! its step through the one going on now.

use super::Sample;

/// Fewest stable-version 5xx in a span for it to count towards a shared outage.
pub(super) const OUTAGE_MIN_ERRORS: f64 = 3.0;
/// How many times its usual rate the stable version must answer 5xx in a span for it to count
/// towards a shared outage: a stable version that always answers more than the ceiling is not
/// in an outage, and its canary is still compared with it.
pub(super) const OUTAGE_FACTOR: f64 = 3.0;
/// Without its rate from before the canary, the stable version's usual rate is this quantile
/// of its spans' rates over the canary (the lower quartile, so an outage that has lasted up to
/// three quarters of the canary is still told from its usual rate).
const USUAL_QUANTILE: f64 = 0.25;

/// The shared outage going on now: the stable version's run of failing spans that reaches one
/// of its two newest spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ongoing {
    /// Start of the run's first span, epoch seconds.
    pub(super) since: i64,
    /// End of the run's last span, epoch seconds.
    pub(super) until: i64,
    /// The stable version's 5xx in the run.
    pub(super) errors: f64,
    /// The stable version's requests in the run.
    pub(super) requests: f64,
    /// The usual rate it is told from.
    pub(super) usual: f64,
}

/// The spans of a shared outage in the stable version's periods: spans of a minute (or of one
/// period, if longer) in which the stable version answered more than `max_rate`, more than
/// [`OUTAGE_FACTOR`] times its usual rate and at least [`OUTAGE_MIN_ERRORS`] 5xx, next to
/// another such span. An outage of a shared dependency lasts minutes; one burst of errors
/// seldom fills two spans in a row, so the spans left out are not picked for the stable
/// version's own bursts (which would bias its rate down). Its usual rate is its rate over the
/// hour before the canary when known, else the lower quartile of its spans'.
pub(super) struct OutageSpans {
    span: i64,
    spans: std::collections::HashSet<i64>,
    ongoing: Option<Ongoing>,
}

impl OutageSpans {
    pub(super) fn new(baseline: &[Sample], max_rate: f64, usual: Option<f64>) -> Self {
        let mut starts: Vec<i64> = baseline.iter().map(|s| s.start).collect();
        starts.sort_unstable();
        let gap = starts
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .filter(|&g| g > 0)
            .min()
            .unwrap_or(60);
        let span = gap.clamp(60, 3600);
        let mut sums: std::collections::BTreeMap<i64, (f64, f64)> =
            std::collections::BTreeMap::new();
        for s in baseline.iter().filter(|s| s.requests > 0.0) {
            let e = sums.entry(s.start.div_euclid(span)).or_default();
            e.0 += s.requests;
            e.1 += s.errors.clamp(0.0, s.requests);
        }
        let usual = usual.filter(|u| u.is_finite()).map_or_else(
            || {
                let mut rates: Vec<f64> = sums.values().map(|&(n, k)| k / n).collect();
                rates.sort_by(f64::total_cmp);
                // In [0, len): the quantile of a finite, non-negative length.
                let at = (rates.len() as f64 * USUAL_QUANTILE) as usize;
                rates.get(at).copied().unwrap_or(0.0)
            },
            |u| u.clamp(0.0, 1.0),
        );
        let hot: std::collections::BTreeSet<i64> = sums
            .iter()
            .filter(|(_, &(n, k))| {
                k >= OUTAGE_MIN_ERRORS && k > max_rate * n && k > OUTAGE_FACTOR * usual * n
            })
            .map(|(&i, _)| i)
            .collect();
        let spans = hot
            .iter()
            .copied()
            .filter(|&i| hot.contains(&i.saturating_sub(1)) || hot.contains(&i.saturating_add(1)))
            .collect();
        // The newest hot span among the two newest, and the run of hot spans it ends.
        let ongoing = sums
            .keys()
            .rev()
            .take(2)
            .find(|i| hot.contains(i))
            .map(|&last| {
                let mut first = last;
                while first > i64::MIN && hot.contains(&(first - 1)) {
                    first -= 1;
                }
                let (requests, errors) = sums
                    .range(first..=last)
                    .fold((0.0, 0.0), |(n, k), (_, &(sn, sk))| (n + sn, k + sk));
                Ongoing {
                    since: first.saturating_mul(span),
                    until: last.saturating_add(1).saturating_mul(span),
                    errors,
                    requests,
                    usual,
                }
            });
        Self {
            span,
            spans,
            ongoing,
        }
    }

    /// The shared outage going on now, if one of the stable version's two newest spans is
    /// failing (alone or not: the newest may be the first minute of an outage).
    pub(super) fn ongoing(&self) -> Option<Ongoing> {
        self.ongoing
    }

    /// Whether the period starting at `start` is in a shared outage.
    pub(super) fn covers(&self, start: i64) -> bool {
        self.spans.contains(&start.div_euclid(self.span))
    }
}
