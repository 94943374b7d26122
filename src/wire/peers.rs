//! [`PeerCodecFactory`]: the format of each peer this node dials, for a node in a mixed
//! cluster (Go peers in hashicorp's format, raftnet peers in the native one).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use super::{Codec, CodecContext, CodecFactory};

/// A peer table: connections this node dials to an address in the table get that address's
/// codec; every other connection, dialled or accepted, gets the default factory's.
///
/// Keyed by the address dialled (after an
/// [`AddressProvider`](crate::AddressProvider)'s lookup), as connections are pooled: one
/// address is one process, which speaks one format. The table may change while the transport
/// runs ([`set_peer`](Self::set_peer), [`remove_peer`](Self::remove_peer)), for a cluster whose
/// members change: connections dialled afterwards follow it, open ones keep their format.
///
/// A Rust node in a cluster with a Go node at `10.0.0.3:8300`: it accepts both formats on its
/// own port and dials the Go node in hashicorp's format, every other peer natively.
///
/// ```
/// use std::sync::Arc;
/// use raftnet::Config;
/// use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
/// use raftnet::wire::{PeerCodecFactory, SniffingCodecFactory};
///
/// let go = GoRaftVersion::V1_1;
/// let formats = Arc::new(
///     PeerCodecFactory::new(Arc::new(SniffingCodecFactory::new(go)))
///         .peer("10.0.0.3:8300".parse().unwrap(), Arc::new(HashicorpCodecFactory::new(go))),
/// );
/// let config = Config::default().codec(formats.clone());
///
/// // Later a raftnet node replaces the Go one at that address.
/// formats.remove_peer("10.0.0.3:8300".parse().unwrap());
/// # let _ = config;
/// ```
pub struct PeerCodecFactory {
    default: Arc<dyn CodecFactory>,
    peers: RwLock<HashMap<SocketAddr, Arc<dyn CodecFactory>>>,
}

impl fmt::Debug for PeerCodecFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("PeerCodecFactory")
            .field("peers", &peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PeerCodecFactory {
    /// A table with no peers: every connection gets `default`'s codec.
    pub fn new(default: Arc<dyn CodecFactory>) -> PeerCodecFactory {
        PeerCodecFactory {
            default,
            peers: RwLock::new(HashMap::new()),
        }
    }

    /// Dial `addr` with `factory`'s codecs (a builder form of [`set_peer`](Self::set_peer)).
    pub fn peer(self, addr: SocketAddr, factory: Arc<dyn CodecFactory>) -> PeerCodecFactory {
        self.set_peer(addr, factory);
        self
    }

    /// From now on, dial `addr` with `factory`'s codecs.
    pub fn set_peer(&self, addr: SocketAddr, factory: Arc<dyn CodecFactory>) {
        self.write().insert(addr, factory);
    }

    /// From now on, dial `addr` with the default factory's codecs.
    pub fn remove_peer(&self, addr: SocketAddr) {
        self.write().remove(&addr);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SocketAddr, Arc<dyn CodecFactory>>> {
        // The map stays whole whatever panicked while holding the lock.
        self.peers.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CodecFactory for PeerCodecFactory {
    fn new_codec(&self, context: &CodecContext) -> Box<dyn Codec> {
        if !context.inbound {
            let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(factory) = peers.get(&context.peer) {
                return factory.new_codec(context);
            }
        }
        self.default.new_codec(context)
    }
}
