//! The `stsvend` command: `serve` (the default) vends tokens from Alibaba Cloud STS; `dev` runs
//! the same service against a built-in STS emulator, with no cloud account.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use stsvend::cmd::serve::ServeError;
use stsvend::cmd::{check, healthcheck, serve};
use stsvend::config::{Config, Mode};
use stsvend::reload::Source;
use stsvend::server::shutdown;
use stsvend::sts::names::DurationSeconds;
use stsvend::telemetry;

// Only with the `mimalloc` feature, for bench/alloc.sh's comparison with musl's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration or command line.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "stsvend",
    version,
    about = "Vends short-lived, least-privilege Alibaba Cloud STS credentials for SLS web tracking"
)]
struct Cli {
    /// TOML settings file (empty: none). Environment variables override it.
    // OsString, not PathBuf: clap refuses an empty PathBuf, and an empty STSVEND_CONFIG has
    // always meant "no file".
    #[arg(long, global = true, value_name = "PATH", env = "STSVEND_CONFIG")]
    config: Option<OsString>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve tokens from Alibaba Cloud STS (the default).
    Serve,
    /// Try the service without a cloud account: a built-in STS emulator issues (worthless) tokens.
    #[cfg_attr(
        not(feature = "dev"),
        command(about = "Not built into this binary (built without the cargo feature `dev`)")
    )]
    Dev {
        /// Allow listening on a non-loopback address.
        #[arg(long)]
        allow_remote: bool,
        /// The emulator's tokens expire SECONDS after issue, whatever was asked, to watch
        /// refreshes happen quickly (below STS's 900 s minimum: dev only). stsvend keeps
        /// STSVEND_MIN_REMAINING_SECONDS of each token back, so set that well below SECONDS.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(60..=i64::from(*DurationSeconds::RANGE.end())))]
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
        return healthcheck(url.clone());
    }
    if cfg!(not(feature = "dev")) && matches!(cli.command, Some(Command::Dev { .. })) {
        eprintln!(
            "stsvend: `stsvend dev` is not built into this binary (it was built without the cargo feature `dev`); use a build with default features"
        );
        return ExitCode::from(EXIT_CONFIG);
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
    let env = process_env();
    let run = Run::from(cli.command);
    let config_path = cli.config.filter(|p| !p.is_empty()).map(PathBuf::from);
    let source = config_source(config_path, &env, run.mode);
    let config = match source.read() {
        Ok(config) => config,
        Err(lines) => {
            for line in lines {
                eprintln!("stsvend: {line}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(line) = check_token_lifetime(run.token_lifetime, &config) {
        eprintln!("stsvend: {line}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(live) = run.check {
        // `check` talks to a person: plain lines on stdout, log lines only if RUST_LOG asks.
        let _log_guard = env
            .contains_key("RUST_LOG")
            .then(|| telemetry::init(&env, config.log_format));
        let outcome = runtime.block_on(check::run(&config, &env, live, &mut std::io::stdout()));
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
    for variable in &config.injected {
        tracing::debug!(
            variable = %variable.name,
            by = %variable.by,
            "ignored: the platform set it, it is not a setting"
        );
    }
    let served = runtime.block_on(serve::run(config, source, run.token_lifetime, &env));
    exit_code(served)
}

/// `stsvend healthcheck`: no runtime, no settings but the admin address.
fn healthcheck(url: Option<String>) -> ExitCode {
    #[allow(clippy::disallowed_methods)] // the healthcheck reads one variable and exits
    let admin = std::env::var("STSVEND_ADMIN_LISTEN").ok();
    let url = url.unwrap_or_else(|| healthcheck::default_url(admin.as_deref()));
    match healthcheck::check(&url, std::time::Duration::from_secs(3)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("stsvend: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The one read of the process environment; everything else gets this map.
fn process_env() -> HashMap<String, String> {
    #[allow(clippy::disallowed_methods)]
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// What the command asks for, besides the settings.
struct Run {
    mode: Mode,
    /// `Some(live)` for `stsvend check [--live]`.
    check: Option<bool>,
    /// `stsvend dev --token-lifetime`.
    token_lifetime: Option<u32>,
}

impl From<Option<Command>> for Run {
    fn from(command: Option<Command>) -> Self {
        let serve = |check| Self {
            mode: Mode::Serve,
            check,
            token_lifetime: None,
        };
        match command {
            Some(Command::Dev {
                allow_remote,
                token_lifetime,
            }) => Self {
                mode: Mode::Dev { allow_remote },
                check: None,
                token_lifetime,
            },
            Some(Command::Check { live }) => serve(Some(live)),
            Some(Command::Serve | Command::Healthcheck { .. }) | None => serve(None),
        }
    }
}

/// A token is served only while more than the minimum remaining validity is left; leave at
/// least a minute of serving per token, or every token would be refused on arrival.
fn check_token_lifetime(token_lifetime: Option<u32>, config: &Config) -> Result<(), String> {
    match token_lifetime {
        Some(lifetime) if config.min_remaining.as_secs() + 60 > u64::from(lifetime) => {
            Err(format!(
                "--token-lifetime {lifetime} leaves under 60 s to serve each token, since {} s of it are kept back (STSVEND_MIN_REMAINING_SECONDS); set STSVEND_MIN_REMAINING_SECONDS to at most {}",
                config.min_remaining.as_secs(),
                lifetime.saturating_sub(60)
            ))
        }
        _ => Ok(()),
    }
}

/// Configuration problems exit 2; anything else that stops the service, 1.
fn exit_code(served: Result<(), ServeError>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Credentials(error)) => {
            for decision in error.decisions() {
                eprintln!("stsvend:   {decision}");
            }
            eprintln!("stsvend: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) if error.is_configuration() => {
            eprintln!("stsvend: {:#}", anyhow::Error::from(error));
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            let error = anyhow::Error::from(error);
            tracing::error!("{error:#}");
            eprintln!("stsvend: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the settings come from: the file (if any: `--config` or `STSVEND_CONFIG`, which clap
/// reads) and the environment. Read again on a reload.
fn config_source(path: Option<PathBuf>, env: &HashMap<String, String>, mode: Mode) -> Source {
    Source {
        path,
        env: env.clone(),
        mode,
        adjust: None,
    }
}
