//! Serving the ingress until shutdown, with a grace period for in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::host::Host;

/// Serves `host` on `listener` until `shutdown` completes. Then it stops
/// accepting connections and taking events, and lets in-flight requests and
/// event handlers finish for up to the configured grace period.
pub async fn run(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_millis(host.config().ingress.shutdown_grace_ms);
    let events = host.events().clone();
    let app = crate::ingress::app(host).into_make_service_with_connect_info::<SocketAddr>();
    let stopping = CancellationToken::new();
    let signal = stopping.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections or events, finishing in-flight work");
        signal.cancel();
    });
    let http = async {
        let grace_over = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            result = serve.into_future() => result,
            () = grace_over => {
                tracing::warn!(?grace, "grace period over; dropping the requests still in flight");
                Ok(())
            }
        };
        // Also when serving failed without a signal: nothing should keep running.
        stopping.cancel();
        result
    };
    let drain_events = async {
        stopping.cancelled().await;
        events.shutdown(grace).await;
    };
    let (result, ()) = tokio::join!(http, drain_events);
    result
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
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
        () = ctrl_c => {},
        () = terminate => {},
    }
}
