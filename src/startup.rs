//! Assembles the service from a validated [`Config`]: the STS client, one refresher per profile,
//! the router and the listener; then runs it until a shutdown signal.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::CredentialsProvider;
use crate::http::{self, AppState};
use crate::refresh::{self, StsFetcher};
use crate::sts::StsClient;

/// Once asked to stop, how long in-flight requests get before the process exits anyway. Below
/// the 10 s that orchestrators commonly allow between SIGTERM and SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTPS client for STS")]
    HttpClient(#[source] reqwest::Error),
}

/// A built service, listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
}

impl App {
    /// Binds the listener and starts the refreshers (they fetch the first tokens right away).
    pub async fn build(
        config: &Config,
        credentials: CredentialsProvider,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let client = StsClient::new(config.sts_endpoint.clone(), clock.clone())
            .map_err(StartupError::HttpClient)?;
        let cancel = CancellationToken::new();
        let mut feeds = HashMap::new();
        for profile in &config.profiles {
            let fetcher = StsFetcher {
                client: client.clone(),
                credentials: credentials.clone(),
                call: profile.call.clone(),
            };
            let (feed, _task) = refresh::spawn(
                profile.name.clone(),
                fetcher,
                clock.clone(),
                config.min_remaining,
                cancel.child_token(),
            );
            feeds.insert(profile.name.clone(), feed);
        }
        let router = http::public_router(AppState::new(feeds));
        Ok(Self {
            listener,
            router,
            cancel,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests in flight finish
    /// (for at most [`SHUTDOWN_GRACE`]) and stops the refreshers.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            let _ = stopping_tx.send(());
        });
        let grace = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = server.into_future() => result,
            () = grace => {
                tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the grace period; closing them");
                Ok(())
            }
        };
        // Refreshers stop last, so requests that were waiting for a token still get one.
        self.cancel.cancel();
        tracing::info!("stopped");
        result
    }
}
