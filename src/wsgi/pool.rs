//! `--threads N`: a pool of Python threads for apps that block. Each thread keeps one Python
//! thread state for its whole life (no thread state per request) and waits for jobs without the GIL.

use pyo3::prelude::*;

pub type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    tx: async_channel::Sender<Job>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let (tx, rx) = async_channel::unbounded::<Job>();
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("velocior-app-{i}"))
                .spawn(move || {
                    Python::with_gil(|py| {
                        py.allow_threads(|| {
                            while let Ok(job) = rx.recv_blocking() {
                                job();
                            }
                        })
                    })
                })
                .expect("spawn an app thread");
        }
        Pool { tx }
    }

    pub fn submit(&self, job: Job) {
        // The receivers live as long as the process: sending cannot fail.
        let _ = self.tx.send_blocking(job);
    }
}
