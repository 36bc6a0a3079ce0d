//! `notes-load`: drives signed traffic at the deployed notes API for a game day.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use notes_load::cognito::Login;
use notes_load::load::{self, Mix, Plan, MAX_DURATION};
use notes_load::LoadError;

/// Sends a steady mix of signed create/get/list/update/delete requests to the notes API as one
/// Cognito user, and prints what the API answered every few seconds.
#[derive(Debug, Parser)]
#[command(name = "notes-load", version)]
struct Args {
    /// The API's base URL (the stack's ApiUrl output).
    #[arg(long, env = "NOTES_API_URL")]
    api: String,
    /// The region of the API and the Cognito pools.
    #[arg(long, env = "AWS_REGION")]
    region: String,
    /// The user pool (UserPoolId output).
    #[arg(long, env = "NOTES_USER_POOL_ID")]
    user_pool_id: String,
    /// The user pool's app client (UserPoolClientId output).
    #[arg(long, env = "NOTES_USER_POOL_CLIENT_ID")]
    client_id: String,
    /// The identity pool (IdentityPoolId output).
    #[arg(long, env = "NOTES_IDENTITY_POOL_ID")]
    identity_pool_id: String,
    /// The user to sign in as.
    #[arg(long, env = "NOTES_USERNAME")]
    username: String,
    /// The environment variable holding the user's password (never on the command line).
    #[arg(long, default_value = "NOTES_PASSWORD")]
    password_env: String,
    /// Requests per second (0.1 to 1000).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// How long to send, e.g. 10m (at most 24h).
    #[arg(long, default_value = "10m")]
    duration: String,
    /// Operation weights.
    #[arg(long, default_value = "create=2,get=4,list=2,update=1,delete=1")]
    mix: String,
    /// How often to print a line.
    #[arg(long, default_value = "10s")]
    every: String,
    /// How long one request may take.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Requests waiting for an answer at most; more are skipped and counted.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Seed of the operation draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The user pool API's URL (default: Cognito's public endpoint in --region).
    #[arg(long)]
    user_pool_endpoint: Option<String>,
    /// The identity pool API's URL (default: Cognito's public endpoint in --region).
    #[arg(long)]
    identity_endpoint: Option<String>,
}

fn setup(args: Args) -> Result<(String, Login, Plan), LoadError> {
    let password = std::env::var(&args.password_env).map_err(|_| {
        LoadError::Usage(format!(
            "set {} to the password of {} (it is read from the environment, never from the command line)",
            args.password_env, args.username
        ))
    })?;
    let (idp, identity) = Login::endpoints(&args.region);
    let login = Login {
        user_pool_endpoint: args.user_pool_endpoint.unwrap_or(idp),
        identity_endpoint: args.identity_endpoint.unwrap_or(identity),
        region: args.region,
        user_pool_id: args.user_pool_id,
        client_id: args.client_id,
        identity_pool_id: args.identity_pool_id,
        username: args.username,
        password,
    };
    let named = |flag: &str, e: LoadError| LoadError::Usage(format!("--{flag}: {e}"));
    let plan = Plan {
        rate: args.rate,
        duration: load::duration(&args.duration, MAX_DURATION).map_err(|e| named("duration", e))?,
        mix: Mix::parse(&args.mix)?,
        every: load::duration(&args.every, Duration::from_secs(3600))
            .map_err(|e| named("every", e))?,
        timeout: load::duration(&args.timeout, Duration::from_secs(300))
            .map_err(|e| named("timeout", e))?,
        in_flight: args.in_flight,
        seed: args.seed,
    };
    plan.check()?;
    Ok((args.api, login, plan))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (api, login, plan) = match setup(Args::parse()) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("notes-load: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match notes_load::client() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("notes-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "notes-load: {} req/s for {}s at {api} as {}",
        plan.rate,
        plan.duration.as_secs(),
        login.username
    );
    let started = std::time::Instant::now();
    let report = |t: &load::Tally, d: Duration| {
        println!(
            "+{:>5}s  {}",
            started.elapsed().as_secs(),
            t.line(d.as_secs_f64())
        );
    };
    match load::run(&client, &api, &login, &plan, report).await {
        Ok(total) => {
            println!("total    {}", total.line(started.elapsed().as_secs_f64()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("notes-load: {e}");
            ExitCode::FAILURE
        }
    }
}
