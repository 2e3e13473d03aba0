//! The `Date` header value (IMF-fixdate), formatted at most twice a second instead of per response.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DATE_LEN: usize = 29;

pub struct DateCache {
    value: Cell<[u8; DATE_LEN]>,
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

impl DateCache {
    pub fn new() -> Self {
        DateCache {
            value: Cell::new(format_now()),
        }
    }
    pub fn refresh(&self) {
        self.value.set(format_now());
    }
    pub fn get(&self) -> [u8; DATE_LEN] {
        self.value.get()
    }
}

pub fn format_now() -> [u8; DATE_LEN] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_http_date(secs)
}

pub const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A Unix time as UTC calendar fields.
pub struct Civil {
    pub year: u64,
    /// 1-12
    pub month: usize,
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
    /// 0 = Thursday (1970-01-01 was a Thursday)
    pub weekday_from_thu: usize,
}

pub fn civil(secs: u64) -> Civil {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: (rem % 3600) / 60,
        second: rem % 60,
        weekday_from_thu: (days % 7) as usize,
    }
}

/// "Sun, 06 Nov 1994 08:49:37 GMT" for a Unix time.
pub fn format_http_date(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    let Civil {
        year,
        month,
        day,
        hour: h,
        minute: m,
        second: s,
        weekday_from_thu,
    } = civil(secs);
    let weekday = DAYS[weekday_from_thu];
    let mut out = [0u8; DATE_LEN];
    out[..3].copy_from_slice(weekday);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], day);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[11] = b' ';
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    out[16] = b' ';
    two(&mut out[17..19], h);
    out[19] = b':';
    two(&mut out[20..22], m);
    out[22] = b':';
    two(&mut out[23..25], s);
    out[25..29].copy_from_slice(b" GMT");
    out
}

fn two(dst: &mut [u8], v: u64) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::format_http_date;

    #[test]
    fn known_dates() {
        assert_eq!(
            &format_http_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_http_date(1_798_761_599),
            b"Thu, 31 Dec 2026 23:59:59 GMT"
        );
    }
}
