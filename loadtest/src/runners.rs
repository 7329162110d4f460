//! The request loops. Closed loop: each of C connections sends its next
//! request as soon as it has an answer. Open loop: requests are scheduled at a
//! fixed rate and their latency counts from the scheduled time, so a slow
//! server cannot hide its queueing (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use crate::client::{Answer, Connection};

/// One request: method, path, `Authorization` value, JSON body, all ready
/// to send (the generator builds nothing per request in the timed phases).
pub struct Call {
    pub method: Method,
    pub path: &'static str,
    pub authorization: Option<HeaderValue>,
    pub body: Option<Bytes>,
}

/// Builds request `i`.
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// What a worker learns of one request: its index, when it was due, when it
/// was sent, its latency, and its answer.
pub struct Sent {
    pub index: u64,
    pub sent_at: Instant,
    pub latency: Duration,
    pub answer: anyhow::Result<Answer>,
}

/// Open-loop jobs queued ahead of the workers, per connection.
const OPEN_LOOP_QUEUE_PER_CONNECTION: usize = 4;

/// How much load, where.
#[derive(Clone, Copy)]
pub struct Load {
    pub address: SocketAddr,
    pub connections: usize,
    /// Requests `0..total`.
    pub total: u64,
    /// Open loop at this many requests/s; `None`: closed loop.
    pub rate: Option<f64>,
}

/// Runs requests `0..total` over `connections` connections, closed loop, or
/// open loop at `rate` requests/s. Each worker folds its answers into its own
/// state `S`, returned per worker.
pub async fn run<S, F>(
    load: Load,
    progress: &ProgressBar,
    make_call: MakeCall,
    init: impl Fn() -> S,
    fold: F,
) -> Vec<S>
where
    S: Send + 'static,
    F: Fn(&mut S, Sent) + Send + Sync + 'static,
{
    let Load {
        address,
        connections,
        total,
        rate,
    } = load;
    let fold = Arc::new(fold);
    let next = Arc::new(AtomicU64::new(0));
    // Open loop: the scheduler deals jobs round-robin, one bounded queue per
    // connection (no shared queue, so no lock held across an await).
    let mut queues = Vec::with_capacity(connections);
    let mut receivers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (sender, receiver) = mpsc::channel::<(u64, Instant)>(OPEN_LOOP_QUEUE_PER_CONNECTION);
        queues.push(sender);
        receivers.push(receiver);
    }
    if let Some(rate) = rate {
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for index in 0..total {
                let due = started + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due).await;
                let queue = &queues[(index % queues.len() as u64) as usize];
                if queue.send((index, due.into_std())).await.is_err() {
                    return;
                }
            }
        });
    } else {
        drop(queues);
    }
    let mut workers = Vec::with_capacity(connections);
    for mut receiver in receivers {
        let (make_call, fold, next, progress) = (
            Arc::clone(&make_call),
            Arc::clone(&fold),
            Arc::clone(&next),
            progress.clone(),
        );
        let mut state = init();
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::new(address);
            loop {
                let (index, due) = if rate.is_some() {
                    match receiver.recv().await {
                        Some(job) => job,
                        None => break,
                    }
                } else {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    (index, Instant::now())
                };
                let call = make_call(index);
                let sent_at = Instant::now();
                let answer = connection
                    .send_prepared(
                        call.method,
                        call.path,
                        call.authorization.as_ref(),
                        call.body,
                    )
                    .await;
                let latency = due.elapsed();
                fold(
                    &mut state,
                    Sent {
                        index,
                        sent_at,
                        latency,
                        answer,
                    },
                );
                progress.inc(1);
            }
            state
        }));
    }
    let mut states = Vec::with_capacity(connections);
    for worker in workers {
        states.push(worker.await.expect("a worker panicked"));
    }
    states
}

/// Sends the same request from `connections` connections for `duration`;
/// returns how many were answered with `expected` status.
pub async fn timed(
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    call: Arc<dyn Fn() -> Call + Send + Sync>,
    expected: u16,
) -> (u64, Duration) {
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (answered, call) = (Arc::clone(&answered), Arc::clone(&call));
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::new(address);
            while Instant::now() < deadline {
                let call = call();
                if let Ok(answer) = connection
                    .send_prepared(
                        call.method,
                        call.path,
                        call.authorization.as_ref(),
                        call.body,
                    )
                    .await
                    && answer.status == expected
                {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    (answered.load(Ordering::Relaxed), started.elapsed())
}
