//! Local wall-clock time for sentences a person reads ("ended at 14:05", "ANALYST (until
//! 16:00)"). The gateway's and the engine's sentences show the same clock this way.

use std::time::SystemTime;

/// `HH:MM` of `at` in the local time zone (the `TZ` variable, else the system's zone; UTC
/// when neither can be read).
pub fn hour_minute(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(at)
        .format("%H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn follows_the_local_time_zone() {
        // 2023-11-14 22:13:20 UTC. Only this test reads the zone, so setting TZ is safe; each
        // zone is read on a new thread because the zone is cached per thread.
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (tz, expected) in [("UTC0", "22:13"), ("XST-5:30", "03:43"), ("XST+9", "13:13")] {
            std::env::set_var("TZ", tz);
            let shown = std::thread::spawn(move || hour_minute(at)).join().unwrap();
            assert_eq!(shown, expected, "TZ={tz}");
        }
    }
}
