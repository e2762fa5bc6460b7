//! Local wall-clock time for sentences a person reads ("ended at 14:05").
//!
//! The gateway has no calendar dependency; the C library already knows the local time zone.

use std::time::{SystemTime, UNIX_EPOCH};

/// `HH:MM` of `at` in the local time zone (UTC when the zone cannot be read).
pub fn hour_minute(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    };
    #[cfg(unix)]
    {
        let t: libc::time_t = secs as libc::time_t;
        // SAFETY: localtime_r writes only into `tm`, which we own; a null result means failure.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if ok {
            return format!("{:02}:{:02}", tm.tm_hour, tm.tm_min);
        }
    }
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", day / 3600, (day % 3600) / 60)
}
