//! Suspend and resume, from logind on the system bus: its `PrepareForSleep(true)`
//! before the machine sleeps and `PrepareForSleep(false)` after it woke, and a delay
//! inhibitor (`Inhibit("sleep", ..., "delay")`) for a tunnel that closes before the
//! sleep (`network.on_suspend = "disconnect"`): logind waits, at most its
//! `InhibitDelayMaxSec`, until the inhibitor's file descriptor is closed, which we do
//! as soon as the DELETEs are sent.
//!
//! Without a system bus or without logind (a container, `postern-helper up` on a
//! server) the tunnel runs as before: the driver says so in one line and a resume is
//! then noticed by dead peer detection only.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::OwnedFd;

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1",
    gen_blocking = false
)]
trait Manager {
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<OwnedFd>;

    #[zbus(signal)]
    fn prepare_for_sleep(&self, start: bool) -> zbus::Result<()>;
}

/// What logind said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sleep {
    /// The machine is about to sleep (`PrepareForSleep(true)`).
    Suspending,
    /// The machine woke up (`PrepareForSleep(false)`).
    Resumed,
}

/// Why logind cannot be followed, in one sentence.
#[derive(Debug, thiserror::Error)]
pub enum LogindError {
    #[error("no system bus ({0})")]
    Bus(#[source] zbus::Error),
    #[error("the system bus did not answer within 3 s")]
    Timeout,
    #[error("logind refused the sleep inhibitor ({0})")]
    Inhibit(#[source] zbus::Error),
}

/// logind's sleep signals, and the delay inhibitor when one is held.
pub struct Logind {
    manager: ManagerProxy<'static>,
    signals: PrepareForSleepStream,
    inhibitor: Option<OwnedFd>,
}

impl Logind {
    /// Connects to the system bus and subscribes to `PrepareForSleep`.
    pub async fn open() -> Result<Logind, LogindError> {
        let setup = async {
            let conn = zbus::Connection::system().await?;
            let manager = ManagerProxy::new(&conn).await?;
            let signals = manager.receive_prepare_for_sleep().await?;
            Ok::<_, zbus::Error>((manager, signals))
        };
        let (manager, signals) = tokio::time::timeout(Duration::from_secs(3), setup)
            .await
            .map_err(|_| LogindError::Timeout)?
            .map_err(LogindError::Bus)?;
        Ok(Logind {
            manager,
            signals,
            inhibitor: None,
        })
    }

    /// Takes a delay inhibitor (once): logind then waits for [`Logind::release`]
    /// before the machine sleeps.
    pub async fn inhibit(&mut self, tunnel: &str) -> Result<(), LogindError> {
        if self.inhibitor.is_some() {
            return Ok(());
        }
        let why = format!("closing the VPN tunnel {tunnel} before the machine sleeps");
        let fd = tokio::time::timeout(
            Duration::from_secs(3),
            self.manager.inhibit("sleep", "Postern", &why, "delay"),
        )
        .await
        .map_err(|_| LogindError::Timeout)?
        .map_err(LogindError::Inhibit)?;
        self.inhibitor = Some(fd);
        Ok(())
    }

    /// Lets the machine sleep: closes the inhibitor's descriptor.
    pub fn release(&mut self) {
        self.inhibitor = None;
    }

    /// The next sleep signal; pending forever when the bus went away.
    pub async fn next(&mut self) -> Sleep {
        loop {
            match self.signals.next().await {
                Some(sig) => match sig.args() {
                    Ok(a) if a.start => return Sleep::Suspending,
                    Ok(_) => return Sleep::Resumed,
                    // A malformed signal is ignored.
                    Err(_) => continue,
                },
                None => std::future::pending::<()>().await,
            }
        }
    }
}

/// Waits for the next sleep signal of an optional watcher (pending forever without).
pub async fn next(l: Option<&mut Logind>) -> Sleep {
    match l {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}
