//! `--threads N`: a pool of Python threads for apps that block. Each thread keeps one Python
//! thread state for its whole life (no thread state per request) and waits for jobs without the GIL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;

pub type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    tx: async_channel::Sender<Job>,
    busy: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let (tx, rx) = async_channel::unbounded::<Job>();
        let busy = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            let rx = rx.clone();
            let busy = busy.clone();
            std::thread::Builder::new()
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
                    })
                })
                .expect("spawn an app thread");
        }
        Pool { tx, busy }
    }

    /// A counter of threads running a job now, readable after the pool is gone.
    pub fn busy(&self) -> Arc<AtomicUsize> {
        self.busy.clone()
    }

    pub fn submit(&self, job: Job) {
        // The receivers live as long as the process: sending cannot fail.
        let _ = self.tx.send_blocking(job);
    }
}
