//! AWS CodeDeploy `Canary10Percent5Minutes` with the alarms of the AWS SAM documentation's
//! safe-deployment example.
//!
//! Sources:
//! - The traffic shift: "CanaryXPercentYMinutes: X percent of traffic will be routed to new
//!   version for Y minutes. After Y minutes, 100 percent of traffic will be sent to new version"
//!   (aws/serverless-application-model, `docs/safe_lambda_deployments.rst`, "Traffic Shifting
//!   Configurations"; the SAM developer guide's "Deploying serverless applications gradually").
//! - The alarms: that page's `DeploymentPreference` example lists
//!   `AliasErrorMetricGreaterThanZeroAlarm` and `LatestVersionErrorMetricGreaterThanZeroAlarm`,
//!   both `AWS/Lambda` `Errors`, `Statistic: Sum`, `Period: 60`, `EvaluationPeriods: 2`,
//!   `ComparisonOperator: GreaterThanThreshold`, `Threshold: 0`; the first with dimensions
//!   `FunctionName` and `Resource: <function>:live` (every invocation through the alias, both
//!   versions together), the second adding `ExecutedVersion: <new version>`. `DatapointsToAlarm`
//!   is unset, so it defaults to `EvaluationPeriods` (2 of 2); `TreatMissingData` is unset, so
//!   `missing`: a minute without invocations has no `Errors` datapoint and cannot breach.
//! - The rule: "During traffic shifting, if any of the CloudWatch Alarms go to Alarm state,
//!   CodeDeploy will immediately flip the Alias back to old version" (same page); CodeDeploy
//!   compares nothing with the old version. An alarm already in ALARM when the deployment starts
//!   stops it before any traffic moves ("If any of the specified alarms are activated, the
//!   deployment stops", CodeDeploy user guide, "Monitoring deployments with CloudWatch alarms").
//!
//! Simplification: CloudWatch evaluates the two newest one-minute periods the alarm can see; when
//! one of them has no datapoint it may look further back for real datapoints, which is not
//! modelled (it matters only when a version serves no request in a minute).

use super::{newest_period, period, promote, roll_back, route, Contender, End};
use crate::sim::Shared;

/// Percent of traffic the new version gets for the canary's first increment.
pub const WEIGHT: f64 = 10.0;

/// Seconds at [`WEIGHT`] before the rest of the traffic shifts.
pub const CANARY_SECS: i64 = 300;

/// A CloudWatch metric alarm on a `Sum` of `Errors`: ALARM when each of the newest
/// `evaluation_periods` periods has a datapoint above `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorsAlarm {
    /// `EvaluationPeriods` (and `DatapointsToAlarm`, which defaults to it).
    pub evaluation_periods: usize,
    /// `Threshold`, compared with `GreaterThanThreshold`.
    pub threshold: f64,
}

/// The SAM example's alarm: `Errors` `Sum` > 0 in 2 of 2 one-minute periods.
pub const SAM_ERRORS_ALARM: ErrorsAlarm = ErrorsAlarm {
    evaluation_periods: 2,
    threshold: 0.0,
};

impl ErrorsAlarm {
    /// Whether the alarm is in ALARM given its period sums, oldest first, the newest last
    /// (`None`: no datapoint in that period).
    #[must_use]
    pub fn in_alarm(&self, sums: &[Option<f64>]) -> bool {
        sums.len() >= self.evaluation_periods
            && sums[sums.len() - self.evaluation_periods..]
                .iter()
                .all(|s| s.is_some_and(|e| e > self.threshold))
    }
}

/// The CodeDeploy deployment: `None` before it starts, then its start time.
#[derive(Debug, Default)]
pub struct CodeDeploy {
    started: Option<i64>,
}

/// The two alarms' states at `now`: (alias, new version).
fn alarms(world: &Shared, now: i64) -> (bool, bool) {
    let newest = newest_period(world, now);
    let starts: Vec<i64> = (0..SAM_ERRORS_ALARM.evaluation_periods as i64)
        .rev()
        .map(|k| newest - 60 * k)
        .collect();
    let alias: Vec<Option<f64>> = starts
        .iter()
        .map(|&s| {
            let both = [1, 2].map(|v| period(world, v, s, now).map(|p| p.errors));
            both.iter().flatten().copied().reduce(|a, b| a + b)
        })
        .collect();
    let latest: Vec<Option<f64>> = starts
        .iter()
        .map(|&s| period(world, 2, s, now).map(|p| p.errors))
        .collect();
    (
        SAM_ERRORS_ALARM.in_alarm(&alias),
        SAM_ERRORS_ALARM.in_alarm(&latest),
    )
}

impl Contender for CodeDeploy {
    fn tick(&mut self, world: &Shared, now: i64) -> End {
        let (alias, latest) = alarms(world, now);
        if alias || latest {
            return roll_back(world);
        }
        let Some(start) = self.started else {
            route(world, WEIGHT);
            self.started = Some(now);
            return End::Running;
        };
        if now - start >= CANARY_SECS {
            return promote(world);
        }
        End::Running
    }
}
