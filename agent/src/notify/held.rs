//! The pages of a canary that holds for longer than `no_data_timeout`: no traffic, too little
//! traffic for its step, no latency seen past the warm-up, or a shared outage. Each says why it
//! waits, that nothing is at risk, and what on-call can change.

use super::Context;
use crate::policy::{Policy, LATENCY_PERIODS_AT_STEP, LATENCY_PERIODS_IN_ALL};
use crate::record::Owed;
use crate::text::human_duration;

/// Subject and body of the one `NoData` notice of a held canary, by why it holds.
pub(super) fn words(policy: &Policy, ctx: &Context<'_>, o: &Owed) -> (String, String) {
    match ctx.judgement {
        Some(j) if j.outage_since.is_some() => held_through_outage(policy, ctx, o),
        Some(j)
            if j.canary_requests_at_step >= policy.min_requests as f64
                && !j.latency_seen.enough() =>
        {
            latency_unseen(policy, ctx, o)
        }
        // No canary request yet, but the stable version has traffic: the canary's share of it
        // is too small (a low-traffic alias), not gone.
        Some(j) if j.canary_requests_at_step > 0.0 || j.baseline.requests > 0.0 => {
            starved(policy, ctx, o)
        }
        _ => silent(policy, ctx, o),
    }
}

/// Subject and body of a canary whose version receives no requests.
fn silent(policy: &Policy, ctx: &Context<'_>, o: &Owed) -> (String, String) {
    let f = &policy.function;
    (
        format!(
            "Canary stuck: {f} v{} has had no traffic for {}",
            o.version.unwrap_or_default(),
            human_duration(policy.no_data_timeout_secs())
        ),
        format!(
            "The canary of {f} is holding at {}% because its version receives no requests (on_no_data: hold). Nothing is at risk; it moves on when traffic returns.",
            ctx.before.canary.map_or(0.0, |c| c.weight)
        ),
    )
}

/// Subject and body of a canary with its step's requests but no latency seen past the warm-up
/// for `no_data_timeout`: what a step waits for, and the likely causes.
fn latency_unseen(policy: &Policy, ctx: &Context<'_>, o: &Owed) -> (String, String) {
    let f = &policy.function;
    let v = o.version.unwrap_or_default();
    let weight = ctx.before.canary.map_or(0.0, |c| c.weight);
    let seen = ctx.judgement.map(|j| j.latency_seen).unwrap_or_default();
    let waited = o.at.saturating_sub(ctx.before.record.since).max(0);
    let warmup = human_duration(policy.warmup_secs());
    let past = if policy.warmup_secs() > 0 {
        format!("latency past its {warmup} warm-up")
    } else {
        "latency statistic".to_string()
    };
    (
        format!(
            "Canary stuck: {f} v{v} has had no {past} in {}",
            human_duration(waited)
        ),
        format!(
            "The canary of {f} is holding at {weight}%: a step moves on only once the latency test has seen {LATENCY_PERIODS_AT_STEP} period at its weight past latency.warmup ({warmup} after each weight increase) and {LATENCY_PERIODS_IN_ALL} since the canary began, and it has seen {} and {}. Its requests are enough; its latency is what is missing: a latency.warmup longer than meant, or a canary that publishes no latency statistic (with source: emf, the Latency metric of warm invocations). Nothing is at risk; the stable version serves the rest. Shorten latency.warmup, or promote by hand: canary promote {f}.",
            seen.at_step, seen.in_all
        ),
    )
}

/// Subject and body of a canary with too little traffic to finish its step: how much it got,
/// what that rate means for `min_requests`, and what on-call can change. A canary with no
/// request at all yet is given the rate its weight of the stable version's traffic brings.
fn starved(policy: &Policy, ctx: &Context<'_>, o: &Owed) -> (String, String) {
    let f = &policy.function;
    let v = o.version.unwrap_or_default();
    let weight = ctx.before.canary.map_or(0.0, |c| c.weight);
    let got = ctx.judgement.map_or(0.0, |j| j.canary_requests_at_step);
    let waited = o.at.saturating_sub(ctx.before.record.since).max(1);
    let (per_minute, rate) = if got > 0.0 {
        let per_minute = got * 60.0 / waited as f64;
        (
            per_minute,
            format!("it gets about {per_minute:.2} requests a minute"),
        )
    } else {
        let stable = ctx.judgement.map_or(0.0, |j| j.baseline.requests);
        // The stable version's requests are counted since the canary began.
        let record = &ctx.before.record;
        let since = if record.started > 0 && record.started <= record.since {
            o.at.saturating_sub(record.started).max(waited)
        } else {
            waited
        };
        let alias = stable * 60.0 / since as f64 / (1.0 - weight / 100.0).max(0.01);
        let per_minute = alias * weight / 100.0;
        (
            per_minute,
            format!(
                "it has had no request yet: the alias gets about {alias:.2} requests a minute, so at {weight}% the canary can expect about {per_minute:.2} a minute"
            ),
        )
    };
    let eta = if per_minute > 0.0 {
        let secs = (policy.min_requests as f64 / per_minute * 60.0).min(1e9) as i64;
        format!("about {}", human_duration(secs))
    } else {
        "longer than anyone waits".to_string()
    };
    (
        format!(
            "Canary stuck: {f} v{v} has had {got:.0} of {} requests in {}",
            policy.min_requests,
            human_duration(waited)
        ),
        format!(
            "The canary of {f} is holding at {weight}%: {rate}, so this step's min_requests ({}) takes {eta}. Nothing is at risk; the stable version serves the rest. To finish sooner, lower min_requests or raise the step weights (`canary policy check --rate R` estimates each step), or promote by hand: canary promote {f}.",
            policy.min_requests
        ),
    )
}

/// A canary held through a shared outage for `no_data_timeout`: since when, why it waits and
/// how to decide now (the judge's numbers follow in the body).
fn held_through_outage(policy: &Policy, ctx: &Context<'_>, o: &Owed) -> (String, String) {
    let f = &policy.function;
    let v = o.version.unwrap_or_default();
    let s = ctx.before.stable;
    let weight = ctx.before.canary.map_or(0.0, |c| c.weight);
    let since = ctx.judgement.and_then(|j| j.outage_since).unwrap_or(o.at);
    (
        format!(
            "Canary held: {f} v{s} has been failing too for {}",
            human_duration(o.at.saturating_sub(since))
        ),
        format!(
            "The canary of {f} v{v} is holding at {weight}%: the stable version v{s} has been failing too since {}, well above its usual 5xx rate (the numbers below). While both fail alike the 5xx tests cannot tell the new build's errors from the dependency's, so the canary neither moves on nor is judged on those minutes; it moves on when the outage passes. Users get the same errors from either version. To decide now: canary rollback {f}, or canary promote {f}.",
            crate::text::clock(since)
        ),
    )
}
