//! The process's background tasks (the member heartbeat, the follower of
//! other processes' changes, the kill switch's follower, the accounts'
//! refresh, the mail worker and its helpers, the retirer of moved days):
//! each has a name, stops when the process stops, and runs on a thread of
//! its own where it can block.
//!
//! Where a task runs (`Place`): on the System thread, beside the kill switch
//! actor and the store's connections, for the light ones (the heartbeat and
//! the kill switch's follower must not wait behind anything heavy); or on a
//! thread of its own, for the follower, whose full reload is seconds of
//! work (it also has connections of its own: `cluster::OpenConnections`).
//! How it stops: most are loops whose every step may be cut, so they are
//! dropped at their next `.await` (`spawn`); the mail worker finishes the
//! mail it is sending and records it (`spawn_until_asked`), unless the
//! store does not answer within `TASK_STOP_MAX`: then that mail is sent
//! again after its lease, as after a crash.
//!
//! On SIGTERM the HTTP server drains first (every request under way is
//! answered), then `Tasks::stop` asks every task to stop and waits for each
//! up to `TASK_STOP_MAX`, saying in the log which stopped and which did not.
//! (SIGINT, Ctrl-C, stops the HTTP server at once, then the tasks.)

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use actix_rt::{Arbiter, ArbiterHandle};
use tokio::sync::{oneshot, watch};

/// Longest wait for the background tasks once the process is stopping: a
/// mail worker in the middle of a send finishes it within the SMTP timeout
/// and records it; anything else stops at once.
pub const TASK_STOP_MAX: Duration = Duration::from_secs(20);

/// Where a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The System thread (`actix_rt::System`), with the kill switch actor.
    System,
    /// A thread of its own (an `Arbiter`), that nothing else keeps busy.
    OwnThread,
}

/// A task's view of the process stopping.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the process is stopping.
    pub async fn requested(&mut self) {
        // An error means the `Tasks` is gone: the process is stopping too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// A view of a process that never stops, or of one that stops at once
    /// (`stopping`): for a task's tests.
    #[cfg(test)]
    pub fn fixed(stopping: bool) -> Self {
        let (stop, view) = watch::channel(stopping);
        // Kept, so that `requested` waits (a dropped sender reads as a stop).
        std::mem::forget(stop);
        Self(view)
    }
}

struct Running {
    name: &'static str,
    /// Fires (or is dropped) when the task has ended.
    ended: oneshot::Receiver<()>,
}

/// Every background task of the process.
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: Mutex<Vec<Running>>,
    threads: Mutex<Vec<ArbiterHandle>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            running: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Starts `name`, made by `make`; it is dropped at its next `.await`
    /// once the process stops.
    pub fn spawn<F, Fut>(&self, name: &'static str, place: Place, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.start(name, place, move |mut shutdown: Shutdown| async move {
            tokio::select! {
                () = make() => {}
                () = shutdown.requested() => {}
            }
        });
    }

    /// Starts `name`, made by `make` from its view of the process stopping;
    /// it ends by itself once asked, at a point of its choosing.
    pub fn spawn_until_asked<F, Fut>(&self, name: &'static str, place: Place, make: F)
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.start(name, place, make);
    }

    fn start<F, Fut>(&self, name: &'static str, place: Place, make: F)
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(
            !self.is_stopping(),
            "a task ({name}) started after the process began to stop"
        );
        let shutdown = Shutdown(self.stop.subscribe());
        let (done, ended) = oneshot::channel();
        // Made where it runs: the future need not be `Send`.
        let run = move || {
            actix_rt::spawn(async move {
                make(shutdown).await;
                let _ = done.send(());
            });
        };
        match place {
            Place::System => run(),
            Place::OwnThread => {
                let thread = Arbiter::new().handle();
                assert!(thread.spawn_fn(run), "a new thread takes work");
                self.threads.lock().expect("tasks lock").push(thread);
            }
        }
        tracing::debug!(task = name, ?place, "background task started");
        self.running
            .lock()
            .expect("tasks lock")
            .push(Running { name, ended });
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The names of the tasks started so far.
    pub fn names(&self) -> Vec<&'static str> {
        let running = self.running.lock().expect("tasks lock");
        running.iter().map(|task| task.name).collect()
    }

    /// Asks every task to stop and waits for each, `within` in all; logs
    /// each one's end (and a task that had ended before, which a background
    /// loop should not). Answers the names of those still running after it.
    pub async fn stop(&self, within: Duration) -> Vec<&'static str> {
        let mut running = std::mem::take(&mut *self.running.lock().expect("tasks lock"));
        running.retain_mut(|task| {
            let ended = !matches!(
                task.ended.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            );
            if ended {
                tracing::warn!(
                    task = task.name,
                    "background task had ended before the stop"
                );
            }
            !ended
        });
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + within;
        let mut late = Vec::new();
        for task in running {
            match tokio::time::timeout_at(deadline, task.ended).await {
                Ok(_) => tracing::info!(task = task.name, "background task stopped"),
                Err(_) => {
                    tracing::warn!(task = task.name, "background task did not stop in time");
                    late.push(task.name);
                }
            }
        }
        for thread in std::mem::take(&mut *self.threads.lock().expect("tasks lock")) {
            thread.stop();
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[actix_rt::test]
    async fn every_task_stops_and_one_that_ignores_the_request_is_named() {
        let tasks = Tasks::new();
        tasks.spawn("looping here", Place::System, || async {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tasks.spawn("looping apart", Place::OwnThread, || async {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let finished = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&finished);
        tasks.spawn_until_asked("finishing its work", Place::System, move |mut shutdown| {
            async move {
                shutdown.requested().await;
                // The work under way, after the request.
                tokio::time::sleep(Duration::from_millis(20)).await;
                seen.store(true, Ordering::SeqCst);
            }
        });
        tasks.spawn_until_asked("deaf", Place::System, |_| async {
            std::future::pending::<()>().await;
        });
        tasks.spawn("ends at once", Place::System, || async {});
        tokio::task::yield_now().await;
        assert_eq!(
            tasks.names(),
            [
                "looping here",
                "looping apart",
                "finishing its work",
                "deaf",
                "ends at once"
            ]
        );
        let late = tasks.stop(Duration::from_millis(300)).await;
        assert_eq!(late, ["deaf"]);
        assert!(finished.load(Ordering::SeqCst), "it finished its work");
        assert!(tasks.is_stopping());
    }

    #[actix_rt::test]
    async fn a_task_on_its_own_thread_runs_while_the_system_thread_is_busy() {
        let tasks = Tasks::new();
        let (beat, beats) = std::sync::mpsc::sync_channel(1);
        tasks.spawn("heartbeat", Place::OwnThread, move || async move {
            let _ = beat.send(());
        });
        // The System thread blocked (a reload's work, no `.await`): a task
        // on it could not run until this returns, and the wait would end
        // empty.
        assert!(
            beats.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the task ran beside the blocked System thread"
        );
        assert!(tasks.stop(Duration::from_secs(1)).await.is_empty());
    }
}
