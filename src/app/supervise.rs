//! The supervisor: every long-lived task runs under it, and one that ends
//! before shutdown is logged, marked failed in readiness, and starts the
//! shutdown (see the `app` module doc).

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Faults;
use crate::health::{Component, Health};

/// What a supervised task's output says about how it ended: `()` is a plain
/// return, an `Err` carries why (both are failures outside shutdown).
pub trait TaskOutput: Send + 'static {
    /// The error it ended with, if any.
    fn failure(self) -> Option<String>;
}

impl TaskOutput for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<T: Send + 'static, E: std::fmt::Display + Send + 'static> TaskOutput for Result<T, E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Watches every long-lived task (see the module doc): a task that ends
/// before shutdown marks itself failed in [`Health`] and starts the shutdown.
#[derive(Clone)]
pub struct Supervisor {
    health: Arc<Health>,
    shutdown: CancellationToken,
    faults: Option<Faults>,
}

impl Supervisor {
    pub(super) fn new(
        health: Arc<Health>,
        shutdown: CancellationToken,
        faults: Option<Faults>,
    ) -> Self {
        Self {
            health,
            shutdown,
            faults,
        }
    }

    /// Spawns `task` as component `c`. The handle resolves once the task has
    /// ended and its ending has been recorded.
    pub fn spawn<F>(&self, c: Component, task: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.spawn_holding(c, task, ())
    }

    /// [`Supervisor::spawn`], keeping `keep` alive until the task's ending is
    /// recorded: what the task's end would release (the ingress holds the
    /// spool writer's queue) cannot end another task first and be blamed.
    pub fn spawn_holding<F, K>(&self, c: Component, task: F, keep: K) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
        K: Send + 'static,
    {
        self.health.task_started(c);
        let faults = self.faults.clone();
        let inner = tokio::spawn(async move {
            match faults {
                Some(f) => f.around(c, task).await.and_then(TaskOutput::failure),
                None => task.await.failure(),
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let how = match inner.await {
                Ok(None) => Ended::Returned,
                Ok(Some(e)) => Ended::Error(e),
                Err(e) if e.is_panic() => Ended::Panicked,
                Err(_) => Ended::Cancelled,
            };
            me.ended(c, how);
            drop(keep);
        })
    }

    fn ended(&self, c: Component, how: Ended) {
        if self.shutdown.is_cancelled() {
            self.health.task_stopped(c);
            tracing::debug!(component = c.as_str(), "stopped");
            return;
        }
        // Recorded before the shutdown starts: whoever sees the shutdown token
        // cancelled also sees the failure.
        if self.health.task_failed(c) {
            let what = "a supervised task stopped before shutdown; readiness is off, draining, then exiting with code 3 so the bridge restarts over its spool";
            match how {
                Ended::Returned => {
                    tracing::error!(component = c.as_str(), ended = "returned", "{what}")
                }
                Ended::Error(e) => {
                    tracing::error!(component = c.as_str(), ended = "error", error = %e, "{what}")
                }
                Ended::Panicked => tracing::error!(
                    component = c.as_str(),
                    ended = "panicked",
                    "{what} (the panic message is logged above)"
                ),
                Ended::Cancelled => {
                    tracing::error!(component = c.as_str(), ended = "cancelled", "{what}")
                }
            }
        }
        // Readiness off before anyone waiting on the token looks at it.
        self.health.begin_shutdown();
        self.shutdown.cancel();
    }
}

enum Ended {
    Returned,
    Error(String),
    Panicked,
    Cancelled,
}
