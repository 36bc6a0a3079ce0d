//! Raw scenario file -> validated [`Scenario`]s, collecting every problem of the file.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::{Location, Spanned};

use super::raw::{
    Leaf, RawChange, RawColdStart, RawDrift, RawFile, RawLatency, RawOutage, RawScenario,
    RawShared, RawSlow, RawTraffic, RawVersion,
};
use super::{limits, Scenario};
use crate::policy::parse_duration;
use crate::policy::validate::{line_col, Checker};
use crate::policy::PolicyProblem;
use crate::sim::traffic::{Build, ColdStart, Drift, Outage, RateChange, Slow, Traffic};

const SHARE: &str = "between 0 and 1";

fn share(n: f64) -> bool {
    (0.0..=1.0).contains(&n)
}

fn extra_ms(n: f64) -> bool {
    (0.0..=limits::MAX_MS).contains(&n)
}

/// Converts a raw file; `Err` holds every problem found.
pub(crate) fn build(file: &Path, raw: RawFile) -> Result<Vec<Scenario>, Vec<PolicyProblem>> {
    let mut c = Checker::new(file);
    let mut out = Vec::new();
    match &raw.scenarios {
        None => c.problem(
            None,
            "scenarios",
            "is required: the list of scenarios (each with name, build and traffic)",
        ),
        Some(list) if list.value.is_empty() => c.problem(
            Some(list.referenced),
            "scenarios",
            "must list at least one scenario",
        ),
        Some(list) if list.value.len() > limits::MAX_SCENARIOS => c.problem(
            Some(list.referenced),
            "scenarios",
            format!(
                "must list at most {} scenarios, got {}",
                limits::MAX_SCENARIOS,
                list.value.len()
            ),
        ),
        Some(list) => {
            let mut names: HashMap<String, Option<u32>> = HashMap::new();
            for (i, item) in list.value.iter().enumerate() {
                let s = scenario(&mut c, &format!("scenarios[{i}]"), item);
                if let Some(v) = &item.value.name {
                    let line = line_col(v.referenced).0;
                    if let Some(first) = names.get(&s.name) {
                        let at = first.map_or(String::new(), |l| format!(" (line {l})"));
                        c.problem(
                            Some(v.referenced),
                            &format!("scenarios[{i}].name"),
                            format!(
                                "another scenario is already named {:?}{at}; names are unique",
                                s.name
                            ),
                        );
                    } else {
                        names.insert(s.name.clone(), line);
                    }
                }
                out.push(s);
            }
        }
    }
    let problems = c.into_problems();
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn scenario(c: &mut Checker<'_>, at: &str, raw: &Spanned<RawScenario>) -> Scenario {
    let here = raw.referenced;
    let r = &raw.value;
    let name = name(c, &r.name, &format!("{at}.name"), here);
    let bad = match &r.build {
        None => {
            c.problem(
                Some(here),
                &format!("{at}.build"),
                "is required: healthy or bad (the right outcome: promote or roll back)",
            );
            false
        }
        Some(v) if v.value == "healthy" => false,
        Some(v) if v.value == "bad" => true,
        Some(v) => {
            c.problem(
                Some(v.referenced),
                &format!("{at}.build"),
                format!("must be healthy or bad, got {:?}", v.value),
            );
            false
        }
    };
    let minutes = whole(
        c,
        &r.minutes,
        &format!("{at}.minutes"),
        60,
        1,
        limits::MAX_MINUTES,
    );
    let run_secs = minutes * 60;
    let traffic = traffic(c, at, r.traffic.as_ref(), here, run_secs);
    let outages = shared(c, &format!("{at}.shared"), r.shared.as_ref(), run_secs);
    let stable = version(
        c,
        &format!("{at}.stable"),
        r.stable.as_ref(),
        &Build::healthy(),
        false,
    );
    let candidate = version(
        c,
        &format!("{at}.candidate"),
        r.candidate.as_ref(),
        &stable,
        true,
    );
    Scenario {
        name,
        bad,
        minutes,
        traffic: Traffic { outages, ..traffic },
        stable,
        candidate,
        latency_history: true,
    }
}

fn name(c: &mut Checker<'_>, leaf: &Leaf, field: &str, parent: Location) -> String {
    let Some(v) = leaf else {
        c.problem(
            Some(parent),
            field,
            "is required: a unique name shown in tables and JSON",
        );
        return String::new();
    };
    let text = v.value.trim();
    if text.is_empty()
        || text.chars().count() > limits::MAX_NAME
        || text.chars().any(char::is_control)
    {
        c.problem(
            Some(v.referenced),
            field,
            format!(
                "must be 1-{} characters on one line, got {:?}",
                limits::MAX_NAME,
                v.value
            ),
        );
    }
    text.to_string()
}

/// A whole number in `[min, max]`, or `default` when absent (or after recording a problem).
fn whole(c: &mut Checker<'_>, leaf: &Leaf, field: &str, default: i64, min: i64, max: i64) -> i64 {
    let Some(v) = leaf else { return default };
    match v.value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            c.problem(
                Some(v.referenced),
                field,
                format!(
                    "must be a whole number from {min} to {max}, got {}",
                    v.value
                ),
            );
            default
        }
    }
}

/// A duration in whole seconds within `[min, max]`, or `default` when absent or invalid.
fn duration(
    c: &mut Checker<'_>,
    leaf: &Leaf,
    field: &str,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    let Some(v) = leaf else { return default };
    match parse_duration(&v.value) {
        Ok(d) => {
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if (min..=max).contains(&secs) {
                return secs;
            }
            let show = |s: i64| {
                crate::policy::format_duration(std::time::Duration::from_secs(s.unsigned_abs()))
            };
            c.problem(
                Some(v.referenced),
                field,
                format!(
                    "must be from {} to {}, got {}",
                    show(min),
                    show(max),
                    v.value
                ),
            );
            default
        }
        Err(e) => {
            c.problem(Some(v.referenced), field, e.to_string());
            default
        }
    }
}

/// A key that must be given unless `inherited` supplies it (a candidate copying stable's).
struct Part<'f> {
    field: &'f str,
    parent: Location,
    inherited: Option<f64>,
    copying: bool,
}

impl<'f> Part<'f> {
    /// A key with nothing to inherit.
    fn required(field: &'f str, parent: Location) -> Self {
        Self::new(field, parent, None, false)
    }

    /// A key that may inherit a value; `copying` when the value would come from stable.
    fn new(field: &'f str, parent: Location, inherited: Option<f64>, copying: bool) -> Self {
        Self {
            field,
            parent,
            inherited,
            copying,
        }
    }

    fn missing(&self, c: &mut Checker<'_>) {
        let why = if self.copying {
            "is required (stable has none to copy it from)"
        } else {
            "is required"
        };
        c.problem(Some(self.parent), self.field, why);
    }

    fn number(
        &self,
        c: &mut Checker<'_>,
        leaf: &Leaf,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> f64 {
        match (leaf, self.inherited) {
            (None, Some(n)) => n,
            (None, None) => {
                self.missing(c);
                0.0
            }
            (Some(_), inherited) => {
                c.number(leaf, self.field, inherited.unwrap_or(0.0), ok, expected)
            }
        }
    }

    fn duration(&self, c: &mut Checker<'_>, leaf: &Leaf, min: i64, max: i64) -> i64 {
        let inherited = self.inherited.map(|n| n as i64);
        if leaf.is_none() && inherited.is_none() {
            self.missing(c);
        }
        duration(c, leaf, self.field, inherited.unwrap_or(min), min, max)
    }
}

fn traffic(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawTraffic>>,
    parent: Location,
    run_secs: i64,
) -> Traffic {
    let Some(raw) = raw else {
        c.problem(
            Some(parent),
            &format!("{at}.traffic"),
            "is required: at least `rate` (requests/s to the alias)",
        );
        return Traffic::steady(1.0);
    };
    let r: &RawTraffic = &raw.value;
    let field = format!("{at}.traffic.rate");
    let rate = Part::required(&field, raw.referenced);
    let max_rate = limits::MAX_RATE;
    let rps = rate.number(
        c,
        &r.rate,
        |n| n > 0.0 && n <= max_rate,
        &format!("greater than 0 and at most {max_rate}"),
    );
    let noise = c.number(
        &r.noise,
        &format!("{at}.traffic.noise"),
        0.1,
        |n| (0.0..=limits::MAX_SD).contains(&n),
        &format!("from 0 to {}", limits::MAX_SD),
    );
    let changes = match &r.changes {
        None => Vec::new(),
        Some(list) => list
            .value
            .iter()
            .enumerate()
            .map(|(i, ch)| change(c, &format!("{at}.traffic.changes[{i}]"), ch, run_secs))
            .collect(),
    };
    if let Some(list) = &r.changes {
        // Each change multiplies the scenario's `rate`: the product is bounded like the rate.
        for (i, ch) in changes.iter().enumerate() {
            if rps * ch.factor > max_rate {
                let at_loc = list.value.get(i).map(|s| s.referenced);
                c.problem(
                    at_loc,
                    &format!("{at}.traffic.changes[{i}].factor"),
                    format!(
                        "takes the rate to {} requests/s, above the most a scenario may have ({max_rate})",
                        rps * ch.factor
                    ),
                );
            }
        }
        for (i, pair) in changes.windows(2).enumerate() {
            if pair[1].at <= pair[0].at {
                let at_loc = list.value.get(i + 1).map(|s| s.referenced);
                c.problem(at_loc, &format!("{at}.traffic.changes[{}].at", i + 1), "must be later than the previous change's `at` (changes are listed in time order)");
            }
        }
    }
    Traffic {
        rate_noise: noise,
        changes,
        ..Traffic::steady(if rps > 0.0 { rps } else { 1.0 })
    }
}

fn change(c: &mut Checker<'_>, at: &str, raw: &Spanned<RawChange>, run_secs: i64) -> RateChange {
    let when = Part::required(&format!("{at}.at"), raw.referenced).duration(
        c,
        &raw.value.at,
        0,
        run_secs - 1,
    );
    let factor = Part::required(&format!("{at}.factor"), raw.referenced).number(
        c,
        &raw.value.factor,
        |n| n > 0.0 && n <= limits::MAX_FACTOR,
        &format!("greater than 0 and at most {}", limits::MAX_FACTOR),
    );
    RateChange { at: when, factor }
}

fn shared(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawShared>>,
    run_secs: i64,
) -> Vec<Outage> {
    let Some(RawShared {
        outages: Some(list),
    }) = raw.map(|s| &s.value)
    else {
        return Vec::new();
    };
    list.value
        .iter()
        .enumerate()
        .map(|(i, o)| outage(c, &format!("{at}.outages[{i}]"), o, run_secs))
        .collect()
}

fn outage(c: &mut Checker<'_>, at: &str, raw: &Spanned<RawOutage>, run_secs: i64) -> Outage {
    let r: &RawOutage = &raw.value;
    let here = raw.referenced;
    let when = Part::required(&format!("{at}.at"), here).duration(c, &r.at, 0, run_secs - 1);
    let secs = Part::required(&format!("{at}.for"), here).duration(
        c,
        &r.duration,
        1,
        limits::MAX_SPAN_SECS,
    );
    let errors = Part::required(&format!("{at}.errors"), here).number(c, &r.errors, share, SHARE);
    Outage {
        at: when,
        secs,
        errors,
    }
}

/// A version's keys over `base` (the defaults for stable; stable for the candidate).
fn version(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawVersion>>,
    base: &Build,
    copying: bool,
) -> Build {
    let Some(raw) = raw else { return *base };
    let r: &RawVersion = &raw.value;
    let (median_ms, sigma) = latency(c, at, r.latency.as_ref(), base);
    Build {
        error_rate: c.number(
            &r.errors,
            &format!("{at}.errors"),
            base.error_rate,
            share,
            SHARE,
        ),
        latency_median_ms: median_ms,
        latency_sigma: sigma,
        slow: slow(c, at, r.slow.as_ref(), base.slow, copying),
        cold_start: cold_start(c, at, r.cold_start.as_ref(), base.cold_start, copying),
        error_bursts: c.number(
            &r.error_bursts,
            &format!("{at}.error_bursts"),
            base.error_bursts,
            |n| (1.0..=limits::MAX_CLUSTER).contains(&n),
            &format!("from 1 (independent 5xx) to {}", limits::MAX_CLUSTER),
        ),
        drift: drift(c, at, r.latency_drift.as_ref(), base.drift),
    }
}

fn latency(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawLatency>>,
    base: &Build,
) -> (f64, f64) {
    let Some(raw) = raw else {
        return (base.latency_median_ms, base.latency_sigma);
    };
    let r: &RawLatency = &raw.value;
    let median = c.number(
        &r.median_ms,
        &format!("{at}.latency.median_ms"),
        base.latency_median_ms,
        |n| n > 0.0 && n <= limits::MAX_MS,
        &format!("greater than 0 and at most {}", limits::MAX_MS),
    );
    let sigma = c.number(
        &r.sigma,
        &format!("{at}.latency.sigma"),
        base.latency_sigma,
        |n| (0.0..=limits::MAX_SIGMA).contains(&n),
        &format!("from 0 to {}", limits::MAX_SIGMA),
    );
    (median, sigma)
}

fn slow(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawSlow>>,
    base: Option<Slow>,
    copying: bool,
) -> Option<Slow> {
    let Some(raw) = raw else { return base };
    let r: &RawSlow = &raw.value;
    let (share_field, add_field) = (format!("{at}.slow.share"), format!("{at}.slow.add_ms"));
    let here = raw.referenced;
    let share_v = Part::new(&share_field, here, base.map(|b| b.share), copying)
        .number(c, &r.share, share, SHARE);
    let add_ms = Part::new(&add_field, here, base.map(|b| b.add_ms), copying).number(
        c,
        &r.add_ms,
        extra_ms,
        &format!("from 0 to {}", limits::MAX_MS),
    );
    Some(Slow {
        share: share_v,
        add_ms,
    })
}

fn cold_start(
    c: &mut Checker<'_>,
    at: &str,
    raw: Option<&Spanned<RawColdStart>>,
    base: Option<ColdStart>,
    copying: bool,
) -> Option<ColdStart> {
    let Some(raw) = raw else { return base };
    let r: &RawColdStart = &raw.value;
    let here = raw.referenced;
    let field = |key: &str| format!("{at}.cold_start.{key}");
    let (share_field, add_field, for_field) = (field("share"), field("add_ms"), field("for"));
    let share_v = Part::new(&share_field, here, base.map(|b| b.share), copying)
        .number(c, &r.share, share, SHARE);
    let add_ms = Part::new(&add_field, here, base.map(|b| b.add_ms), copying).number(
        c,
        &r.add_ms,
        extra_ms,
        &format!("from 0 to {}", limits::MAX_MS),
    );
    let secs = Part::new(&for_field, here, base.map(|b| b.secs as f64), copying).duration(
        c,
        &r.duration,
        1,
        limits::MAX_SPAN_SECS,
    );
    Some(ColdStart {
        share: share_v,
        add_ms,
        secs,
    })
}

fn drift(c: &mut Checker<'_>, at: &str, raw: Option<&Spanned<RawDrift>>, base: Drift) -> Drift {
    let Some(raw) = raw else { return base };
    let r: &RawDrift = &raw.value;
    Drift {
        sd: c.number(
            &r.sd,
            &format!("{at}.latency_drift.sd"),
            base.sd,
            |n| (0.0..=limits::MAX_SD).contains(&n),
            &format!("from 0 to {}", limits::MAX_SD),
        ),
        every_secs: duration(
            c,
            &r.every,
            &format!("{at}.latency_drift.every"),
            base.every_secs,
            1,
            limits::MAX_SPAN_SECS,
        ),
    }
}
