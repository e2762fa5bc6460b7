//! The same-user check's lookups on real sockets: `/proc/net/tcp` and `/proc/net/tcp6`.

use snowgate_gateway::peer;

async fn pair(
    addr: &str,
) -> Option<(
    std::net::SocketAddr,
    std::net::SocketAddr,
    tokio::net::TcpStream,
    tokio::net::TcpStream,
)> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    Some((server.local_addr().unwrap(), peer, server, client))
}

#[tokio::test]
#[cfg(target_os = "linux")]
async fn the_owner_and_process_of_a_loopback_peer_are_found_over_ipv4_and_ipv6() {
    let mut checked = 0;
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let Some((ours, theirs, _server, _client)) = pair(addr).await else {
            eprintln!("{addr} unavailable here; skipped");
            continue;
        };
        let found =
            peer::lookup(ours, theirs).unwrap_or_else(|| panic!("no entry for {theirs} -> {ours}"));
        assert_eq!(found.uid, peer::current_uid(), "{addr}");
        let (pid, name) =
            peer::process_holding(found.inode).expect("the process holding the socket");
        assert_eq!(pid, std::process::id(), "{addr}");
        assert!(name.is_some());
        // Our own end of the connection is not mistaken for the peer's.
        assert_ne!(
            peer::lookup(theirs, ours).map(|p| p.inode),
            Some(found.inode)
        );
        checked += 1;
    }
    assert!(checked >= 1);
}
