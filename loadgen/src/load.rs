//! The traffic: a mix of the five notes operations at a steady rate, signed as the signed-in
//! identity, tallied per reporting window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cognito::{sign_in, Login, Session};
use crate::{send, sign_request, Client, LoadError};

/// Lowest and highest request rate (per second).
pub const RATE_RANGE: (f64, f64) = (0.1, 1000.0);
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Credentials are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// One of the notes API's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /notes`.
    Create,
    /// `GET /notes/{id}`.
    Get,
    /// `GET /notes`.
    List,
    /// `PUT /notes/{id}`.
    Update,
    /// `DELETE /notes/{id}`.
    Delete,
}

impl Op {
    /// Every operation, in mix order.
    pub const ALL: [Op; 5] = [Op::Create, Op::Get, Op::List, Op::Update, Op::Delete];

    /// The name used in `--mix` and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Relative weights of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix(pub [u32; 5]);

impl Default for Mix {
    /// create 2, get 4, list 2, update 1, delete 1: reads dominate, and the note pool grows.
    fn default() -> Self {
        Mix([2, 4, 2, 1, 1])
    }
}

impl Mix {
    /// Parses `create=2,get=4,...`; unnamed operations get 0.
    ///
    /// # Errors
    /// An unknown operation, a weight that is not a whole number up to 1000, or all zero.
    pub fn parse(text: &str) -> Result<Mix, LoadError> {
        let mut weights = [0_u32; 5];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| {
                LoadError::Usage(format!("--mix: {part:?} is not OPERATION=WEIGHT"))
            })?;
            let i = Op::ALL
                .iter()
                .position(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    LoadError::Usage(format!(
                        "--mix: unknown operation {:?} (create, get, list, update, delete)",
                        name.trim()
                    ))
                })?;
            weights[i] = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| *w <= 1000)
                .ok_or_else(|| {
                    LoadError::Usage(format!(
                        "--mix: the weight of {name} must be a whole number from 0 to 1000"
                    ))
                })?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(LoadError::Usage(
                "--mix: at least one operation needs a weight above 0".into(),
            ));
        }
        Ok(Mix(weights))
    }

    /// The operation a uniform draw `u` in [0, 1) falls on.
    #[must_use]
    pub fn pick(&self, u: f64) -> Op {
        let total: u32 = self.0.iter().sum();
        let mut target = u * f64::from(total.max(1));
        for (op, w) in Op::ALL.iter().zip(self.0) {
            if target < f64::from(w) {
                return *op;
            }
            target -= f64::from(w);
        }
        Op::ALL[self.0.iter().rposition(|w| *w > 0).unwrap_or(0)]
    }
}

/// Parses a duration such as `90s`, `10m` or `2h`.
///
/// # Errors
/// Not a whole number with a unit `s`, `m` or `h`, zero, or over `max`.
pub fn duration(text: &str, max: Duration) -> Result<Duration, LoadError> {
    let bad = || {
        LoadError::Usage(format!(
            "{text:?} is not a duration like 90s, 10m or 2h (at most {}s)",
            max.as_secs()
        ))
    };
    let text = text.trim();
    let split = text.len().saturating_sub(1);
    let (number, unit) = (text.get(..split).ok_or_else(bad)?, &text[split..]);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(scale).ok_or_else(bad)?;
    let d = Duration::from_secs(secs);
    if secs == 0 || d > max {
        return Err(bad());
    }
    Ok(d)
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Requests per second, within [`RATE_RANGE`].
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// The operations' weights.
    pub mix: Mix,
    /// How often to report.
    pub every: Duration,
    /// How long one request may take.
    pub timeout: Duration,
    /// Requests in flight at most; a request due while all are busy is skipped and counted.
    pub in_flight: usize,
    /// Seed of the operation draws.
    pub seed: u64,
}

impl Plan {
    /// Checks the bounds of every field.
    ///
    /// # Errors
    /// A field out of its bounds, named.
    pub fn check(&self) -> Result<(), LoadError> {
        let (lo, hi) = RATE_RANGE;
        if !(self.rate.is_finite() && (lo..=hi).contains(&self.rate)) {
            return Err(LoadError::Usage(format!(
                "--rate must be between {lo} and {hi} requests per second"
            )));
        }
        if !(1..=10_000).contains(&self.in_flight) {
            return Err(LoadError::Usage(
                "--in-flight must be between 1 and 10000".into(),
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LoadError::Usage("--duration must be 1s to 24h".into()));
        }
        if self.every.is_zero() || self.timeout.is_zero() {
            return Err(LoadError::Usage(
                "--every and --timeout must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// Counts of one window (or of the whole run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Requests answered (any status).
    pub answered: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers (403: signature or permission; 404: a note gone).
    pub client_errors: u64,
    /// 5xx answers, per operation.
    pub server_errors: BTreeMap<Op, u64>,
    /// Requests with no answer (connection failed, timed out).
    pub failed: u64,
    /// Requests not sent because `in_flight` were already waiting.
    pub skipped: u64,
    /// Latencies of answered requests, in milliseconds.
    pub latencies_ms: Vec<f64>,
}

impl Tally {
    /// 5xx answers over every operation.
    #[must_use]
    pub fn errors_5xx(&self) -> u64 {
        self.server_errors.values().sum()
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Tally) {
        self.answered += other.answered;
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        for (op, n) in &other.server_errors {
            *self.server_errors.entry(*op).or_default() += n;
        }
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.latencies_ms.extend(&other.latencies_ms);
    }

    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    #[must_use]
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        sorted.get(rank.clamp(1, n) - 1).copied()
    }

    /// One report line for a window of `secs` seconds.
    #[must_use]
    pub fn line(&self, secs: f64) -> String {
        let sent = self.answered + self.failed;
        let five = self.errors_5xx();
        let share = if self.answered > 0 {
            100.0 * five as f64 / self.answered as f64
        } else {
            0.0
        };
        let ms = |q| {
            self.latency_ms(q)
                .map_or("-".into(), |v| format!("{v:.0} ms"))
        };
        let mut line = format!(
            "{sent} requests ({:.1}/s)  2xx {}  4xx {}  5xx {five} ({share:.1}%)  no answer {}  p50 {}  p99 {}",
            sent as f64 / secs.max(1e-9),
            self.ok,
            self.client_errors,
            self.failed,
            ms(0.5),
            ms(0.99),
        );
        if five > 0 {
            let by: Vec<String> = self
                .server_errors
                .iter()
                .map(|(op, n)| format!("{} {n}", op.name()))
                .collect();
            line.push_str(&format!("  5xx by operation: {}", by.join(", ")));
        }
        if self.skipped > 0 {
            line.push_str(&format!("  skipped {} (all in flight)", self.skipped));
        }
        line
    }
}

/// Uniform draws in [0, 1) from a seed (SplitMix64: eight lines, no generator crate needed for
/// picking operations).
#[derive(Debug, Clone)]
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }
}

/// One request's outcome.
struct Done {
    op: Op,
    answer: Result<crate::Answer, String>,
    ms: f64,
}

/// The request for `op` (on note `id` for get/update/delete).
fn request(api: &str, op: Op, id: Option<&str>, n: u64) -> http::Request<Vec<u8>> {
    let note = |id: Option<&str>| format!("{api}/notes/{}", id.unwrap_or(""));
    let body = |text: String| json!({ "content": text }).to_string().into_bytes();
    let (method, uri, body) = match op {
        Op::Create => (
            "POST",
            format!("{api}/notes"),
            body(format!("game day note {n}")),
        ),
        Op::Get => ("GET", note(id), Vec::new()),
        Op::List => ("GET", format!("{api}/notes"), Vec::new()),
        Op::Update => ("PUT", note(id), body(format!("game day note {n}, edited"))),
        Op::Delete => ("DELETE", note(id), Vec::new()),
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(body).unwrap_or_default()
}

/// Sends requests as `plan` says, calling `report` with each window's tally and length; returns
/// the whole run's tally.
///
/// # Errors
/// The plan is out of bounds, or signing in (at the start or when the credentials are renewed)
/// failed.
pub async fn run(
    client: &Client,
    api: &str,
    login: &Login,
    plan: &Plan,
    mut report: impl FnMut(&Tally, Duration),
) -> Result<Tally, LoadError> {
    plan.check()?;
    let api = api.trim_end_matches('/').to_string();
    let uri: http::Uri = format!("{api}/notes")
        .parse()
        .map_err(|e| LoadError::Usage(format!("--api {api:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(LoadError::Usage(format!(
            "--api {api:?} must be an http(s) URL with a host, e.g. the stack's ApiUrl output"
        )));
    }
    let mut session: Session = sign_in(client, login).await?;
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(plan.in_flight));
    let mut draws = Draws(plan.seed);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let (mut total, mut window) = (Tally::default(), Tally::default());
    let start = Instant::now();
    let mut window_start = start;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0_u64.. {
        ticker.tick().await;
        while let Some(done) = tasks.try_join_next() {
            record(&mut window, done.ok());
        }
        if window_start.elapsed() >= plan.every {
            report(&window, window_start.elapsed());
            total.add(&window);
            window = Tally::default();
            window_start = Instant::now();
        }
        if start.elapsed() >= plan.duration {
            break;
        }
        let left = session
            .expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left < RENEW_BEFORE {
            session = sign_in(client, login).await?;
        }
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            window.skipped += 1;
            continue;
        };
        let (op, id) = choose(&mut draws, &plan.mix, &notes);
        let mut req = request(&api, op, id.as_deref(), n);
        sign_request(
            &mut req,
            &session.credentials,
            &login.region,
            SystemTime::now(),
        )?;
        let (client, notes, timeout) = (client.clone(), Arc::clone(&notes), plan.timeout);
        tasks.spawn(async move {
            let began = Instant::now();
            let answer = send(&client, req, timeout).await;
            let ms = began.elapsed().as_secs_f64() * 1000.0;
            remember(&notes, op, id, &answer);
            drop(slot);
            Done { op, answer, ms }
        });
    }
    while let Some(done) = tasks.join_next().await {
        record(&mut window, done.ok());
    }
    report(&window, window_start.elapsed());
    total.add(&window);
    Ok(total)
}

/// The next operation and its note: get, update and delete need a note, so with none yet they
/// create one; a delete takes its note out of the pool first, so nothing else asks for it.
fn choose(draws: &mut Draws, mix: &Mix, notes: &Mutex<Vec<String>>) -> (Op, Option<String>) {
    let op = mix.pick(draws.next());
    let u = draws.next();
    let mut pool = notes.lock().unwrap_or_else(PoisonError::into_inner);
    if op == Op::Create || op == Op::List {
        return (op, None);
    }
    if pool.is_empty() {
        return (Op::Create, None);
    }
    let i = ((u * pool.len() as f64) as usize).min(pool.len() - 1);
    if op == Op::Delete {
        return (op, Some(pool.swap_remove(i)));
    }
    (op, Some(pool[i].clone()))
}

/// Keeps a created note's id for later requests.
fn remember(
    notes: &Mutex<Vec<String>>,
    op: Op,
    id: Option<String>,
    answer: &Result<crate::Answer, String>,
) {
    let Ok(answer) = answer else { return };
    let mut pool = notes.lock().unwrap_or_else(PoisonError::into_inner);
    match op {
        Op::Create if answer.status == 201 => {
            let note: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if let Some(id) = note["noteId"].as_str() {
                pool.push(id.to_string());
            }
        }
        // A delete that did not happen gives its note back.
        Op::Delete if answer.status >= 500 => pool.extend(id),
        _ => {}
    }
}

fn record(window: &mut Tally, done: Option<Done>) {
    let Some(done) = done else {
        window.failed += 1;
        return;
    };
    match done.answer {
        Ok(answer) => {
            window.answered += 1;
            window.latencies_ms.push(done.ms);
            match answer.status {
                200..=299 => window.ok += 1,
                400..=499 => window.client_errors += 1,
                500..=599 => *window.server_errors.entry(done.op).or_default() += 1,
                _ => {}
            }
        }
        Err(_) => window.failed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_picks_by_weight_and_refuses_nonsense() {
        let mix = Mix::parse("create=1, list=3").expect("valid");
        assert_eq!(mix, Mix([1, 0, 3, 0, 0]));
        assert_eq!(mix.pick(0.0), Op::Create);
        assert_eq!(mix.pick(0.2499), Op::Create);
        assert_eq!(mix.pick(0.25), Op::List);
        assert_eq!(mix.pick(0.999_999), Op::List);
        for bad in ["create", "fetch=1", "get=-1", "get=1001", "get=0", ""] {
            assert!(Mix::parse(bad).is_err(), "{bad}");
        }
        let mut d = Draws(7);
        let picks: Vec<Op> = (0..10_000).map(|_| Mix::default().pick(d.next())).collect();
        let gets = picks.iter().filter(|o| **o == Op::Get).count();
        assert!(
            (3700..4300).contains(&gets),
            "{gets} gets of 10000 at weight 4/10"
        );
    }

    #[test]
    fn durations_and_plans_are_bounded() {
        let max = MAX_DURATION;
        assert_eq!(duration("90s", max), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m", max), Ok(Duration::from_secs(600)));
        assert_eq!(duration("2h", max), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "s",
            "0s",
            "25h",
            "10",
            "1d",
            "-1m",
            "99999999999999999999h",
        ] {
            assert!(duration(bad, max).is_err(), "{bad}");
        }
        let plan = Plan {
            rate: 5.0,
            duration: Duration::from_secs(60),
            mix: Mix::default(),
            every: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            in_flight: 64,
            seed: 1,
        };
        assert_eq!(plan.check(), Ok(()));
        for rate in [0.0, 0.05, 1001.0, f64::NAN, f64::INFINITY] {
            assert!(
                Plan {
                    rate,
                    ..plan.clone()
                }
                .check()
                .is_err(),
                "{rate}"
            );
        }
        assert!(Plan {
            in_flight: 0,
            ..plan.clone()
        }
        .check()
        .is_err());
    }

    #[test]
    fn a_tally_reports_rates_errors_by_operation_and_tail_latency() {
        let mut t = Tally {
            answered: 100,
            ok: 90,
            client_errors: 5,
            server_errors: BTreeMap::from([(Op::Create, 5)]),
            failed: 0,
            skipped: 2,
            latencies_ms: (1..=100).map(f64::from).collect(),
        };
        assert_eq!(t.latency_ms(0.5), Some(50.0));
        assert_eq!(t.latency_ms(0.99), Some(99.0));
        let line = t.line(10.0);
        assert!(
            line.starts_with("100 requests (10.0/s)  2xx 90  4xx 5  5xx 5 (5.0%)"),
            "{line}"
        );
        assert!(line.contains("5xx by operation: create 5"), "{line}");
        assert!(line.contains("skipped 2"), "{line}");
        t.add(&t.clone());
        assert_eq!((t.answered, t.errors_5xx()), (200, 10));
        assert_eq!(Tally::default().latency_ms(0.5), None);
    }
}
