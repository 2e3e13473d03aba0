//! `--timeout`: a request stuck inside the application longer than the limit takes its worker
//! down (uWSGI's harakiri). The watchdog runs on its own thread and needs neither the GIL nor the
//! loop, so it fires even when the app spins in C code holding the GIL. It writes one line to
//! stderr naming the request, then the process kills itself; the supervisor replaces it.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thread that calls the app.
pub struct Slot {
    /// Milliseconds since `Watchdog::epoch` when the current app call started; 0 = not in the app.
    since: AtomicU64,
    label: Mutex<String>,
    epoch: Instant,
}

pub struct SlotGuard<'a>(&'a Slot);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Relaxed);
    }
}

impl Slot {
    pub fn set_label(&self, label: String) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = label;
    }
    pub fn enter(&self) -> SlotGuard<'_> {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.since.store(ms, Ordering::Relaxed);
        SlotGuard(self)
    }
}

pub struct Watchdog {
    slots: Mutex<Vec<Arc<Slot>>>,
    epoch: Instant,
}

impl Watchdog {
    pub fn start(timeout: Duration) -> Arc<Watchdog> {
        let w = Arc::new(Watchdog {
            slots: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name("velocior-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                let now = w2.epoch.elapsed().as_millis() as u64 + 1;
                for s in w2.slots.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let since = s.since.load(Ordering::Relaxed);
                    if since != 0 && now.saturating_sub(since) > timeout.as_millis() as u64 {
                        let label = s.label.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let pid = std::process::id();
                        let _ = writeln!(
                            std::io::stderr(),
                            "[velocior] worker {pid} timed out after {:.1}s handling {label}: killing it (--timeout)",
                            timeout.as_secs_f64()
                        );
                        // SAFETY: plain syscalls on our own pid.
                        unsafe {
                            libc::kill(libc::getpid(), libc::SIGKILL);
                        }
                    }
                }
            })
            .expect("spawn the watchdog thread");
        w
    }

    pub fn slot(&self) -> Arc<Slot> {
        let s = Arc::new(Slot {
            since: AtomicU64::new(0),
            label: Mutex::new(String::new()),
            epoch: self.epoch,
        });
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s.clone());
        s
    }
}
