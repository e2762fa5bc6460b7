//! Hands back the memory a closed window leaves mapped in the app's own process.
//!
//! Destroying the web view ends WebKit's processes, but the libraries the window loaded into
//! this process stay mapped with the pages it touched: WebKit and JavaScriptCore, Mesa's
//! software renderer and LLVM, the speech voices. Nothing runs that code while the window is
//! closed, yet each touched page counts towards the tray's footprint (PSS) all day.
//!
//! [`release_clean_file_pages`] unmaps those pages with `madvise(MADV_DONTNEED)`, only where
//! that can't change what the process sees: private mappings of regular files that are not
//! writable and hold no page of their own (no copy-on-write page, so every page is the file's
//! own content). The pages stay in the kernel's page cache, where they no longer count towards
//! this process and the kernel may reclaim them; code that runs again (the broker's, or the
//! window's when it is reopened) faults them back from the cache. Writable, shared, locked and
//! device mappings, anonymous memory and the heap are never touched; the heap's free pages go
//! back with `malloc_trim` ([`trim_heap`]).
//!
//! This is what Android does to the file-backed pages of cached apps ("app compaction"), with
//! the one `madvise` that works for an unprivileged process on files it does not own
//! (`MADV_PAGEOUT` skips those).

/// One mapping that may be released: its address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Releasable {
    pub start: usize,
    pub end: usize,
    /// Its resident size when the list was read, in KiB.
    pub rss_kib: u64,
}

/// The mappings in `smaps` (the text of `/proc/self/smaps`) whose pages can be unmapped
/// without changing what the process reads: private, not writable, backed by a file outside
/// `/dev` (not a device, a SysV segment or a memfd), not locked or device memory, and with no
/// anonymous (copy-on-write) or dirty page.
pub fn releasable(smaps: &str) -> Vec<Releasable> {
    let mut found = Vec::new();
    let mut current: Option<Candidate> = None;
    for line in smaps.lines() {
        if let Some(header) = parse_header(line) {
            if let Some(done) = current.take().and_then(Candidate::finish) {
                found.push(done);
            }
            current = Some(header);
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Rss" => c.rss_kib = kib(value),
            "Anonymous" | "Private_Dirty" | "Shared_Dirty" | "Swap" if kib(value) != 0 => {
                c.eligible = false
            }
            "VmFlags" => {
                c.flags_seen = true;
                // io/pf: device or raw page-frame memory; lo: locked; dd: not to be dumped
                // (a device's or a guard's); sh/ms: shared; wr: writable.
                if value
                    .split_whitespace()
                    .any(|f| matches!(f, "io" | "pf" | "lo" | "dd" | "sh" | "ms" | "wr"))
                {
                    c.eligible = false;
                }
            }
            _ => {}
        }
    }
    if let Some(done) = current.and_then(Candidate::finish) {
        found.push(done);
    }
    found
}

struct Candidate {
    start: usize,
    end: usize,
    rss_kib: u64,
    eligible: bool,
    flags_seen: bool,
}

impl Candidate {
    fn finish(self) -> Option<Releasable> {
        // Without VmFlags (an old kernel) nothing rules out a locked or device mapping.
        (self.eligible && self.flags_seen && self.rss_kib > 0).then_some(Releasable {
            start: self.start,
            end: self.end,
            rss_kib: self.rss_kib,
        })
    }
}

/// A mapping's header line: `start-end perms offset dev inode [path]`. `None` for the other
/// lines (`Key: value`).
fn parse_header(line: &str) -> Option<Candidate> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start();
    let perms = perms.as_bytes();
    let eligible = perms[1] == b'-'
        && perms[3] == b'p'
        && inode != "0"
        && path.starts_with('/')
        && !path.starts_with("/dev/")
        && !path.starts_with("/SYSV")
        && !path.starts_with("/memfd:")
        && !path.ends_with(" (deleted)");
    Some(Candidate {
        start,
        end,
        rss_kib: 0,
        eligible,
        flags_seen: false,
    })
}

fn kib(value: &str) -> u64 {
    value
        .strip_suffix("kB")
        .unwrap_or(value)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

/// Unmaps the clean file-backed pages of [`releasable`] mappings of this process (see the
/// module docs). Returns how many KiB were resident in them; the pages that are used again
/// come back from the page cache.
#[cfg(target_os = "linux")]
pub fn release_clean_file_pages() -> std::io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for m in releasable(&smaps) {
        // SAFETY: the range is a whole mapping of this process, as /proc/self/smaps listed it:
        // private, not writable and holding no page of its own, so MADV_DONTNEED only drops
        // page-table entries of pages identical to the file's, and a later access reads the
        // same bytes back from the page cache. A mapping that changed since the list was read
        // fails with EINVAL or ENOMEM, which is ignored.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released += m.rss_kib;
        }
    }
    Ok(released)
}

#[cfg(not(target_os = "linux"))]
pub fn release_clean_file_pages() -> std::io::Result<u64> {
    Ok(0)
}

/// Returns the heap's free pages to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap pages to the OS; it is safe to call anytime.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(header: &str, rss: u64, anonymous: u64, dirty: u64, flags: &str) -> String {
        format!(
            "{header}\nSize:               1024 kB\nRss:                {rss} kB\nPss:                {rss} kB\nShared_Clean:          0 kB\nShared_Dirty:          0 kB\nPrivate_Clean:      {rss} kB\nPrivate_Dirty:      {dirty} kB\nAnonymous:          {anonymous} kB\nSwap:                  0 kB\nVmFlags: {flags}\n"
        )
    }

    #[test]
    fn only_clean_read_only_private_file_mappings_are_released() {
        let smaps = [
            // Library code: released.
            mapping("7f0000000000-7f0000100000 r-xp 00001000 fd:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", 900, 0, 0, "rd ex mr mw me sd"),
            // Read-only data of a library, never written: released.
            mapping("7f0000100000-7f0000200000 r--p 00101000 fd:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", 300, 0, 0, "rd mr mw me sd"),
            // RELRO: read-only now, but relocated in place, so it holds copy-on-write pages.
            mapping("7f0000200000-7f0000210000 r--p 00201000 fd:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", 64, 64, 64, "rd mr mw me ac sd"),
            // .data: writable.
            mapping("7f0000210000-7f0000220000 rw-p 00211000 fd:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", 64, 0, 0, "rd wr mr mw me ac sd"),
            // A shared mapping of a file.
            mapping("7f0000300000-7f0000400000 r--s 00000000 fd:01 99    /usr/share/fonts/x.ttf", 100, 0, 0, "rd mr me ms sd"),
            // A device.
            mapping("7f0000400000-7f0000500000 r--p 00000000 00:05 7     /dev/dri/renderD128", 100, 0, 0, "rd mr me io pf dd sd"),
            // The heap and anonymous memory.
            mapping("55d000000000-55d000100000 rw-p 00000000 00:00 0     [heap]", 4000, 4000, 4000, "rd wr mr mw me ac sd"),
            mapping("7f0000500000-7f0000600000 r--p 00000000 00:00 0 ", 10, 10, 0, "rd mr mw me ac sd"),
            // A locked library page range.
            mapping("7f0000600000-7f0000700000 r-xp 00000000 fd:01 55    /usr/lib/x86_64-linux-gnu/libsecret.so", 20, 0, 0, "rd ex mr mw me lo sd"),
            // A file that was deleted while mapped, and a SysV segment.
            mapping("7f0000700000-7f0000800000 r-xp 00000000 fd:01 56    /opt/old.so (deleted)", 20, 0, 0, "rd ex mr mw me sd"),
            mapping("7f0000800000-7f0000900000 r--p 00000000 00:01 57    /SYSV00000000 (deleted)", 20, 0, 0, "rd mr me sd"),
            // Nothing resident: nothing to release.
            mapping("7f0000900000-7f0000a00000 r-xp 00000000 fd:01 58    /usr/lib/libunused.so", 0, 0, 0, "rd ex mr mw me sd"),
        ]
        .concat();
        assert_eq!(
            releasable(&smaps),
            vec![
                Releasable {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0010_0000,
                    rss_kib: 900
                },
                Releasable {
                    start: 0x7f00_0010_0000,
                    end: 0x7f00_0020_0000,
                    rss_kib: 300
                },
            ]
        );
    }

    #[test]
    fn without_vm_flags_nothing_is_released() {
        let smaps = "7f0000000000-7f0000100000 r-xp 00001000 fd:01 1234  /usr/lib/libx.so\nRss:  900 kB\nAnonymous: 0 kB\n";
        assert!(releasable(smaps).is_empty());
    }

    #[test]
    fn an_unreadable_size_counts_as_not_clean() {
        let smaps = "7f0000000000-7f0000100000 r-xp 00001000 fd:01 1234  /usr/lib/libx.so\nRss:  900 kB\nAnonymous: lots\nVmFlags: rd ex\n";
        assert!(releasable(smaps).is_empty());
    }

    /// The real thing, on this test process: after the release, the code that runs again
    /// faults back in from the page cache and the process carries on; the mappings released
    /// had pages resident before.
    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_this_process_pages_keeps_it_running_and_lowers_its_file_backed_rss() {
        let before = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let candidates: u64 = releasable(&before).iter().map(|m| m.rss_kib).sum();
        assert!(
            candidates > 0,
            "a test binary has resident library code to release"
        );
        let released = release_clean_file_pages().unwrap();
        assert!(released > 0, "nothing was released");
        // Still runs: formatting, allocation and a file read go through code just unmapped.
        let again = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let after: u64 = releasable(&again).iter().map(|m| m.rss_kib).sum();
        assert!(
            after < candidates,
            "the released mappings hold as much as before ({after} of {candidates} KiB)"
        );
    }
}
