//! `--threads N`: a pool of Python threads for apps that block. Each thread keeps one Python
//! thread state for its whole life (no thread state per request) and waits for jobs without the GIL.
//!
//! The threads must be gone before the interpreter finalizes: a thread that takes the GIL during
//! finalization is ended by CPython with pthread_exit, whose forced unwind through our frames
//! aborts the process. So dropping the pool (at the end of `Server.run`, GIL released) stops the
//! idle threads and waits briefly for busy ones; `Server.busy_threads` tells Python about any
//! thread still stuck in the app, and the process then exits without finalizing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

pub type Job = Box<dyn FnOnce() + Send>;

/// How long dropping the pool waits for threads to finish their current job.
const DRAIN: Duration = Duration::from_secs(1);

pub struct Pool {
    tx: async_channel::Sender<Job>,
    rx: async_channel::Receiver<Job>,
    busy: Arc<AtomicUsize>,
    alive: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let (tx, rx) = async_channel::unbounded::<Job>();
        let busy = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            let rx = rx.clone();
            let busy = busy.clone();
            let alive2 = alive.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("velocior-app-{i}"))
                .spawn(move || {
                    Python::with_gil(|py| {
                        py.allow_threads(|| {
                            while let Ok(job) = rx.recv_blocking() {
                                busy.fetch_add(1, Ordering::SeqCst);
                                job();
                                busy.fetch_sub(1, Ordering::SeqCst);
                            }
                        })
                    });
                    alive2.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                alive.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Pool {
            tx,
            rx,
            busy,
            alive,
        }
    }

    pub fn submit(&self, job: Job) {
        // The pool keeps a receiver: sending cannot fail while it exists.
        let _ = self.tx.send_blocking(job);
    }

    /// A counter of threads running a job now, readable after the pool is gone.
    pub fn busy(&self) -> Arc<AtomicUsize> {
        self.busy.clone()
    }
}

impl Drop for Pool {
    /// Call without holding the GIL: the threads need it to end.
    fn drop(&mut self) {
        self.tx.close();
        // Jobs still queued belong to connections that are gone: drop them unrun.
        while self.rx.try_recv().is_ok() {}
        let deadline = Instant::now() + DRAIN;
        while self.alive.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
