//! Resolves when the process is asked to stop (SIGTERM from an orchestrator, SIGINT from a
//! terminal), logging which signal arrived; and keeps SIGHUP from stopping it.

/// Waits for SIGTERM or SIGINT. If a handler cannot be installed the process can still be
/// stopped by the other signal, so the failure is logged rather than fatal.
pub async fn signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

/// Makes SIGHUP harmless for the rest of the process's life. Its default action ends the
/// process (exit 129), and operators send it by habit (logrotate's postrotate, systemd's
/// `ExecReload`, `kill -HUP` to "reload"). Registering a listener replaces that default for
/// good, even after the listener is dropped, so call this as soon as a runtime exists: a SIGHUP
/// between then and [`log_hangups`] (or the TLS watcher) listening is absorbed silently.
/// Must run inside a Tokio runtime.
pub fn survive_hangup() -> std::io::Result<()> {
    #[cfg(unix)]
    drop(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::hangup(),
    )?);
    Ok(())
}

/// With nothing to reload (no TLS certificate), logs each SIGHUP and carries on, until `stop`.
pub async fn log_hangups(stop: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            // main has warned that `survive_hangup` failed; nothing more to do here.
            return;
        };
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("received SIGHUP: nothing to reload yet (no TLS certificate); carrying on");
                }
                () = stop.cancelled() => return,
            }
        }
    }
    #[cfg(not(unix))]
    stop.cancelled().await;
}
