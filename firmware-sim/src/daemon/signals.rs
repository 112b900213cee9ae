//! SIGINT/SIGTERM handling: one [`Shutdown`] handle that every server task
//! awaits; the first signal trips it for all of them.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A cloneable "shutdown requested" latch.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Installs the SIGINT and SIGTERM handlers.
    pub fn install() -> std::io::Result<Shutdown> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            // Logged before the latch trips, so it precedes the servers' own
            // "shutting down" lines.
            tracing::info!(signal = name, "shutdown requested: closing listeners");
            let _ = tx.send(true);
            // Keep the sender alive so receivers never see a closed channel.
            std::future::pending::<()>().await;
        });
        Ok(Shutdown { rx })
    }

    /// Resolves once shutdown was requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
