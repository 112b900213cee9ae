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
    /// Installs the SIGINT and SIGTERM handlers; with `stdin_eof`, the end
    /// of stdin requests shutdown too (the process that holds the other end
    /// of the pipe exited).
    pub fn install(stdin_eof: bool) -> std::io::Result<Shutdown> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(false);
        // A plain thread, not tokio's stdin: a read blocked in tokio's
        // blocking pool would hold up the runtime's shutdown after SIGTERM.
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        if stdin_eof {
            std::thread::Builder::new()
                .name("stdin-eof".into())
                .spawn(move || {
                    use std::io::Read;
                    let mut buf = [0u8; 256];
                    // Whatever is written is ignored; EOF or an error ends it.
                    while let Ok(n) = std::io::stdin().read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = eof_tx.send(());
                })?;
        }
        tokio::spawn(async move {
            let eof = async {
                if !stdin_eof || eof_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = eof => "end of stdin",
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
