//! Stopping on SIGTERM (what ECS and Kubernetes send) or SIGINT: the first signal stops
//! receiving and starts the shutdown grace; a second one ends the grace at once.

use tokio_util::sync::CancellationToken;

/// The two stages of a shutdown.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop receiving; let the objects in flight finish within the grace.
    pub stop: CancellationToken,
    /// The grace is over: objects still running commit nothing, their messages go back.
    pub now: CancellationToken,
}

impl Shutdown {
    /// Watches for the signals. The handlers are in place when this returns.
    pub fn on_signals(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let this = self.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                loop {
                    let name = tokio::select! {
                        Some(()) = term.recv() => "SIGTERM",
                        Some(()) = int.recv() => "SIGINT",
                        else => return,
                    };
                    seen += 1;
                    if seen == 1 {
                        tracing::info!(signal = name, "stopping: no new messages; objects in flight finish within the shutdown grace");
                        this.stop.cancel();
                    } else {
                        tracing::warn!(signal = name, "stopping now: objects in flight are abandoned and their messages returned");
                        this.now.cancel();
                    }
                }
            });
        }
        #[cfg(not(unix))]
        {
            let this = self.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    this.stop.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        this.now.cancel();
                    }
                }
            });
        }
        Ok(())
    }
}
