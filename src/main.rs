//! The `stsvend` command: `serve` (the default) vends tokens from Alibaba Cloud STS; `dev` runs
//! the same service against a built-in STS emulator, with no cloud account.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use std::sync::Arc;
use stsvend::clock::Clock;
use stsvend::config::{self, Config, ConfigFile, Mode};
use stsvend::credentials::CredentialsProvider;
use stsvend::credentials::chain::{self, ChainError, ChainInputs};
use stsvend::emulator::Emulator;
use stsvend::emulator::sls::DevLogFile;
use stsvend::startup::{App, StartupError};
use stsvend::sts::budget::StsBudget;
use stsvend::{shutdown, telemetry};

/// Exit code for an invalid configuration or command line.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "stsvend",
    version,
    about = "Vends short-lived, least-privilege Alibaba Cloud STS credentials for SLS web tracking"
)]
struct Cli {
    /// TOML settings file; `STSVEND_CONFIG` names one too. Environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve tokens from Alibaba Cloud STS (the default).
    Serve,
    /// Try the service without a cloud account: a built-in STS emulator issues (worthless) tokens.
    Dev {
        /// Allow listening on a non-loopback address.
        #[arg(long)]
        allow_remote: bool,
        /// The emulator's tokens expire SECONDS after issue, whatever was asked, to watch
        /// refreshes happen quickly (below STS's 900 s minimum: dev only). stsvend keeps
        /// STSVEND_MIN_REMAINING_SECONDS of each token back, so set that well below SECONDS.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(60..=43200))]
        token_lifetime: Option<u32>,
    },
    /// Exit 0 if a running stsvend answers /healthz (for container HEALTHCHECK; no shell needed).
    Healthcheck {
        /// The health endpoint to ask (default: /healthz on STSVEND_ADMIN_LISTEN, else
        /// http://127.0.0.1:9090/healthz).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check the settings and the credential chain, and with --live one AssumeRole per profile.
    Check {
        /// Also call STS: one AssumeRole per profile; prints each token's expiry and policy.
        #[arg(long)]
        live: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = &cli.command {
        #[allow(clippy::disallowed_methods)] // the healthcheck reads one variable and exits
        let admin = std::env::var("STSVEND_ADMIN_LISTEN").ok();
        let url = url
            .clone()
            .unwrap_or_else(|| stsvend::healthcheck::default_url(admin.as_deref()));
        return match stsvend::healthcheck::check(&url, std::time::Duration::from_secs(3)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("stsvend: unhealthy: {why}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stsvend: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // First thing with a runtime, before any file is read or socket bound: from here on a
    // SIGHUP cannot end the process, whether it arrives during start-up or later.
    let hangup = {
        let _entered = runtime.enter();
        shutdown::survive_hangup()
    };
    // The one read of the process environment; everything else gets this map.
    #[allow(clippy::disallowed_methods)]
    let env: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let mut token_lifetime = None;
    let (mode, check) = match cli.command {
        Some(Command::Dev {
            allow_remote,
            token_lifetime: lifetime,
        }) => {
            token_lifetime = lifetime;
            (Mode::Dev { allow_remote }, None)
        }
        Some(Command::Check { live }) => (Mode::Serve, Some(live)),
        Some(Command::Serve | Command::Healthcheck { .. }) | None => (Mode::Serve, None),
    };
    let config = match load_config(cli.config, &env, mode) {
        Ok(config) => config,
        Err(lines) => {
            for line in lines {
                eprintln!("stsvend: {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A token is served only while more than the minimum remaining validity is left; leave at
    // least a minute of serving per token, or every token would be refused on arrival.
    if let Some(lifetime) = token_lifetime
        && config.min_remaining.as_secs() + 60 > u64::from(lifetime)
    {
        eprintln!(
            "stsvend: --token-lifetime {lifetime} leaves under 60 s to serve each token, since {} s of it are kept back (STSVEND_MIN_REMAINING_SECONDS); set STSVEND_MIN_REMAINING_SECONDS to at most {}",
            config.min_remaining.as_secs(),
            lifetime.saturating_sub(60)
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(live) = check {
        // `check` talks to a person: plain lines on stdout, log lines only if RUST_LOG asks.
        let _log_guard = env
            .contains_key("RUST_LOG")
            .then(|| telemetry::init(&env, config.log_format));
        let outcome = runtime.block_on(stsvend::check::run(
            &config,
            &env,
            live,
            &mut std::io::stdout(),
        ));
        return ExitCode::from(outcome.exit_code());
    }
    // Kept until main returns: dropping it flushes the buffered log lines.
    let _log_guard = telemetry::init(&env, config.log_format);
    if let Err(error) = hangup {
        tracing::warn!(%error, "cannot listen for SIGHUP; a SIGHUP would stop the process");
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match runtime.block_on(run(config, mode, token_lifetime, &env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Credentials(error)) => {
            for decision in error.decisions() {
                eprintln!("stsvend:   {decision}");
            }
            eprintln!("stsvend: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Setup(error)) => {
            eprintln!("stsvend: {:#}", anyhow::Error::from(error));
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(error)) => {
            tracing::error!("{error:#}");
            eprintln!("stsvend: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How `run` can fail.
enum Failure {
    /// The credential chain found nothing usable: a configuration problem (exit 2).
    Credentials(ChainError),
    /// A setting that only fails when used (a JWKS file): also exit 2.
    Setup(StartupError),
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::Runtime(error.into())
    }
}

/// Reads the file (if any) and validates everything; on failure, the lines to print.
fn load_config(
    flag: Option<PathBuf>,
    env: &HashMap<String, String>,
    mode: Mode,
) -> Result<Config, Vec<String>> {
    let path = flag.or_else(|| {
        env.get("STSVEND_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    let file = match path {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => Some(ConfigFile {
                path: path.display().to_string(),
                text,
            }),
            Err(error) => {
                return Err(vec![format!(
                    "cannot read config file `{}`: {error} (given by --config or STSVEND_CONFIG)",
                    path.display()
                )]);
            }
        },
        None => None,
    };
    config::load(file.as_ref(), env, mode).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|p| format!("invalid setting {p}"))
            .collect()
    })
}

/// What the admin listener's `/metrics` serves. The log writer's dropped-line count is handed to
/// metrics at each render, here: metrics sits below telemetry and does not ask it.
fn metrics_page(metrics: stsvend::metrics::Metrics) -> stsvend::admin::RenderMetrics {
    Arc::new(move || {
        if let Some(dropped) = telemetry::dropped_log_lines() {
            stsvend::metrics::record_log_lines_dropped(dropped);
        }
        metrics.render()
    })
}

async fn run(
    mut config: Config,
    mode: Mode,
    token_lifetime: Option<u32>,
    env: &HashMap<String, String>,
) -> Result<(), Failure> {
    let clock = Clock::System;
    // Installed before anything records (the credential chain records its chosen source).
    let metrics = stsvend::metrics::install();
    // One budget for every AssumeRole of the process: token profiles and base credentials.
    let budget = Arc::new(StsBudget::new(config.sts_budget_per_second));
    // Dropped at the end of this function, after the service has stopped.
    let mut emulator = None;
    let mut dev_routes = None;
    let mut dev_log_file = None;
    let credentials = match mode {
        Mode::Dev { .. } => {
            let started = Emulator::start(clock.clone())
                .await
                .context("cannot start the STS emulator")?;
            config.sts_endpoint = started.endpoint();
            if let Some(seconds) = token_lifetime {
                started.set_token_lifetime(seconds);
            }
            let credentials = CredentialsProvider::Static(started.credentials());
            // The file is a convenience: with no writable temp directory (a read-only root, as
            // in the container check) the sink keeps its logs in memory and the pages work.
            let temp = std::env::temp_dir();
            let file = match DevLogFile::create_in(&temp) {
                Ok(file) => Some(file),
                Err(error) => {
                    tracing::warn!(%error, dir = %temp.display(), "cannot create a private directory for the dev log file; logs are kept in memory only (see /dev/logs)");
                    None
                }
            };
            dev_log_file = file.as_ref().map(|file| file.path().to_owned());
            let mut routes = stsvend::emulator::sls::router(started.sls_sink(file));
            if let Some(dir) = example_dir() {
                routes =
                    routes.nest_service("/dev/example", tower_http::services::ServeDir::new(dir));
            }
            dev_routes = Some(routes);
            emulator = Some(started);
            credentials
        }
        Mode::Serve => {
            let chain = chain::load(ChainInputs {
                env,
                configured: config.credentials.clone(),
                sts_endpoint: config.sts_endpoint.clone(),
                metadata_endpoint: config.ecs_metadata_endpoint.clone(),
                clock: clock.clone(),
                budget: Some(budget.clone()),
            })
            .await
            .map_err(Failure::Credentials)?;
            let (source, why) = chain.chosen();
            tracing::info!(source, detail = why, "credentials for calling STS");
            chain.provider
        }
    };
    let render = metrics_page(metrics);
    let mut builder = App::builder(&config, credentials.clone(), clock)
        .budget(budget)
        .metrics(render);
    if let Some(routes) = dev_routes {
        builder = builder.extra_routes(routes);
    }
    let app = builder.build().await.map_err(|error| match error {
        // A JWKS file, a key setting or TLS files that cannot be used (a certificate and a
        // key that do not match) are configuration problems.
        StartupError::Jwt { .. } | StartupError::Tls(_) => Failure::Setup(error),
        other => Failure::Runtime(other.into()),
    })?;
    let addr = app.local_addr().context("cannot read the bound address")?;
    for profile in &config.profiles {
        tracing::info!(
            profile = %profile.name,
            role_arn = %profile.call.role_arn,
            duration_s = profile.call.duration_seconds,
            scope = %profile.scope.to_string(),
            "profile configured"
        );
    }
    let admin_addr = app.admin_addr().context("cannot read the admin address")?;
    tracing::info!(%addr, %admin_addr, tls = config.tls.is_some(), sts = %config.sts_endpoint, credentials = credentials.source(), "listening");
    if emulator.is_some() {
        print_dev_banner(addr, admin_addr, &config, dev_log_file.as_deref());
    }
    app.run_until(shutdown::signal()).await?;
    drop(emulator);
    Ok(())
}

/// `examples/browser`, found from the working directory or next to the repository the binary
/// was built in, for `stsvend dev`'s `/dev/example/`.
fn example_dir() -> Option<PathBuf> {
    let from_cwd = PathBuf::from("examples/browser");
    if from_cwd.is_dir() {
        return Some(from_cwd);
    }
    let built_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/browser");
    built_in.is_dir().then_some(built_in)
}

fn print_dev_banner(
    addr: SocketAddr,
    admin_addr: SocketAddr,
    config: &Config,
    log_file: Option<&std::path::Path>,
) {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    println!();
    println!("  stsvend dev — tokens come from a built-in STS emulator.");
    println!(
        "  These are NOT real Alibaba Cloud credentials: SLS and every other service will reject them."
    );
    println!();
    for profile in &config.profiles {
        let path = if profile.name == config::DEFAULT_PROFILE {
            "/get_sts_token".to_owned()
        } else {
            format!("/get_sts_token/{}", profile.name)
        };
        println!(
            "  profile {:<10} http://{host}{path}  ({})",
            profile.name, profile.scope
        );
    }
    if !addr.ip().is_loopback() {
        println!();
        println!("  listening on {addr}: reachable from other hosts (--allow-remote)");
    }
    println!(
        "  admin: http://{admin_addr}/metrics, /readyz, POST /admin/profiles/NAME/disable|enable"
    );
    println!(
        "  local SLS sink: tracker host http://{host}/sls/<project>; logs at http://{host}/dev/logs"
    );
    if let Some(file) = log_file {
        println!(
            "                  (also written to {}, kept after exit)",
            file.display()
        );
    }
    if example_dir().is_some() {
        println!("  example page: http://{host}/dev/example/");
    }
    println!();
    println!("  try:  curl -s http://{host}/get_sts_token");
    println!();
}
