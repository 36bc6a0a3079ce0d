//! `scale`: one agent over many protected aliases on the simulator (the same tick, judge and
//! rotation as the deployed agent; in-memory ports), counting the Lambda control-plane calls each
//! tick makes against the account's quota. Prints a Markdown table.
//!
//! ```text
//! cargo run --release -p lambda-canary-tests --bin scale -- --functions 1000 --ticks 45
//! ```

use std::process::ExitCode;
use std::time::Instant;

use canary_agent::cli::{reads_per_tick, DEFAULT_LAMBDA_RPS};
use canary_agent::policy::Policy;
use canary_agent::sim::traffic::{Build, Traffic};
use canary_agent::sim::{agent, block_on, Shared, World};
use clap::Parser;

/// Lambda's control-plane quota per account and region (requests a second).
const QUOTA_RPS: f64 = 15.0;

/// Ticks an agent over many aliases, some deployed (healthy and bad), and reports the calls.
#[derive(Debug, Parser)]
#[command(name = "scale")]
struct Args {
    /// Protected aliases.
    #[arg(long, default_value_t = 1000)]
    functions: usize,
    /// One-minute ticks.
    #[arg(long, default_value_t = 45)]
    ticks: usize,
    /// Healthy deploys at tick 3 (every 10th function), and this many bad ones.
    #[arg(long, default_value_t = 5)]
    bad: usize,
    /// The agent's Lambda request rate (CANARY_LAMBDA_RPS).
    #[arg(long, default_value_t = DEFAULT_LAMBDA_RPS)]
    rps: f64,
}

struct Run {
    label: String,
    calls: Vec<u64>,
    writes: u64,
    /// DynamoDB calls of the ledger (items written, batch reads).
    ledger: (u64, u64),
    pages: usize,
    wall_ms: Vec<f64>,
    rolled_back: usize,
    promoted: usize,
    /// Healthy deploys rolled back (false rollbacks).
    healthy_rolled_back: usize,
    /// Pages published again ("(re-sent)").
    resent: usize,
}

impl Run {
    fn count(&mut self, pages: &[(String, canary_agent::ports::Notification)]) {
        self.pages += pages.len();
        self.resent += pages
            .iter()
            .filter(|(_, n)| n.subject.starts_with("(re-sent)"))
            .count();
    }
}

fn run(args: &Args, budget: Option<usize>, ledger: bool) -> Run {
    let t0: i64 = 1_795_428_000;
    let mut w = World::new(t0 - 300, Traffic::steady(2.0), 60, 11);
    let mut policies = Vec::new();
    for i in 0..args.functions {
        let mut p = Policy::with_defaults(&format!("fn-{i:04}"));
        p.bake = std::time::Duration::ZERO;
        p.notify = Some(canary_agent::policy::Notify {
            topic_arn: "arn:aws:sns:us-east-1:123456789012:alerts".into(),
        });
        policies.push(p);
    }
    w.serve_healthy(&policies, t0 - 300);
    w.advance(t0);
    let w = Shared::new(w);
    let mut a = agent(&w);
    a.reads_per_tick = budget;
    if ledger {
        a.notifier = a.notifier.with_ledger();
    }
    let mut label = budget.map_or("no read budget (every alias every tick)".to_string(), |b| {
        format!("read budget {b} a tick ({} req/s)", args.rps)
    });
    if ledger {
        label.push_str(&format!(
            ", ledger of pages, cold start at tick {}",
            args.ticks / 2
        ));
    } else {
        label.push_str(", no ledger");
    }
    let mut run = Run {
        label,
        calls: Vec::new(),
        writes: 0,
        ledger: (0, 0),
        pages: 0,
        wall_ms: Vec::new(),
        rolled_back: 0,
        promoted: 0,
        healthy_rolled_back: 0,
        resent: 0,
    };
    let mut now = t0;
    let mut deployed = Vec::new();
    for t in 0..args.ticks {
        if t == 3 {
            let mut lock = w.lock();
            for i in (0..args.functions).step_by(10) {
                let bad = deployed.len() < args.bad;
                lock.functions[i].deploy(if bad {
                    Build {
                        error_rate: 0.5,
                        ..Build::healthy()
                    }
                } else {
                    Build::healthy()
                });
                deployed.push((i, bad));
            }
        }
        if ledger && t == args.ticks / 2 {
            // A cold start: a new process with the same ledger and nothing in memory.
            run.count(&a.notifier.take());
            let mut fresh = agent(&w);
            fresh.reads_per_tick = budget;
            fresh.notifier.ledger = a.notifier.ledger.clone();
            a = fresh;
        }
        let (r0, w0) = {
            let l = w.lock();
            (l.alias_reads, l.alias_writes)
        };
        let started = Instant::now();
        block_on(a.tick(&policies, now));
        run.wall_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let (r1, w1) = {
            let l = w.lock();
            (l.alias_reads, l.alias_writes)
        };
        run.calls.push((r1 - r0) + (w1 - w0));
        run.writes += w1 - w0;
        run.count(&a.notifier.take());
        now += 60;
        w.lock().advance(now);
    }
    if let Some(l) = &a.notifier.ledger {
        let l = l.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        run.ledger = (l.writes, l.reads);
    }
    let lock = w.lock();
    for &(i, bad) in &deployed {
        let f = &lock.functions[i];
        if bad && f.stable == 1 && f.canary.is_none() {
            run.rolled_back += 1;
        }
        if !bad && f.stable == 2 {
            run.promoted += 1;
        }
        if !bad && f.stable == 1 && f.canary.is_none() {
            run.healthy_rolled_back += 1;
        }
    }
    run
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.functions == 0 || args.ticks < 4 || !(0.1..=1000.0).contains(&args.rps) {
        eprintln!("scale: --functions > 0, --ticks >= 4 and --rps 0.1-1000");
        return ExitCode::from(2);
    }
    let budget = Some(reads_per_tick(args.rps));
    let runs = [
        run(&args, None, false),
        run(&args, budget, false),
        run(&args, budget, true),
    ];
    let deploys = args.functions.div_ceil(10);
    println!(
        "{} protected aliases, {} one-minute ticks; at tick 3 every 10th function is deployed ({} healthy, {} failing half its requests). Lambda's control-plane quota: {QUOTA_RPS} req/s.\n",
        args.functions,
        args.ticks,
        deploys.saturating_sub(args.bad.min(deploys)),
        args.bad.min(deploys)
    );
    println!("| agent | Lambda calls per tick: max / mean | longest tick at the pace (calls ÷ req/s) | UpdateAlias calls | pages (re-sent) | UpdateAlias per page | DynamoDB calls (items written / batch reads) | healthy promoted (rolled back) | bad rolled back | sim wall time per tick: max / mean |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let max = r.calls.iter().copied().max().unwrap_or(0);
        let mean = r.calls.iter().sum::<u64>() as f64 / r.calls.len() as f64;
        let wall_max = r.wall_ms.iter().copied().fold(0.0, f64::max);
        let wall_mean = r.wall_ms.iter().sum::<f64>() / r.wall_ms.len() as f64;
        println!(
            "| {} | {max} / {mean:.0} | {:.0} s | {} | {} ({}) | {:.2} | {} | {} of {} ({}) | {} of {} | {wall_max:.0} ms / {wall_mean:.0} ms |",
            r.label,
            max as f64 / args.rps,
            r.writes,
            r.pages,
            r.resent,
            r.writes as f64 / r.pages.max(1) as f64,
            if r.ledger == (0, 0) {
                "none".to_string()
            } else {
                format!("{} / {}", r.ledger.0, r.ledger.1)
            },
            r.promoted,
            deploys.saturating_sub(args.bad.min(deploys)),
            r.healthy_rolled_back,
            r.rolled_back,
            args.bad.min(deploys),
        );
    }
    ExitCode::SUCCESS
}
