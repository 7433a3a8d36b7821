//! Consistent-hash peering (interface.md §4 "Peering"): each cache key has one owner among
//! `cluster.peers` (ketama, so adding or removing a node moves about 1/N of the keys). A node
//! that misses a key it does not own asks the owner's proxy listener instead of the origin;
//! peer requests carry `CDN-Loop: outpost` (RFC 8586), and a request that already has it is
//! never sent to a peer again (one hop at most). An owner that does not connect within the
//! origin's `connect_timeout`, or answers 5xx, is skipped and the origin is asked.

use pingora_load_balancing::selection::Consistent;
use pingora_load_balancing::LoadBalancer;
use std::net::SocketAddr;

/// The `CDN-Loop` token of outpost fleets.
pub const LOOP_TOKEN: &str = "outpost";

/// The ring of peers.
pub struct Ring {
    lb: LoadBalancer<Consistent>,
    me: SocketAddr,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ring(me={})", self.me)
    }
}

impl Ring {
    /// `None` when peering is off (no peers) or the ring cannot be built.
    pub fn new(peers: &[SocketAddr], me: Option<SocketAddr>) -> Option<Ring> {
        let me = me?;
        if peers.len() < 2 {
            return None;
        }
        let lb = LoadBalancer::<Consistent>::try_from_iter(peers.iter().map(|p| p.to_string()))
            .map_err(|e| tracing::error!("peering ring not built: {e}"))
            .ok()?;
        Some(Ring { lb, me })
    }

    /// The owner of `key` when it is another node.
    pub fn owner(&self, key: &[u8]) -> Option<SocketAddr> {
        let b = self.lb.select(key, 256)?;
        let addr = *b.addr.as_inet()?;
        (addr != self.me).then_some(addr)
    }
}

/// Whether a request already took a peer hop (its `CDN-Loop` names outpost).
pub fn looped(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get_all("cdn-loop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|id| id.trim().eq_ignore_ascii_case(LOOP_TOKEN))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_key_has_one_owner_and_about_a_third_each() {
        let peers: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let rings: Vec<Ring> = peers
            .iter()
            .map(|p| Ring::new(&peers, Some(*p)).unwrap())
            .collect();
        let mut mine = [0usize; 3];
        for i in 0..3000 {
            let key = format!("http://site.test/obj{i}");
            let owners: Vec<Option<SocketAddr>> =
                rings.iter().map(|r| r.owner(key.as_bytes())).collect();
            let selves: Vec<usize> = (0..3).filter(|n| owners[*n].is_none()).collect();
            assert_eq!(selves.len(), 1, "{key}: exactly one node owns it");
            let owner = peers[selves[0]];
            assert!(
                owners.iter().flatten().all(|o| *o == owner),
                "{key}: the others agree"
            );
            mine[selves[0]] += 1;
        }
        assert!(mine.iter().all(|n| (600..1400).contains(n)), "{mine:?}");
    }

    #[test]
    fn cdn_loop_is_recognised() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/", None).unwrap();
        assert!(!looped(&req));
        req.insert_header("cdn-loop", "foo, Outpost; v=1").unwrap();
        assert!(looped(&req));
    }
}
