//! `stsvend dev`'s extra pieces: the STS emulator in place of STS and the base credentials, the
//! local SLS sink with its pages and log file, the example page, and the banner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::credentials::CredentialsProvider;
use crate::emulator::Emulator;
use crate::emulator::sls::{self, DevLogFile};

/// The emulator and what it gives the service. Dropping it stops the emulator.
#[derive(Debug)]
pub struct Dev {
    pub emulator: Emulator,
    /// The base credentials the emulator accepts.
    pub credentials: CredentialsProvider,
    /// Where the sink also writes its logs, when a private temp directory could be made.
    pub log_file: Option<PathBuf>,
}

/// Starts the emulator; its tokens expire `token_lifetime` seconds after issue when given.
/// Also returns the routes to merge into the public router: `/sls/…`, `/dev/logs` and
/// `/dev/example/`.
pub async fn start(clock: Clock, token_lifetime: Option<u32>) -> std::io::Result<(Dev, Router)> {
    let emulator = Emulator::start(clock).await?;
    if let Some(seconds) = token_lifetime {
        emulator.set_token_lifetime(seconds);
    }
    let credentials = CredentialsProvider::Static(emulator.credentials());
    // The file is a convenience: with no writable temp directory (a read-only root, as in the
    // container check) the sink keeps its logs in memory and the pages work.
    let temp = std::env::temp_dir();
    let file = match DevLogFile::create_in(&temp) {
        Ok(file) => Some(file),
        Err(error) => {
            tracing::warn!(%error, dir = %temp.display(), "cannot create a private directory for the dev log file; logs are kept in memory only (see /dev/logs)");
            None
        }
    };
    let log_file = file.as_ref().map(|file| file.path().to_owned());
    let mut routes = sls::router(emulator.sls_sink(file));
    if let Some(dir) = example_dir() {
        routes = routes.nest_service("/dev/example", tower_http::services::ServeDir::new(dir));
    }
    let dev = Dev {
        emulator,
        credentials,
        log_file,
    };
    Ok((dev, routes))
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

/// What a person who just typed `stsvend dev` needs: where to ask, and that the tokens are fake.
pub fn print_banner(
    addr: SocketAddr,
    admin_addr: SocketAddr,
    config: &Config,
    log_file: Option<&Path>,
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
        if profile.access.login.is_some() {
            println!(
                "          {:<10} POST http://{host}{} {{\"platform\":\"wechat\"|\"alipay\",\"code\":\"dev:NAME\"}} logs in dev-NAME",
                "",
                crate::http::session_path(&profile.name)
            );
        }
    }
    if !addr.ip().is_loopback() {
        println!();
        println!("  listening on {addr}: reachable from other hosts (--allow-remote)");
    }
    print_banner_pages(host, admin_addr, log_file);
    println!();
    println!("  try:  curl -s http://{host}/get_sts_token");
    println!();
}

fn print_banner_pages(host: SocketAddr, admin_addr: SocketAddr, log_file: Option<&Path>) {
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
}
