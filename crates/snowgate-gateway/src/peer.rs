//! Who is on the other end of a loopback connection, as the operating system tells it.
//!
//! Only the same OS user may use the gateway. On Linux, the owner of the peer's socket is in
//! `/proc/net/tcp` (IPv4) and `/proc/net/tcp6` (IPv6): the peer's socket is the line whose
//! local address is the peer's address and whose remote address is ours, and its `uid` column is
//! the owner. Addresses there are hex: IPv4 as one 32-bit word and IPv6 as four, each printed
//! as the native-endian value of the network-order bytes (so `127.0.0.1` is `0100007F` on a
//! little-endian machine), and ports as plain big-endian hex.
//!
//! The process holding the socket (its pid and name) is found only at login, by scanning
//! `/proc/*/fd` for the socket's inode: that is too slow to do per request.
//!
//! On other systems these lookups answer `None`; the gateway then serves loopback peers
//! without the same-user check (documented in the README).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The peer's socket as `/proc/net/tcp{,6}` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSocket {
    /// The OS user owning the socket.
    pub uid: u32,
    /// The socket's inode, to find the process holding it.
    pub inode: u64,
}

/// The effective uid of this process: the user the gateway serves.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Finds the peer's socket of the connection between `ours` (the gateway's end) and `peer`.
#[cfg(target_os = "linux")]
pub fn lookup(ours: SocketAddr, peer: SocketAddr) -> Option<PeerSocket> {
    let tables: &[&str] = match peer.ip() {
        IpAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        IpAddr::V6(_) => &["/proc/net/tcp6", "/proc/net/tcp"],
    };
    tables.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        find_in_proc_net(&text, ours, peer)
    })
}

#[cfg(not(target_os = "linux"))]
pub fn lookup(_ours: SocketAddr, _peer: SocketAddr) -> Option<PeerSocket> {
    None
}

/// Whether [`lookup`] can tell a socket's owner on this system.
pub fn same_user_check_supported() -> bool {
    cfg!(target_os = "linux")
}

/// Finds, in the text of `/proc/net/tcp` or `/proc/net/tcp6`, the socket whose local address is
/// `peer` and whose remote address is `ours`.
pub fn find_in_proc_net(text: &str, ours: SocketAddr, peer: SocketAddr) -> Option<PeerSocket> {
    let ours = canonical(ours);
    let peer = canonical(peer);
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let _slot = fields.next()?;
        let local = parse_endpoint(fields.next()?)?;
        let remote = parse_endpoint(fields.next()?)?;
        if canonical(local) != peer || canonical(remote) != ours {
            return None;
        }
        // st, tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid, timeout, inode.
        let mut rest = fields.skip(4);
        let uid = rest.next()?.parse().ok()?;
        let _timeout = rest.next()?;
        let inode = rest.next()?.parse().ok()?;
        Some(PeerSocket { uid, inode })
    })
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6).
pub fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One 32-bit word as the kernel prints it: the native-endian value of four address bytes.
fn word(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The process holding the socket with `inode`, and its name: scans `/proc/*/fd` of this
/// user's processes. Slow (milliseconds); call it once per login, not per request.
#[cfg(target_os = "linux")]
pub fn process_holding(inode: u64) -> Option<(u32, Option<String>)> {
    use std::os::unix::fs::MetadataExt;
    let want = format!("socket:[{inode}]");
    let me = current_uid();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Only this user's processes can hold a socket the same-user check let through.
        match entry.metadata() {
            Ok(m) if m.uid() == me || me == 0 => {}
            _ => continue,
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.as_os_str() == want.as_str() {
                    let comm = std::fs::read_to_string(entry.path().join("comm"))
                        .ok()
                        .map(|s| s.trim_end().to_string());
                    return Some((pid, comm));
                }
            }
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub fn process_holding(_inode: u64) -> Option<(u32, Option<String>)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:C350 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 5555 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:AAAA 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000   42        0 6666 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_ipv4_words_little_endian() {
        assert_eq!(
            parse_endpoint("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint("0201A8C0:0016"),
            Some("192.168.1.2:22".parse().unwrap())
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_ipv6_as_four_little_endian_words() {
        assert_eq!(
            parse_endpoint("00000000000000000000000001000000:1F90"),
            Some("[::1]:8080".parse().unwrap())
        );
        // fe80::1234:5678 -> words 000080FE 00000000 00000000 78563412
        assert_eq!(
            parse_endpoint("000080FE000000000000000078563412:0050"),
            Some("[fe80::1234:5678]:80".parse().unwrap())
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn finds_the_peers_socket_not_ours() {
        let ours: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(
            find_in_proc_net(TCP, ours, peer),
            Some(PeerSocket {
                uid: 1000,
                inode: 2222
            })
        );
        let ours6: SocketAddr = "[::1]:8080".parse().unwrap();
        let peer6: SocketAddr = "[::1]:50000".parse().unwrap();
        assert_eq!(
            find_in_proc_net(TCP6, ours6, peer6),
            Some(PeerSocket {
                uid: 65534,
                inode: 5555
            })
        );
        // An IPv4-mapped entry in tcp6 matches the IPv4 pair.
        let peer_mapped: SocketAddr = "127.0.0.1:43690".parse().unwrap();
        assert_eq!(
            find_in_proc_net(TCP6, ours, peer_mapped),
            Some(PeerSocket {
                uid: 42,
                inode: 6666
            })
        );
        // Nothing for a pair that is not listed.
        let stranger: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(find_in_proc_net(TCP, ours, stranger), None);
    }
}
