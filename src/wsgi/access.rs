//! The access log line (combined log format), built in Rust and handed to `velocior.access`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::server::date::{civil, MONTHS};

/// What the access line and the watchdog need to know about a request.
pub struct AccessInfo {
    pub remote: String,
    pub method: String,
    pub target: String,
    pub protocol: String,
    pub referer: String,
    pub user_agent: String,
}

impl AccessInfo {
    /// `127.0.0.1 - - [26/Nov/2026:07:47:42 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/8"`
    pub fn line(&self, status: u16, bytes: u64) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let c = civil(secs);
        let month = std::str::from_utf8(MONTHS[c.month - 1]).unwrap_or("???");
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.replace('"', "\\\"")
            }
        };
        let mut out = String::with_capacity(160);
        let _ = write!(
            out,
            "{} - - [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] \"{} {} {}\" {} {} \"{}\" \"{}\"",
            dash(&self.remote),
            c.day,
            month,
            c.year,
            c.hour,
            c.minute,
            c.second,
            self.method,
            self.target.replace('"', "%22"),
            self.protocol,
            status,
            bytes,
            dash(&self.referer),
            dash(&self.user_agent),
        );
        out
    }
}
