//! The judge's tests: each test function under its own null and against the regressions it
//! must catch.

use super::counts::*;
use super::outage::*;
use super::*;
use proptest::prelude::*;

pub(super) fn minute(start: i64, requests: f64, errors: f64, latency: Option<f64>) -> Sample {
    Sample {
        start,
        requests,
        errors,
        latency_ms: latency,
        slow: None,
    }
}

pub(super) fn obs(canary: Vec<Sample>, baseline: Vec<Sample>) -> Observations {
    Observations {
        canary,
        baseline,
        step_start: 0,
        slow_ms: None,
        cold: vec![],
        cold_limit_ms: None,
        latency_wander: None,
        stable_error_rate: None,
        step: 0,
    }
}

#[test]
fn always_failing_build_is_caught_from_a_handful_of_requests() {
    let p = Policy::with_defaults("f");
    // Two periods of 5 failures out of 5: caught.
    let j = judge(
        &p,
        &obs(
            vec![minute(0, 5.0, 5.0, None), minute(10, 5.0, 5.0, None)],
            vec![minute(0, 50.0, 0.0, None), minute(10, 50.0, 0.0, None)],
        ),
    );
    assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    // One period of 10 out of 10 is proof on its own, even read as clusters of errors.
    let j = judge(
        &p,
        &obs(
            vec![minute(0, 10.0, 10.0, None)],
            vec![minute(0, 100.0, 0.0, None)],
        ),
    );
    assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    // One period of 3 out of 3 could be one burst: held, not rolled back.
    let j = judge(
        &p,
        &obs(
            vec![minute(0, 3.0, 3.0, None)],
            vec![minute(0, 30.0, 0.0, None)],
        ),
    );
    assert!(matches!(j.verdict, Verdict::NotEnoughData(_)), "{j:?}");
    // Two failures out of two is not yet enough at 99% confidence with four tests.
    let j = judge(&p, &obs(vec![minute(0, 1.0, 1.0, None)], vec![]));
    assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
}

#[test]
fn no_canary_traffic_is_not_enough_data_never_healthy() {
    let p = Policy::with_defaults("f");
    let j = judge(&p, &obs(vec![], vec![minute(0, 1000.0, 1.0, Some(50.0))]));
    assert!(matches!(j.verdict, Verdict::NotEnoughData(_)));
    assert_eq!(j.last_canary_traffic, None);
}

#[test]
fn a_canary_at_one_percent_of_a_tenth_of_a_request_per_second_is_not_enough_data() {
    // 0.1 req/s, 1% to the canary: about one canary request every 17 minutes.
    let p = Policy::with_defaults("f");
    let canary = vec![minute(600, 1.0, 0.0, Some(90.0))];
    let baseline = (0..20)
        .map(|i| minute(i * 60, 6.0, 0.0, Some(80.0)))
        .collect();
    let j = judge(&p, &obs(canary, baseline));
    assert!(
        matches!(&j.verdict, Verdict::NotEnoughData(m) if m.contains("1 of 100")),
        "{j:?}"
    );
    assert_eq!(j.last_canary_traffic, Some(600));
    // Even its one request failing is not proof of a bad build.
    let j = judge(
        &p,
        &obs(
            vec![minute(600, 1.0, 1.0, None)],
            vec![minute(600, 6.0, 0.0, None)],
        ),
    );
    assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
}

/// The defaults with no latency warm-up: every period with a latency statistic counts.
fn no_warmup() -> Policy {
    let mut p = Policy::with_defaults("f");
    p.latency.warmup = Some(std::time::Duration::ZERO);
    p
}

#[test]
fn healthy_needs_min_requests_at_the_step() {
    let mut p = no_warmup();
    p.min_requests = 100;
    let c = vec![
        minute(0, 80.0, 0.0, Some(50.0)),
        minute(60, 80.0, 0.0, Some(50.0)),
    ];
    let b = vec![
        minute(0, 800.0, 1.0, Some(50.0)),
        minute(60, 800.0, 0.0, Some(50.0)),
    ];
    let mut o = obs(c, b);
    assert_eq!(judge(&p, &o).verdict, Verdict::Healthy);
    o.step_start = 60;
    assert!(matches!(judge(&p, &o).verdict, Verdict::NotEnoughData(m) if m.contains("80 of 100")));
}

#[test]
fn a_step_moves_on_only_after_latency_was_seen_past_its_warm_up() {
    // The defaults on Lambda metrics: a 2-minute warm-up after each weight increase, counted
    // from the end of the period the canary began in. Plenty of requests, healthy latency.
    let p = Policy::with_defaults("f");
    let upto = |n: i64, step_start: i64| Observations {
        step_start,
        ..obs(
            (0..n)
                .map(|i| minute(i * 60, 60.0, 0.0, Some(80.0)))
                .collect(),
            (0..n)
                .map(|i| minute(i * 60, 540.0, 0.0, Some(80.0)))
                .collect(),
        )
    };
    // Minutes 0-2 are warming up; minute 3 is the first the latency test sees, and one period
    // cannot reject: the first step waits for a second.
    for n in [3, 4] {
        let j = judge(&p, &upto(n, 0));
        let Verdict::NotEnoughData(why) = &j.verdict else {
            panic!("{n}: {j:?}");
        };
        assert!(why.starts_with(LATENCY_WAIT), "{why}");
        assert!(why.contains("past the 2m warm-up"), "{why}");
        assert_eq!(j.latency_seen.in_all, (n - 3) as usize);
    }
    assert_eq!(judge(&p, &upto(5, 0)).verdict, Verdict::Healthy);
    // The next step, from minute 5: its own warm-up hides minutes 5 and 6; one period past it
    // (with the two from before) lets it move on.
    let j = judge(&p, &upto(7, 5 * 60));
    assert_eq!(
        j.latency_seen,
        LatencySeen {
            at_step: 0,
            in_all: 2
        }
    );
    assert!(
        matches!(&j.verdict, Verdict::NotEnoughData(w) if w.contains("0 periods past the 2m warm-up at this step"))
    );
    let j = judge(&p, &upto(8, 5 * 60));
    assert_eq!((j.latency_seen.at_step, &j.verdict), (1, &Verdict::Healthy));
    // Periods with no latency statistic are not seen, however many requests they had.
    let mut o = upto(8, 5 * 60);
    o.canary[7].latency_ms = None;
    assert!(matches!(judge(&p, &o).verdict, Verdict::NotEnoughData(_)));
}

#[test]
fn five_percent_errors_against_clean_baseline_is_regressed_within_a_few_hundred() {
    let p = Policy::with_defaults("f");
    let j = judge(
        &p,
        &obs(
            (0..5).map(|i| minute(i * 60, 60.0, 3.0, None)).collect(),
            (0..5).map(|i| minute(i * 60, 600.0, 1.0, None)).collect(),
        ),
    );
    assert!(
        matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("above baseline"))),
        "{j:?}"
    );
}

#[test]
fn zero_error_baseline_and_zero_error_canary_is_healthy() {
    let j = judge(
        &no_warmup(),
        &obs(
            (0..2)
                .map(|i| minute(i * 60, 500.0, 0.0, Some(50.0)))
                .collect(),
            (0..2)
                .map(|i| minute(i * 60, 5000.0, 0.0, Some(50.0)))
                .collect(),
        ),
    );
    assert_eq!(j.verdict, Verdict::Healthy);
}

#[test]
fn baseline_without_traffic_still_enforces_the_ceiling() {
    let p = Policy::with_defaults("f");
    let j = judge(&p, &obs(vec![minute(0, 200.0, 40.0, None)], vec![]));
    assert!(
        matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("ceiling")),
        "{j:?}"
    );
    assert!(
        j.increase_evidence < SUSPICION,
        "no baseline, no increase evidence"
    );
}

#[test]
fn doubled_latency_is_caught_after_a_few_minutes_and_not_before() {
    let p = Policy::with_defaults("f");
    let series = |n: i64, c: f64| {
        let canary = (0..n)
            .map(|i| minute(i * 60, 60.0, 0.0, Some(c * (1.0 + 0.05 * (i % 3) as f64))))
            .collect();
        let base = (0..n)
            .map(|i| {
                minute(
                    i * 60,
                    600.0,
                    0.0,
                    Some(200.0 * (1.0 + 0.04 * (i % 2) as f64)),
                )
            })
            .collect();
        // A stable version whose level held still over the six hours before.
        Observations {
            latency_wander: Some(0.01),
            ..obs(canary, base)
        }
    };
    assert!(!matches!(
        judge(&p, &series(1, 400.0)).verdict,
        Verdict::Regressed(_)
    ));
    // The first minutes are the canary's warm-up (`source: lambda`: 2 minutes, plus the
    // minute in which it started), so they are not judged.
    assert!(!matches!(
        judge(&p, &series(3, 400.0)).verdict,
        Verdict::Regressed(_)
    ));
    let j = judge(&p, &series(8, 400.0));
    assert!(
        matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("p99")),
        "{j:?}"
    );
    // Same latency as the baseline: never regressed however long we look.
    assert_eq!(judge(&p, &series(30, 200.0)).verdict, Verdict::Healthy);
    // Without those hours the test assumes ASSUMED_WANDER: the doubling needs about 18
    // judged minutes instead of 5.
    let unknown = |n: i64| Observations {
        latency_wander: None,
        ..series(n, 400.0)
    };
    assert!(!matches!(
        judge(&p, &unknown(12)).verdict,
        Verdict::Regressed(_)
    ));
    let j = judge(&p, &unknown(24));
    assert!(
        matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("p99")),
        "{j:?}"
    );
}

#[test]
fn a_latency_rise_the_stable_versions_own_wander_could_explain_needs_more_periods() {
    let p = Policy::with_defaults("f");
    let series = |n: i64, wander: Option<f64>| {
        let canary = (0..n)
            .map(|i| {
                minute(
                    i * 60,
                    60.0,
                    0.0,
                    Some(400.0 * (1.0 + 0.05 * (i % 3) as f64)),
                )
            })
            .collect();
        let base = (0..n)
            .map(|i| minute(i * 60, 600.0, 0.0, Some(200.0)))
            .collect();
        Observations {
            latency_wander: wander,
            ..obs(canary, base)
        }
    };
    let regressed = |o: &Observations| matches!(judge(&p, o).verdict, Verdict::Regressed(_));
    // A stable version whose level held still: 8 minutes are enough (as above).
    assert!(regressed(&series(8, Some(0.01))));
    // One whose level wandered by about ±0.3 in log over 10-minute stretches before the
    // canary (6 log²·s): a doubling over 5 judged minutes could be that wander; over 27 it
    // cannot.
    assert!(!regressed(&series(8, Some(6.0))));
    assert!(regressed(&series(30, Some(6.0))));
}

#[test]
fn the_wander_is_fitted_after_the_trend_and_grows_with_how_long_a_level_lasts() {
    let minutes = |f: &dyn Fn(i64) -> f64, n: i64| -> Vec<(i64, f64)> {
        (0..n).map(|m| (m * 60, f(m))).collect()
    };
    // Too few minutes: no fit.
    assert_eq!(wander(&minutes(&|_| 100.0, 29), 60), None);
    // A steady ramp (latency up 2% an hour) alone is not a wander.
    let ramp = wander(
        &minutes(&|m| 100.0 * (0.02 * m as f64 / 60.0).exp(), 360),
        60,
    );
    assert!(ramp.is_some_and(|w| w < 1e-4), "{ramp:?}");
    // Levels ±10% that last 10 minutes wander more than ones that alternate every minute.
    let steps = |every: i64| {
        wander(
            &minutes(&|m| if (m / every) % 2 == 0 { 100.0 } else { 120.0 }, 360),
            60,
        )
        .expect("fits")
    };
    assert!(steps(10) > 5.0 * steps(1), "{} vs {}", steps(10), steps(1));
    // Order, duplicates and points that are no statistic do not matter.
    let mut shuffled = minutes(&|m| if (m / 10) % 2 == 0 { 100.0 } else { 120.0 }, 360);
    shuffled.reverse();
    shuffled.push((0, 100.0));
    shuffled.push((-60, f64::NAN));
    shuffled.push((-120, 0.0));
    assert_eq!(wander(&shuffled, 60), Some(steps(10)));
}

#[test]
fn latency_ceiling_applies_without_a_baseline() {
    // No baseline and no hours before (the assumed wander): 4000 ms against `max_ms` 1500 is
    // caught on the fifth judged minute.
    let p = Policy::with_defaults("f");
    let c = (0..8)
        .map(|i| minute(i * 60, 60.0, 0.0, Some(4000.0)))
        .collect();
    let j = judge(&p, &obs(c, vec![]));
    assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
}

#[test]
fn small_absolute_latency_changes_are_tolerated() {
    // +50% on a 10 ms handler is 5 ms: below the 25 ms floor.
    let p = Policy::with_defaults("f");
    let c = (0..20)
        .map(|i| minute(i * 60, 60.0, 0.0, Some(15.0)))
        .collect();
    let b = (0..20)
        .map(|i| minute(i * 60, 600.0, 0.0, Some(10.0)))
        .collect();
    assert_eq!(judge(&p, &obs(c, b)).verdict, Verdict::Healthy);
}

#[test]
fn reasons_carry_numbers() {
    let p = Policy::with_defaults("f");
    let j = judge(
        &p,
        &obs(
            vec![minute(0, 10.0, 10.0, None)],
            vec![minute(0, 100.0, 0.0, None)],
        ),
    );
    let Verdict::Regressed(r) = &j.verdict else {
        panic!("{j:?}")
    };
    assert!(r[0].contains("100% (10 of 10)"), "{r:?}");
    assert!(j.summary().contains("100% (10/10)"), "{}", j.summary());
    assert!(
        j.summary().contains("(rollback at 400, confidence 99%)"),
        "{}",
        j.summary()
    );
}

#[test]
fn suspicious_cold_starts_never_hold_a_step() {
    // Lambda metrics with Lambda Insights: per-minute periods, so a step's warm-up gives the
    // cold-start test two or three periods, and a hold at the same weight brings no more.
    let mut p = Policy::with_defaults("f");
    p.metrics = crate::policy::MetricsSource::Lambda { insights: true };
    let limit = cold_limit(&p.latency, 580.0);
    let canary: Vec<Sample> = (0..6)
        .map(|i| minute(i * 60, 60.0, 0.0, Some(80.0)))
        .collect();
    let baseline: Vec<Sample> = (0..6)
        .map(|i| minute(i * 60, 600.0, 0.0, Some(80.0)))
        .collect();
    let j = judge(
        &p,
        &Observations {
            // Two periods of warm-up, every cold start over the limit: each period adds at
            // most the cube root of the threshold, so this is suspicion, not yet proof.
            cold: (0..2)
                .map(|i| ColdStarts {
                    start: i * 60,
                    count: 6.0,
                    slow: 6.0,
                })
                .collect(),
            cold_limit_ms: Some(limit),
            ..obs(canary, baseline)
        },
    );
    let evidence = j.cold_evidence.expect("the cold-start test ran");
    assert!(
        (SUSPICION..j.threshold).contains(&evidence),
        "suspicious, not proof: {evidence}"
    );
    assert_eq!(j.verdict, Verdict::Healthy, "{j:?}");
}

#[test]
fn a_build_whose_cold_starts_doubled_is_rolled_back_and_a_healthy_one_is_not() {
    let mut p = Policy::with_defaults("f");
    p.metrics = crate::policy::MetricsSource::Emf {
        namespace: "NotesApi".into(),
        period: std::time::Duration::from_secs(10),
    };
    // The stable version's median cold start is 580 ms: the limit is 1.3x, 754 ms.
    let limit = cold_limit(&p.latency, 580.0);
    assert!((limit - 754.0).abs() < 1e-9, "{limit}");
    let run = |slow_per_period: f64| {
        let canary: Vec<Sample> = (0..12).map(|i| minute(i * 10, 30.0, 0.0, None)).collect();
        let baseline: Vec<Sample> = (0..12).map(|i| minute(i * 10, 300.0, 0.0, None)).collect();
        judge(
            &p,
            &Observations {
                canary,
                baseline,
                step_start: 0,
                slow_ms: None,
                cold: (0..12)
                    .map(|i| ColdStarts {
                        start: i * 10,
                        count: 2.0,
                        slow: slow_per_period,
                    })
                    .collect(),
                cold_limit_ms: Some(limit),
                latency_wander: None,
                stable_error_rate: None,
                step: 0,
            },
        )
    };
    // Every cold start over the limit, 24 of them: rolled back, with the numbers.
    let j = run(2.0);
    assert!(
        matches!(&j.verdict, Verdict::Regressed(r) if r[0].contains("cold starts: 24 of 24 took longer than 754 ms")),
        "{j:?}"
    );
    assert!(j.summary().contains("cold starts"), "{}", j.summary());
    // Half of them over it is the null's edge (the median at the limit): no rollback.
    let j = run(1.0);
    assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    // EMF policies split α five ways.
    assert!((j.threshold - 500.0).abs() < 1e-6, "{}", j.threshold);
}

#[test]
fn the_cold_start_test_keeps_its_share_of_alpha_at_the_edge_of_its_null() {
    // Each cold start over the limit with probability exactly 1/2 (the median at the limit),
    // 0 to 6 cold starts a period, 90 looks: at most 1/500 of runs may reach 500 (EMF: five
    // tests at 99%), plus two standard errors of sampling noise.
    let mut rng = crate::sim::rng::Rng::new(31);
    let runs = 4000;
    let mut rejected = 0;
    for _ in 0..runs {
        let mut obs = Observations {
            cold_limit_ms: Some(700.0),
            ..Observations::default()
        };
        for i in 0..90 {
            let count = rng.poisson(1.5);
            obs.cold.push(ColdStarts {
                start: i * 10,
                count: count as f64,
                slow: rng.binomial(count, 0.5) as f64,
            });
            if cold_starts(&obs, 500.0).0.is_some_and(|e| e >= 500.0) {
                rejected += 1;
                break;
            }
        }
    }
    let rate = f64::from(rejected) / f64::from(runs);
    let share: f64 = 1.0 / 500.0;
    assert!(
        rate <= share + 2.0 * (share / f64::from(runs)).sqrt(),
        "{:.2}% of null runs rejected",
        rate * 100.0
    );
}

/// The margin test's alternatives are multiples of its null: a 1% build against a 0.1%
/// baseline plus 0.1 points (five times the null) reaches the shipped policy's threshold
/// (5 tests at α = 1%: 500) on fewer errors than the fixed grid, which spends 8 of its 21
/// weights on rates at or below the null. Fed one period of 100 requests with 1 error at a time.
#[test]
fn the_margin_test_rolls_a_five_fold_rate_back_on_fewer_errors_than_the_fixed_grid() {
    let (p0, threshold) = (0.002, 500.0);
    type Test = fn(&[(f64, f64)], f64, f64) -> f64;
    let errors_until = |test: Test| {
        let mut periods = Vec::new();
        while test(&periods, p0, 1.0) < threshold {
            periods.push((100.0, 1.0));
            assert!(periods.len() < 100, "never reached the threshold");
        }
        periods.len()
    };
    // The ceiling's test is the same mixture with the same caps over the fixed grid.
    let (relative, fixed) = (
        errors_until(margin_evidence),
        errors_until(ceiling_evidence),
    );
    assert!(
        relative <= 11 && relative < fixed,
        "relative {relative}, fixed {fixed}"
    );
    // The same periods at the null's own rate (one error in 500 requests) stay far below it.
    let null: Vec<(f64, f64)> = vec![(500.0, 1.0); 20];
    assert!(margin_evidence(&null, p0, 1.0) < 1.0);
}

proptest! {
    /// More errors in the same requests is never less evidence, over either kind of
    /// alternatives.
    #[test]
    fn evidence_is_monotone_in_errors(k in 0u32..50, n in 50u32..500, p0 in 0.001f64..0.5) {
        let (k, n) = (f64::from(k), f64::from(n));
        for alts in [Alternatives::Fixed, Alternatives::Relative] {
            prop_assert!(evidence_above(k + 1.0, n, p0, alts) >= evidence_above(k, n, p0, alts));
        }
    }

    /// The ceiling and margin tests' per-period caps only ever lower the evidence, and more
    /// errors in a period never lower it.
    #[test]
    fn the_capped_ceiling_and_margin_are_never_more_than_their_uncapped_mixtures(
        periods in proptest::collection::vec((1u32..200, 0u32..200), 1..6),
        p0 in 0.001f64..0.5,
    ) {
        let periods: Vec<(f64, f64)> = periods
            .into_iter()
            .map(|(n, k)| (f64::from(n), f64::from(k.min(n))))
            .collect();
        let n: f64 = periods.iter().map(|p| p.0).sum();
        let k: f64 = periods.iter().map(|p| p.1).sum();
        let mut more = periods.clone();
        more[0].1 = (more[0].1 + 1.0).min(more[0].0);
        type Test = fn(&[(f64, f64)], f64, f64) -> f64;
        let tests: [(Test, Alternatives); 2] = [
            (ceiling_evidence, Alternatives::Fixed),
            (margin_evidence, Alternatives::Relative),
        ];
        for (test, alts) in tests {
            let capped = test(&periods, p0, 1.0);
            prop_assert!(capped <= evidence_above(k, n, p0, alts) * (1.0 + 1e-9));
            prop_assert!(test(&more, p0, 1.0) >= capped * (1.0 - 1e-9));
        }
    }

    /// Both mixtures are test supermartingales under "rate ≤ `p0`" only if every alternative
    /// is a rate above `p0` (each likelihood ratio then shrinks in expectation at any rate at
    /// or below it) and their weights, fixed before any data, sum to at most 1.
    #[test]
    fn every_alternative_is_a_rate_above_the_null_and_the_weights_sum_to_at_most_one(
        p0 in 1e-9f64..1.0,
    ) {
        for alts in [Alternatives::Fixed, Alternatives::Relative] {
            let pairs = alts.above(p0);
            prop_assert!(pairs.iter().all(|&(p1, w)| p1 > p0 && p1 < 1.0 && w > 0.0));
            prop_assert!(pairs.iter().map(|p| p.1).sum::<f64>() <= 1.0 + 1e-12);
        }
        // At a null of 0.1% plus 0.1 points only the 1000-fold alternative (200%) is dropped.
        prop_assert_eq!(Alternatives::Relative.above(0.002).len(), MARGIN_GRID.len() - 1);
    }

    #[test]
    fn judge_never_panics_and_regresses_only_with_canary_data(
        c in proptest::collection::vec((0.0f64..1000.0, 0.0f64..1.0, proptest::option::of(0.0f64..5000.0)), 0..8),
        b in proptest::collection::vec((0.0f64..1000.0, 0.0f64..1.0, proptest::option::of(0.0f64..5000.0)), 0..8),
    ) {
        let p = Policy::with_defaults("f");
        let to = |v: &Vec<(f64, f64, Option<f64>)>| v.iter().enumerate()
            .map(|(i, &(n, r, l))| minute(i as i64 * 60, n.floor(), (n * r).floor(), l)).collect::<Vec<_>>();
        let j = judge(&p, &obs(to(&c), to(&b)));
        if j.canary.requests == 0.0 {
            prop_assert!(matches!(j.verdict, Verdict::NotEnoughData(_)), "{:?}", j);
        }
    }

    /// Whatever the stable version's minutes hold (any times, NaN, infinities, negatives,
    /// any period), its wander is a finite non-negative number or none, never a panic.
    #[test]
    fn the_wander_is_finite_or_none_on_any_points(
        points in proptest::collection::vec((any::<i64>(), any::<f64>()), 0..120),
        period in -5i64..4000,
    ) {
        if let Some(w) = wander(&points, period) {
            prop_assert!(w.is_finite() && w >= 0.0, "{w}");
        }
    }

    /// Whatever CloudWatch answers (slow or cold counts above the requests, zero or huge
    /// thresholds, NaN-free but extreme values), the judge answers with finite or infinite
    /// evidence and never panics; with EMF metrics α is split five ways.
    #[test]
    fn judge_never_panics_on_any_slow_and_cold_counts(
        c in proptest::collection::vec((0.0f64..1e6, 0.0f64..2.0, 0.0f64..2.0), 0..8),
        b in proptest::collection::vec((0.0f64..1e6, 0.0f64..2.0, 0.0f64..2.0), 0..8),
        cold in proptest::collection::vec((0.0f64..50.0, 0.0f64..80.0), 0..8),
        slow_ms in proptest::option::of(1e-3f64..9e5),
        cold_limit in proptest::option::of(1e-3f64..9e5),
    ) {
        let mut p = Policy::with_defaults("f");
        p.metrics = crate::policy::MetricsSource::Emf {
            namespace: "NotesApi".into(),
            period: std::time::Duration::from_secs(10),
        };
        let to = |v: &Vec<(f64, f64, f64)>| v.iter().enumerate()
            .map(|(i, &(n, e, s))| Sample {
                start: i as i64 * 10,
                requests: n.floor(),
                errors: (n * e).floor(),
                latency_ms: Some(80.0),
                slow: Some((n * s).floor()),
            })
            .collect::<Vec<_>>();
        let o = Observations {
            canary: to(&c),
            baseline: to(&b),
            step_start: 0,
            slow_ms,
            cold: cold.iter().enumerate().map(|(i, &(n, k))| ColdStarts {
                start: i as i64 * 10,
                count: n.floor(),
                slow: k.floor(),
            }).collect(),
            cold_limit_ms: cold_limit,
            latency_wander: None,
            stable_error_rate: None,
            step: 0,
        };
        let j = judge(&p, &o);
        prop_assert!((j.threshold - 500.0).abs() < 1e-6);
        prop_assert!(!j.ceiling_evidence.is_nan() && !j.increase_evidence.is_nan());
        prop_assert!(j.slow_evidence.is_none_or(|e| !e.is_nan()));
        prop_assert!(j.cold_evidence.is_none_or(|e| !e.is_nan()));
        let _ = j.summary();
    }
}

/// Repeated looks under H0 keep the false-rollback rate at or below α (simulated, seeded).
#[test]
fn false_rollbacks_under_repeated_looks_stay_below_alpha() {
    let mut p = Policy::with_defaults("f");
    p.confidence = 0.95; // a larger α makes the check meaningful with few runs
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut uniform = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let runs = 400;
    let mut false_alarms = 0;
    for _ in 0..runs {
        let mut o = obs(vec![], vec![]);
        for m in 0..30 {
            let rate = 0.01; // canary and baseline identical, exactly at the ceiling
            let count =
                |n: u32, u: &mut dyn FnMut() -> f64| (0..n).filter(|_| u() < rate).count() as f64;
            let kc = count(30, &mut uniform);
            let kb = count(270, &mut uniform);
            o.canary.push(minute(m * 60, 30.0, kc, None));
            o.baseline.push(minute(m * 60, 270.0, kb, None));
            if matches!(judge(&p, &o).verdict, Verdict::Regressed(_)) {
                false_alarms += 1;
                break;
            }
        }
    }
    assert!(
        f64::from(false_alarms) / f64::from(runs) <= 0.05,
        "{false_alarms} of {runs}"
    );
}

mod error_event_tests {
    use super::*;

    #[test]
    fn errors_in_proportion_to_traffic_are_no_evidence() {
        // 10% of requests and 10% of errors: exactly what H0 predicts.
        let pairs = vec![(100.0, 1.0, 900.0, 9.0); 20];
        assert!(error_event_evidence(&pairs) < 1.0);
    }

    #[test]
    fn errors_concentrated_on_the_canary_are_strong_evidence() {
        let pairs = vec![(60.0, 1.0, 540.0, 0.0); 8];
        assert!(
            error_event_evidence(&pairs) > 300.0,
            "{}",
            error_event_evidence(&pairs)
        );
    }

    #[test]
    fn a_worse_but_immaterial_canary_is_held_not_rolled_back() {
        // 0.2% vs 0.1%: credibly worse, but at the edge of max_increase (0.1 points).
        let p = Policy::with_defaults("f");
        let edge = 1000.0 * (0.001 + p.errors.max_increase);
        let c: Vec<Sample> = (0..60)
            .map(|i| minute(i * 60, 1000.0, edge, None))
            .collect();
        let b: Vec<Sample> = (0..60).map(|i| minute(i * 60, 9000.0, 9.0, None)).collect();
        let j = judge(&p, &obs(c, b));
        // Credibly worse than the baseline, but not credibly by more than max_increase.
        assert!(j.increase_evidence < SUSPICION, "{j:?}");
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn suspicious_evidence_holds_the_step_instead_of_moving_on() {
        let p = Policy::with_defaults("f");
        // Two canary errors in 120 requests, none in the baseline: evidence, not proof.
        let c = vec![minute(0, 120.0, 2.0, None)];
        let b = vec![minute(0, 1080.0, 0.0, None)];
        let j = judge(&p, &obs(c, b));
        assert!(j.increase_evidence < j.threshold, "{j:?}");
        assert!(
            matches!(&j.verdict, Verdict::NotEnoughData(m) if m.starts_with("suspicious") && m.contains("5xx vs baseline")),
            "{j:?}"
        );
    }

    /// The verdict `minutes` into a canary with two errors in its first minute (at 10%) and no
    /// canary traffic after (the evidence stays suspicious; a step that is not held waits for
    /// requests instead), at `step`, begun at minute `step_start`, beside a stable version
    /// serving `stable` requests a minute.
    fn after_two_errors(
        p: &Policy,
        (minutes, step, step_start): (i64, usize, i64),
        stable: f64,
    ) -> Verdict {
        let mut c = vec![minute(0, stable / 9.0, 2.0, None)];
        c.extend((1..=minutes).map(|m| minute(m * 60, 0.0, 0.0, None)));
        let b = (0..=minutes)
            .map(|m| minute(m * 60, stable, 0.0, None))
            .collect();
        let o = Observations {
            step,
            step_start: step_start * 60,
            ..obs(c, b)
        };
        judge(p, &o).verdict
    }

    #[test]
    fn suspicions_hold_each_step_and_the_whole_canary_for_a_bounded_time() {
        let held = |v: Verdict| matches!(&v, Verdict::NotEnoughData(m) if m.starts_with(HOLDING));
        // Held at (minutes, step, step start) beside a stable version at 18 requests a second.
        let at = |p: &Policy, when| held(after_two_errors(p, when, 1080.0));
        // The defaults: 5-minute steps, so a suspicion holds a step at most 25 minutes, and
        // the canary at most 25 minutes past the soonest it could have reached the end of its
        // step (here 5 minutes a step: the warm-up and latency periods fit in the interval)
        // in all.
        let p = Policy::with_defaults("f");
        // At the first step: held for 25 minutes, then on its way.
        assert!(at(&p, (24, 0, 0)));
        assert!(!at(&p, (25, 0, 0)));
        // At the second step after 26 minutes at the first: the soonest (two intervals) plus
        // 25 minutes is 35, so it holds until then, 9 minutes into the step rather than 25.
        assert!(at(&p, (34, 1, 26)));
        assert!(!at(&p, (35, 1, 26)));
        // The reason says how much longer the hold may last: the step's patience, or the
        // canary's, whichever ends first.
        let left = |when| match after_two_errors(&p, when, 1080.0) {
            Verdict::NotEnoughData(m) => m.rsplit("; ").next().unwrap_or_default().to_string(),
            v => format!("{v:?}"),
        };
        assert_eq!(left((20, 0, 0)), "for at most 5m more");
        assert_eq!(left((30, 1, 26)), "for at most 5m more");
        assert_eq!(left((27, 1, 26)), "for at most 8m more");
        // A step reached on schedule keeps its own 25 minutes.
        assert!(at(&p, (29, 1, 5)));
        assert!(!at(&p, (30, 1, 5)));
        // At half a request a second the first two steps need 2000 and 800 seconds for their
        // `min_requests`, so the second can end at 47 minutes at the soonest: 40 minutes in, a
        // step begun at 30 is still held; at 18 requests a second it is not (10 minutes at the
        // soonest, plus 25).
        assert!(held(after_two_errors(&p, (40, 1, 30), 30.0)));
        assert!(!at(&p, (40, 1, 30)));
        // 1-minute steps whose warm-up takes longer: the first step takes at least 5 minutes
        // (2 of warm-up, the period it began in, two latency periods), the next ones 3 each, so
        // the third can end at 11 minutes at the soonest. Steps this short may be delayed 25
        // minutes in all (not five of their intervals), so a suspicion holds until 36, and
        // each step at most 5 minutes.
        let p = Policy {
            step_interval: std::time::Duration::from_secs(60),
            ..Policy::with_defaults("f")
        };
        assert!(at(&p, (34, 2, 30)));
        assert!(!at(&p, (35, 2, 30)));
        assert!(at(&p, (35, 2, 31)));
        assert!(!at(&p, (36, 2, 31)));
        assert!(!at(&p, (40, 2, 40)));
    }

    #[test]
    fn an_outage_that_fails_both_versions_alike_is_not_the_new_builds_fault() {
        // Issue 7: a shared dependency adds 3% 5xx to both versions for ten minutes.
        let p = Policy::with_defaults("f");
        let c: Vec<Sample> = (0..10).map(|i| minute(i * 60, 60.0, 2.0, None)).collect();
        let b: Vec<Sample> = (0..10).map(|i| minute(i * 60, 540.0, 17.0, None)).collect();
        let j = judge(&p, &obs(c.clone(), b));
        // Above the 1% ceiling, but so was the stable version in every period: not counted.
        assert!(j.ceiling_evidence < SUSPICION, "{j:?}");
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // The same canary beside a stable version under the ceiling is rolled back by it.
        let quiet: Vec<Sample> = (0..10)
            .map(|i| minute(i * 60, 540.0, 17.0, None))
            .map(|b| Sample { errors: 1.0, ..b })
            .collect();
        let j = judge(&p, &obs(c.clone(), quiet));
        assert!(j.ceiling_evidence >= SUSPICION, "{j:?}");
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Without baseline traffic to compare with, the ceiling stands alone.
        let longer: Vec<Sample> = (0..14)
            .map(|i| Sample {
                start: i * 60,
                ..c[0]
            })
            .collect();
        let j = judge(&p, &obs(longer, vec![]));
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn clustered_baseline_errors_are_overdispersed_and_independent_ones_are_not() {
        let period = |i: i64, errors: f64| Sample {
            start: i * 60,
            requests: 1000.0,
            errors,
            latency_ms: None,
            slow: None,
        };
        // About 1 error a period, but in clusters of ten.
        let bursty: Vec<Sample> = (0..20)
            .map(|i| period(i, if i % 10 == 0 { 10.0 } else { 0.0 }))
            .collect();
        assert!(dispersion(&bursty) > 5.0, "{}", dispersion(&bursty));
        let steady: Vec<Sample> = (0..20).map(|i| period(i, f64::from(i as u8 % 3))).collect();
        assert!(dispersion(&steady) < 1.5, "{}", dispersion(&steady));
        assert!(
            (dispersion(&bursty[..2]) - 1.0).abs() < 1e-12,
            "too little to estimate"
        );
    }

    /// 30 minutes of 60 canary and 540 stable requests: the canary answers `canary_errors(i)`
    /// 5xx in minute `i` and the stable version 0.1% (one error every other minute); both get
    /// `outage` more 5xx a request in minutes 8–12 (a shared dependency's outage).
    fn with_outage(canary_errors: fn(i64) -> f64, outage: f64) -> (Vec<Sample>, Vec<Sample>) {
        let during = |i: i64| if (8..13).contains(&i) { outage } else { 0.0 };
        let c = (0..30)
            .map(|i| {
                minute(
                    i * 60,
                    60.0,
                    canary_errors(i) + (60.0 * during(i)).round(),
                    Some(80.0),
                )
            })
            .collect();
        let b = (0..30)
            .map(|i| {
                minute(
                    i * 60,
                    540.0,
                    f64::from(u8::from(i % 2 == 0)) + (540.0 * during(i)).round(),
                    None,
                )
            })
            .collect();
        (c, b)
    }

    #[test]
    fn a_shared_outage_is_not_read_as_clustered_errors() {
        // Independent errors on both versions, and a 3% outage on both for five minutes.
        let (c, b) = with_outage(|i| f64::from(u8::from(i % 10 == 3)), 0.03);
        let raw: Vec<_> = c
            .iter()
            .zip(&b)
            .map(|(c, b)| (c.requests, c.errors, b.requests, b.errors))
            .collect();
        // The stable version's own counts vary as if its errors came in clusters of ten or more;
        // the split of each minute's errors between the versions does not.
        assert!(dispersion(&b) > 10.0, "{}", dispersion(&b));
        assert!(split_dispersion(&raw) < 1.5, "{}", split_dispersion(&raw));
        // Clusters of six landing on one version or the other do make the split lumpy.
        let clustered: Vec<_> = (0..30)
            .map(|i| match i % 6 {
                0 => (60.0, 6.0, 540.0, 0.0),
                3 => (60.0, 0.0, 540.0, 6.0),
                _ => (60.0, 0.0, 540.0, 0.0),
            })
            .collect();
        assert!(
            split_dispersion(&clustered) > 3.0,
            "{}",
            split_dispersion(&clustered)
        );
        // All errors on one side, or too few: nothing to estimate.
        let one_sided: Vec<_> = (0..30).map(|_| (60.0, 2.0, 540.0, 0.0)).collect();
        assert!((split_dispersion(&one_sided) - 1.0).abs() < 1e-12);
        assert!((split_dispersion(&raw[..3]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_bad_build_is_still_rolled_back_after_an_outage_that_hit_both_versions() {
        // Issue 7, production conditions: 2% 5xx on the canary (about one error a minute), with
        // a shared 3% outage for five minutes in the middle. The stable version's own counts
        // would have discounted every error more than tenfold for the rest of the canary.
        let p = Policy::with_defaults("f");
        let (c, b) = with_outage(|i| if i % 3 == 0 { 2.0 } else { 1.0 }, 0.03);
        assert!(dispersion(&b) > 10.0, "{}", dispersion(&b));
        let j = judge(&p, &obs(c, b));
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // A healthy canary through the same outage is not.
        let (c, b) = with_outage(|i| f64::from(u8::from(i % 10 == 3)), 0.03);
        let j = judge(&p, &obs(c, b));
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    #[test]
    fn an_outage_is_minutes_of_the_stable_version_failing_well_above_its_usual_rate() {
        let stable = |errors: fn(i64) -> f64| -> Vec<Sample> {
            (0..30)
                .map(|i| minute(i * 60, 540.0, errors(i), None))
                .collect()
        };
        // Five minutes at 3%: an outage, every minute of it.
        let spans = OutageSpans::new(
            &stable(|i| if (8..13).contains(&i) { 16.0 } else { 0.0 }),
            0.01,
            None,
        );
        assert!(
            (8..13).all(|i| spans.covers(i * 60))
                && !spans.covers(7 * 60)
                && !spans.covers(13 * 60)
        );
        // One minute of it: a burst, not an outage.
        let spans = OutageSpans::new(&stable(|i| if i == 8 { 16.0 } else { 0.0 }), 0.01, None);
        assert!((0..30).all(|i| !spans.covers(i * 60)));
        // Always 2%, above the 1% ceiling: its usual rate, not an outage.
        let spans = OutageSpans::new(&stable(|_| 11.0), 0.01, None);
        assert!((0..30).all(|i| !spans.covers(i * 60)));
        // Ten-second periods are summed into minutes.
        let ten: Vec<Sample> = (0..180)
            .map(|i| {
                minute(
                    i * 10,
                    90.0,
                    if (48..78).contains(&i) { 3.0 } else { 0.0 },
                    None,
                )
            })
            .collect();
        let spans = OutageSpans::new(&ten, 0.01, None);
        assert!(spans.covers(50 * 10) && !spans.covers(100 * 10));
    }

    #[test]
    fn a_canary_holds_its_step_through_a_shared_outage_and_moves_on_after_it() {
        let p = Policy::with_defaults("f");
        // A healthy canary; a 3% outage on both versions in minutes 8-12.
        let (c, b) = with_outage(|i| f64::from(u8::from(i % 10 == 3)), 0.03);
        let upto = |n: usize| obs(c[..n].to_vec(), b[..n].to_vec());
        // Before it: healthy, nothing held.
        let j = judge(&p, &upto(8));
        assert_eq!((&j.verdict, j.outage_since), (&Verdict::Healthy, None));
        // Its first minute alone already holds (it may be the start of an outage), and so does
        // every minute of it and the first after it, with since when and the stable version's
        // numbers.
        for n in [9, 11, 13, 14] {
            let j = judge(&p, &upto(n));
            assert_eq!(j.outage_since, Some(8 * 60), "{n}: {j:?}");
            let Verdict::NotEnoughData(why) = &j.verdict else {
                panic!("{n}: {j:?}");
            };
            assert!(why.starts_with(SHARED_OUTAGE), "{why}");
            assert!(why.contains("against its usual"), "{why}");
        }
        // Two calm minutes after it: the step moves on.
        let j = judge(&p, &upto(15));
        assert_eq!((&j.verdict, j.outage_since), (&Verdict::Healthy, None));
    }

    #[test]
    fn an_outage_that_fills_most_of_the_canary_is_told_from_the_rate_before_it() {
        // The outage began in the canary's third minute and is still going on at its thirtieth.
        let b: Vec<Sample> = (0..30)
            .map(|i| minute(i * 60, 540.0, if i >= 2 { 16.0 } else { 0.0 }, None))
            .collect();
        // Its minutes are most of the canary's: they are its usual rate over the canary.
        let spans = OutageSpans::new(&b, 0.01, None);
        assert!(spans.ongoing().is_none() && !spans.covers(20 * 60));
        // Against its 0.1% over the hour before, every minute of it is an outage.
        let spans = OutageSpans::new(&b, 0.01, Some(0.001));
        assert!((2..30).all(|i| spans.covers(i * 60)) && !spans.covers(60));
        assert_eq!(spans.ongoing().map(|o| o.since), Some(120));
        // Without the hour before, the lower quartile still tells one of two thirds.
        let b: Vec<Sample> = (0..30)
            .map(|i| minute(i * 60, 540.0, if i >= 10 { 16.0 } else { 0.0 }, None))
            .collect();
        let spans = OutageSpans::new(&b, 0.01, None);
        assert!((10..30).all(|i| spans.covers(i * 60)) && !spans.covers(9 * 60));
        // A stable version always at 2% (its rate before too) is not in an outage.
        let always: Vec<Sample> = (0..30).map(|i| minute(i * 60, 540.0, 11.0, None)).collect();
        let spans = OutageSpans::new(&always, 0.01, Some(0.02));
        assert!(spans.ongoing().is_none() && !spans.covers(0));
    }

    #[test]
    fn a_canary_beside_a_stable_version_that_always_fails_above_the_ceiling_is_still_compared() {
        // The stable version answers 2% every minute (the ceiling test leaves those minutes out);
        // a canary answering 10% is still worse than it, by more than the allowed increase.
        let p = Policy::with_defaults("f");
        let c: Vec<Sample> = (0..10).map(|i| minute(i * 60, 60.0, 6.0, None)).collect();
        let b: Vec<Sample> = (0..10).map(|i| minute(i * 60, 540.0, 11.0, None)).collect();
        let j = judge(&p, &obs(c, b));
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("above baseline"))),
            "{j:?}"
        );
    }

    #[test]
    fn one_burst_of_errors_is_at_most_a_suspicion_but_errors_in_period_after_period_roll_back() {
        let p = Policy::with_defaults("f");
        let base = |n: i64| {
            (0..n)
                .map(|i| minute(i * 60, 540.0, 0.0, None))
                .collect::<Vec<_>>()
        };
        // Six canary errors in one minute, none before or after: a burst.
        let burst: Vec<Sample> = (0..10)
            .map(|i| minute(i * 60, 60.0, if i == 3 { 6.0 } else { 0.0 }, None))
            .collect();
        let j = judge(&p, &obs(burst, base(10)));
        assert!(j.increase_evidence <= PERIOD_CAP + 1e-9, "{j:?}");
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Two canary errors a minute, every minute: a bad build.
        let steady: Vec<Sample> = (0..4).map(|i| minute(i * 60, 60.0, 2.0, None)).collect();
        let j = judge(&p, &obs(steady, base(4)));
        assert!(j.increase_evidence >= j.threshold, "{j:?}");
    }

    /// Runs where the error-event test ever reaches `threshold` on identical versions whose errors
    /// come in clusters (geometric sizes with mean `mean_cluster`), each cluster landing on the
    /// canary with its share of the traffic: the test's own null, with bursty inputs.
    /// Events of one period in Poisson(`clusters`) clusters of geometric size with mean
    /// `mean_cluster`, each cluster wholly the canary's with probability `canary_share`: the
    /// (canary, baseline) counts.
    fn clustered_split(
        rng: &mut crate::sim::rng::Rng,
        clusters: f64,
        mean_cluster: f64,
        canary_share: f64,
    ) -> (f64, f64) {
        let (mut c, mut b) = (0.0_f64, 0.0_f64);
        for _ in 0..rng.poisson(clusters) {
            let mut size = 1.0;
            while rng.uniform() > 1.0 / mean_cluster {
                size += 1.0;
            }
            if rng.uniform() < canary_share {
                c += size;
            } else {
                b += size;
            }
        }
        (c, b)
    }

    fn bursty_null_rejections(runs: u32, mean_cluster: f64, threshold: f64) -> u32 {
        let mut rng = crate::sim::rng::Rng::new(7);
        let (nc, nb, rate) = (100.0, 900.0, 0.002);
        let clusters_per_period = (nc + nb) * rate / mean_cluster;
        let mut rejected = 0;
        for _ in 0..runs {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            for m in 0..30 {
                let (xc, xb) =
                    clustered_split(&mut rng, clusters_per_period, mean_cluster, nc / (nc + nb));
                c.push(minute(m * 60, nc, xc.min(nc), None));
                b.push(minute(m * 60, nb, xb.min(nb), None));
                // The judge's own discount: the split's dispersion, or the canary's own.
                let raw: Vec<_> = c
                    .iter()
                    .zip(&b)
                    .map(|(c, b)| (c.requests, c.errors, b.requests, b.errors))
                    .collect();
                let phi = split_dispersion(&raw).max(dispersion(&c));
                let pairs: Vec<_> = raw
                    .iter()
                    .map(|&(nc, xc, nb, xb)| (nc, xc / phi, nb, xb / phi))
                    .collect();
                if error_event_evidence(&pairs) >= threshold {
                    rejected += 1;
                    break;
                }
            }
        }
        rejected
    }

    #[test]
    fn the_error_event_test_keeps_its_share_of_alpha_when_errors_come_in_bursts() {
        // α = 0.05 split four ways: this test's share is 1/80, at any of 30 looks.
        let runs = 600;
        let share = 0.05 / 4.0;
        for mean_cluster in [1.0, 5.0] {
            let r = bursty_null_rejections(runs, mean_cluster, 4.0 / 0.05);
            assert!(
                f64::from(r) / f64::from(runs) <= share,
                "clusters of {mean_cluster}: {r} of {runs} false rejections"
            );
        }
    }

    fn with_slow(mut s: Sample, slow: f64) -> Sample {
        s.slow = Some(slow);
        s
    }

    #[test]
    fn slow_requests_in_the_warm_up_after_a_weight_increase_are_not_judged_and_after_it_are() {
        let mut p = Policy::with_defaults("f");
        p.latency.slow_ms = Some(400.0);
        // 10% of 1000 requests a minute for 4 minutes, then 25%, then 50%: each increase brings
        // 20% of the canary's requests over 400 ms for two minutes (cold starts); the baseline
        // has 0.5%.
        let mut c = Vec::new();
        let mut b = Vec::new();
        for m in 0..10 {
            let share = [0.1, 0.25, 0.5][(m / 4) as usize];
            let (nc, nb) = (1000.0 * share, 1000.0 * (1.0 - share));
            let cold = m % 4 < 2;
            let slow_c = if cold { 0.2 * nc } else { 0.005 * nc };
            c.push(with_slow(minute(m * 60, nc, 0.0, Some(100.0)), slow_c));
            b.push(with_slow(minute(m * 60, nb, 0.0, Some(100.0)), 0.005 * nb));
        }
        let mut o = obs(c.clone(), b.clone());
        o.step_start = 480;
        let j = judge(&p, &o);
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        assert!(j.slow_evidence.is_some_and(|e| e < 2.0), "{j:?}");
        // Judged with no warm-up, the same periods are a regression.
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let j = judge(&p, &o);
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("slower than 400 ms"))),
            "{j:?}"
        );
    }

    #[test]
    fn a_tail_regression_is_caught_by_its_slow_requests_when_the_median_does_not_move() {
        let mut p = Policy::with_defaults("f");
        p.latency.stat = crate::policy::LatencyStat::P50;
        p.latency.slow_ms = Some(400.0);
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let series = |minutes: i64| {
            let c = (0..minutes)
                .map(|m| with_slow(minute(m * 60, 60.0, 0.0, Some(80.0)), 2.0))
                .collect();
            let b = (0..minutes)
                .map(|m| {
                    with_slow(
                        minute(m * 60, 540.0, 0.0, Some(80.0)),
                        if m % 3 == 0 { 1.0 } else { 0.0 },
                    )
                })
                .collect();
            obs(c, b)
        };
        assert!(!matches!(
            judge(&p, &series(1)).verdict,
            Verdict::Regressed(_)
        ));
        let j = judge(&p, &series(6));
        assert!(
            matches!(&j.verdict, Verdict::Regressed(r) if r.len() == 1 && r[0].contains("3.3% of requests slower than 400 ms")),
            "{j:?}"
        );
        assert!(j.summary().contains("slow requests"), "{}", j.summary());
        // Within the allowed increase: credible but immaterial, never a rollback.
        p.latency.max_slow_increase = 0.05;
        let j = judge(&p, &series(30));
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }

    /// Runs of 30 looks under the tail test's null (both versions share each minute's chance of a
    /// slow request), with that chance wandering from minute to minute (autocorrelated, log-AR(1))
    /// and slow requests in clusters of geometric size (heavy-tailed counts); how many runs the
    /// full judge rolls back for slow requests.
    fn tail_null_rejections(runs: u32, mean_cluster: f64, policy: &Policy) -> u32 {
        let mut rng = crate::sim::rng::Rng::new(11);
        let (nc, nb) = (100.0, 900.0);
        let mut rejected = 0;
        for _ in 0..runs {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            let mut level = 0.0_f64;
            for m in 0..30 {
                level = 0.8 * level + 0.5 * rng.normal();
                let p_slow = (0.01 * level.exp()).min(0.5);
                let (sc, sb) = clustered_split(
                    &mut rng,
                    (nc + nb) * p_slow / mean_cluster,
                    mean_cluster,
                    nc / (nc + nb),
                );
                c.push(with_slow(minute(m * 60, nc, 0.0, Some(80.0)), sc.min(nc)));
                b.push(with_slow(minute(m * 60, nb, 0.0, Some(80.0)), sb.min(nb)));
                let j = judge(policy, &obs(c.clone(), b.clone()));
                if matches!(&j.verdict, Verdict::Regressed(r) if r.iter().any(|r| r.contains("slower than")))
                {
                    rejected += 1;
                    break;
                }
            }
        }
        rejected
    }

    #[test]
    fn the_tail_test_keeps_its_share_of_alpha_on_autocorrelated_bursty_slow_requests() {
        // α = 0.05 split four ways: this test's share is 1/80, at any of 30 looks; the allowed
        // increase is 0 so only the evidence stands between the null and a rollback.
        let mut p = Policy::with_defaults("f");
        p.confidence = 0.95;
        p.latency.slow_ms = Some(400.0);
        p.latency.max_slow_increase = 0.0;
        p.latency.warmup = Some(std::time::Duration::ZERO);
        let runs = 400;
        for mean_cluster in [1.0, 5.0] {
            let r = tail_null_rejections(runs, mean_cluster, &p);
            assert!(
                f64::from(r) / f64::from(runs) <= 0.05 / 4.0,
                "clusters of {mean_cluster}: {r} of {runs} false rejections"
            );
        }
    }

    #[test]
    fn a_canary_at_the_edge_of_max_increase_is_rolled_back_at_most_its_share_of_alpha() {
        // Baseline 0.1%, canary 0.1% + max_increase (0.1 points): inside the allowed band, at
        // its edge. The judge looks after every minute for an hour; with α = 1% over four
        // tests the 5xx-increase rollback may happen in at most 1/400 of runs (plus noise).
        let p = Policy::with_defaults("f");
        let (nc, nb) = (200_u64, 1800_u64);
        let (pb, pc) = (0.001, 0.001 + p.errors.max_increase);
        let mut rng = crate::sim::rng::Rng::new(23);
        let runs = 1500;
        let mut rejected = 0;
        for _ in 0..runs {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            for m in 0..60_i64 {
                c.push(minute(m * 60, nc as f64, rng.binomial(nc, pc) as f64, None));
                b.push(minute(m * 60, nb as f64, rng.binomial(nb, pb) as f64, None));
                if matches!(
                    judge(&p, &obs(c.clone(), b.clone())).verdict,
                    Verdict::Regressed(_)
                ) {
                    rejected += 1;
                    break;
                }
            }
        }
        let rate = f64::from(rejected) / f64::from(runs);
        let share: f64 = 1.0 / 400.0;
        assert!(
            rate <= share + 2.0 * (share / f64::from(runs)).sqrt(),
            "{:.2}% of runs at the edge of the band rolled back",
            rate * 100.0
        );
        // 0.6 points over the same hour (six times the allowed increase): caught.
        let mut caught = 0;
        for _ in 0..100 {
            let (mut c, mut b) = (Vec::new(), Vec::new());
            for m in 0..60_i64 {
                let worse = 0.001 + 6.0 * p.errors.max_increase;
                c.push(minute(
                    m * 60,
                    nc as f64,
                    rng.binomial(nc, worse) as f64,
                    None,
                ));
                b.push(minute(m * 60, nb as f64, rng.binomial(nb, pb) as f64, None));
            }
            caught += u32::from(matches!(
                judge(&p, &obs(c, b)).verdict,
                Verdict::Regressed(_)
            ));
        }
        assert!(
            caught >= 90,
            "{caught} of 100 caught at 6x the allowed increase"
        );
    }

    #[test]
    fn bursts_on_the_canary_are_discounted_by_its_own_dispersion_while_the_baseline_is_clean() {
        let p = Policy::with_defaults("f");
        let b: Vec<Sample> = (0..30).map(|i| minute(i * 60, 540.0, 0.0, None)).collect();
        // Two bursts of 6 errors in 30 minutes (0.07% of requests), none on the stable version.
        let bursty: Vec<Sample> = (0..30)
            .map(|i| {
                minute(
                    i * 60,
                    60.0,
                    if i == 7 || i == 19 { 6.0 } else { 0.0 },
                    None,
                )
            })
            .collect();
        let j = judge(&p, &obs(bursty.clone(), b.clone()));
        assert!(dispersion(&bursty) > 4.0, "{}", dispersion(&bursty));
        assert!(!matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
        // Failures one or two a minute (independent, 2.2%): rolled back.
        let steady: Vec<Sample> = (0..30)
            .map(|i| minute(i * 60, 60.0, if i % 3 == 0 { 2.0 } else { 1.0 }, None))
            .collect();
        assert!(dispersion(&steady) < 1.5, "{}", dispersion(&steady));
        let j = judge(&p, &obs(steady, b));
        assert!(matches!(j.verdict, Verdict::Regressed(_)), "{j:?}");
    }
}

mod latency_null_tests {
    use super::super::latency::{
        mixture_evidence, wander, wander_floor, ASSUMED_WANDER, WANDER_SECS,
    };
    use crate::sim::rng::Rng;

    /// Null worlds per case.
    const RUNS: u32 = 3000;

    /// A unit-variance Student t draw with `dof` degrees of freedom (heavy tails): a normal
    /// over the root of a scaled chi-square (statrs Gamma).
    fn student(rng: &mut Rng, dof: f64) -> f64 {
        let t = rng.normal() / (2.0 * rng.gamma(dof / 2.0) / dof).sqrt();
        t / (dof / (dof - 2.0)).sqrt()
    }

    /// One null world, minute by minute: each version's latency level wanders as AR(1) with
    /// coefficient `phi` and t(`dof`) innovations; each minute's statistic adds white noise.
    struct World {
        rng: Rng,
        phi: f64,
        dof: f64,
        /// Each version's level: its standard deviation, and the stable and canary levels.
        level_sd: f64,
        stable: f64,
        canary: f64,
        /// Per-minute sampling noise of an observation's statistic.
        white: f64,
    }

    impl World {
        fn step(&mut self, level: f64) -> f64 {
            let a = (1.0 - self.phi * self.phi).sqrt();
            self.phi * level + a * student(&mut self.rng, self.dof)
        }

        /// The stable version's log statistic per minute over the hours before the canary
        /// (its own sampling noise smaller: it serves all the traffic).
        fn history(&mut self) -> Vec<(i64, f64)> {
            (0..WANDER_SECS / 60)
                .map(|m| {
                    self.stable = self.step(self.stable);
                    let noise = 0.3 * self.white * self.rng.normal();
                    (m * 60, (self.level_sd * self.stable + noise).exp())
                })
                .collect()
        }

        /// The next observation at the null boundary: the canary's level minus the stable's.
        fn observation(&mut self) -> f64 {
            self.stable = self.step(self.stable);
            self.canary = self.step(self.canary);
            let noise = self.white * student(&mut self.rng, self.dof);
            self.level_sd * (self.canary - self.stable) + noise
        }
    }

    /// The look (minute) at which the latency test first reaches its threshold in each of
    /// `runs` worlds, `None` for a run in which it never does over `n` one-minute observations
    /// (the agent looks after every observation). The per-minute difference has standard
    /// deviation `sd`, of which `white` is sampling noise, and sits `shift` (log) above the
    /// limit: 0 is the null's boundary. With `history`, the test's variance is floored by the
    /// wander the judge measures on the stable version's hours before (as the agent reads
    /// them); without, by `assumed` ([`ASSUMED_WANDER`] in the agent).
    fn first_rejections(
        runs: u32,
        n: usize,
        (phi, dof): (f64, f64),
        (sd, white): (f64, f64),
        shift: f64,
        history: Option<f64>,
    ) -> Vec<Option<usize>> {
        let threshold = 400.0;
        let mut w = World {
            rng: Rng::new(17),
            phi,
            dof,
            level_sd: ((sd * sd - white * white).max(0.0) / 2.0).sqrt(),
            stable: 0.0,
            canary: 0.0,
            white,
        };
        let mut firsts = Vec::new();
        for _ in 0..runs {
            w.stable = student(&mut w.rng, dof);
            w.canary = student(&mut w.rng, dof);
            let wandered = history.unwrap_or_else(|| {
                let points = w.history();
                wander(&points, 60).expect("six hours of points")
            });
            let floor = 0.04_f64.max(wander_floor(wandered, 2.0, &[60.0]));
            let mut d = Vec::with_capacity(n);
            firsts.push((1..=n).find(|_| {
                d.push(w.observation() + shift);
                mixture_evidence(&d, floor) >= threshold
            }));
        }
        firsts
    }

    /// Asserts that in each case (AR(1) coefficient and Student t degrees of freedom, the
    /// per-minute difference's sd, of which sampling noise) the latency test ever rejects at
    /// most its share of α in RUNS null worlds of 90 looks ([`first_rejections`] at the
    /// boundary): α = 1% split over 4 tests, 1/400 of null runs, plus two standard errors of
    /// sampling noise. With `history`, the stable version's measured wander, else
    /// [`ASSUMED_WANDER`].
    fn keeps_the_share(cases: &[((f64, f64), f64, f64)], history: bool) {
        let share: f64 = 1.0 / 400.0;
        let noise = 2.0 * (share / f64::from(RUNS)).sqrt();
        let assumed = (!history).then_some(ASSUMED_WANDER);
        for &(ar, sd, white) in cases {
            let firsts = first_rejections(RUNS, 90, ar, (sd, white), 0.0, assumed);
            let rate = firsts.iter().filter(|f| f.is_some()).count() as f64 / f64::from(RUNS);
            assert!(
                rate <= share + noise,
                "AR({}) t({}) sd {sd}: {:.2}%",
                ar.0,
                ar.1,
                rate * 100.0
            );
        }
    }

    #[test]
    fn the_latency_test_keeps_its_share_of_alpha_on_heavy_tailed_and_autocorrelated_periods() {
        // Measured (share 0.25%): 0.07%, 0.10%, 0.03%, 0.03%, 0.03% and 0.20%.
        keeps_the_share(
            &[
                ((0.0, 3.0), 0.3, 0.3),
                ((0.5, 3.0), 0.2, 0.05),
                ((0.8, 4.0), 0.2, 0.05),
                ((0.9, 5.0), 0.1, 0.02),
                ((0.9, 5.0), 0.3, 0.05),
                ((0.95, 5.0), 0.3, 0.05),
            ],
            true,
        );
    }

    #[test]
    fn without_the_stable_versions_history_the_assumed_wander_keeps_the_share() {
        // A function that served fewer than 30 minutes in the six hours before (or an
        // emulator with no percentiles): the test assumes ASSUMED_WANDER of each version. Within
        // it (AR(1) 0.5, 0.8 and 0.9 per minute), the share holds. Measured: 0.00%, 0.17% and
        // 0.00%; with the canary's own periods alone it was 1.0%, 7.4% and 2.4%.
        keeps_the_share(
            &[
                ((0.5, 3.0), 0.2, 0.05),
                ((0.8, 4.0), 0.2, 0.05),
                ((0.9, 5.0), 0.1, 0.02),
            ],
            false,
        );
    }

    /// BENCHMARKS.md, "The latency test without history": what the assumed wander costs and
    /// gives when the hours before the canary give none. Run with
    /// `cargo test --release -p canary-agent --lib latency_without_history_table -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement for BENCHMARKS.md, not a check"]
    fn latency_without_history_table() {
        let minutes = |firsts: &[Option<usize>], q: usize| {
            let mut m: Vec<usize> = firsts.iter().map(|f| f.unwrap_or(usize::MAX)).collect();
            m.sort_unstable();
            let v = m[(m.len() * q / 100).min(m.len() - 1)];
            if v == usize::MAX {
                "> 90".to_string()
            } else {
                v.to_string()
            }
        };
        println!("| per-minute difference | assumed wander | null runs rejected | 2x: minutes, median / p95 | 1.5x: minutes, median / p95 |");
        println!("|---|---:|---:|---|---|");
        for (ar, sd) in [
            ((0.0, 3.0), (0.3, 0.3)),
            ((0.5, 3.0), (0.2, 0.05)),
            ((0.8, 4.0), (0.2, 0.05)),
            ((0.9, 5.0), (0.1, 0.02)),
            ((0.9, 5.0), (0.3, 0.05)),
        ] {
            for assumed in [0.0, ASSUMED_WANDER] {
                let null = first_rejections(RUNS, 90, ar, sd, 0.0, Some(assumed));
                let rejected = null.iter().filter(|f| f.is_some()).count();
                // 2x and 1.5x the stable version's statistic against a limit of 1.3 times it.
                let twice = first_rejections(500, 90, ar, sd, (2.0_f64 / 1.3).ln(), Some(assumed));
                let half = first_rejections(500, 90, ar, sd, (1.5_f64 / 1.3).ln(), Some(assumed));
                let floor = if assumed > 0.0 {
                    format!("{assumed} log²·s")
                } else {
                    "none: its own periods".to_string()
                };
                println!(
                    "| AR({}), t({}), sd {} (sampling {}) | {floor} | {:.2}% | {} / {} | {} / {} |",
                    ar.0,
                    ar.1,
                    sd.0,
                    sd.1,
                    100.0 * rejected as f64 / f64::from(RUNS),
                    minutes(&twice, 50),
                    minutes(&twice, 95),
                    minutes(&half, 50),
                    minutes(&half, 95),
                );
            }
        }
    }
}
