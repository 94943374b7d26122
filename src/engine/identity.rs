//! Feature `tls`: what a TLS connection's verified peer may do. The driver hands the engine
//! the peer's identity once, after the handshake ([`Engine::handle_verified_peer`]); every
//! request served on the connection is then checked against it ([`Engine::admit_request`]):
//! its header's claimed sender must be one the certificate names, and the authorization hook
//! must allow its kind. A request that fails either is answered with a refusal
//! ([`Refusal`]) and never reaches the Raft side; the connection goes on serving.

use std::sync::Arc;
use std::time::Instant;

use super::conn::{Paused, Role};
use super::{ConnKey, Engine, lookup};
use crate::error::Refusal;
use crate::message::{Message, Request};
use crate::metrics::RpcType;
use crate::tls::{Authorize, PeerIdentity, VerifiedPeer};
use crate::wire::RawFrame;

/// A connection's verified peer and what the authorization hook said about it so far.
pub(crate) struct PeerCheck {
    identity: Arc<PeerIdentity>,
    authorize: Option<Authorize>,
    /// Bit `kind as u8`: the hook was asked about this kind of RPC.
    decided: u8,
    /// Bit `kind as u8`: and it allowed it.
    allowed: u8,
}

impl PeerCheck {
    /// Whether the hook allows `kind` from this peer: asked once per kind, then remembered
    /// (a bit test per request).
    fn allows(&mut self, kind: RpcType) -> bool {
        let bit = 1u8 << (kind as u8);
        if self.decided & bit == 0 {
            self.decided |= bit;
            let allowed = self
                .authorize
                .as_ref()
                .is_none_or(|hook| hook(&self.identity, kind));
            if allowed {
                self.allowed |= bit;
            }
        }
        self.allowed & bit != 0
    }
}

impl Engine {
    /// `key`'s TLS handshake completed: `peer` is who is at the other end.
    pub(crate) fn handle_verified_peer(&mut self, key: ConnKey, peer: VerifiedPeer) {
        if let Some(conn) = self.conn_mut(key) {
            tracing::debug!(parent: &conn.span, identity = %peer.identity, "TLS peer verified");
            conn.peer_check = Some(PeerCheck {
                identity: peer.identity,
                authorize: peer.authorize,
                decided: 0,
                allowed: 0,
            });
        }
    }

    /// Whether `request`, on serving connection `key`, passes its peer's checks; if not, it
    /// was answered with the refusal (and logged) and must not be served. A connection with
    /// no verified peer (no TLS) passes.
    ///
    /// A request without a sender id in its header passes the identity check: older peers
    /// send none, and the certificate authenticated the connection already (see the module
    /// docs of [`crate::tls`]).
    pub(super) fn admit_request(
        &mut self,
        key: ConnKey,
        frame: &RawFrame,
        request: &Request,
        kind: RpcType,
        now: Instant,
    ) -> bool {
        let Some(check) = self.conn_mut(key).and_then(|c| c.peer_check.as_mut()) else {
            return true;
        };
        let refusal = match &request.header().id {
            Some(claimed) if !check.identity.carries(claimed) => Some((
                Refusal::IdentityMismatch,
                format!(
                    "the request claims to come from server {:?}, its certificate names {}",
                    String::from_utf8_lossy(claimed),
                    check.identity
                ),
            )),
            _ if !check.allows(kind) => Some((
                Refusal::Unauthorized,
                format!("{} may not send {}", check.identity, kind.as_str()),
            )),
            _ => None,
        };
        let Some((reason, message)) = refusal else {
            return true;
        };
        self.refuse_request(key, frame, request, reason, message, now);
        false
    }

    /// Answer a request with a refusal instead of serving it, and log it.
    fn refuse_request(
        &mut self,
        key: ConnKey,
        frame: &RawFrame,
        request: &Request,
        reason: Refusal,
        message: String,
        now: Instant,
    ) {
        let Some(conn) = lookup(&mut self.conns, key) else {
            return;
        };
        let request_id = frame.header.request_id;
        let answer = Message::Error(reason.answer(&message));
        let _ = conn
            .codec
            .encode(&mut conn.send, request_id, frame.header.lane, &answer);
        let snapshot = matches!(request, Request::InstallSnapshot(_));
        if snapshot {
            // Its body follows on this connection: dropped unread, and the connection closes
            // once the refusal is written (as for a snapshot over the limit).
            conn.close_after_flush = true;
            if let Role::Inbound(inbound) = &mut conn.role {
                inbound.refused_snapshot = Some(request_id);
            }
        }
        let peer = conn.peer;
        self.mark_dirty(key);
        if snapshot {
            self.pause(key, Paused::CLOSING, now);
        }
        let span = self.conns.get(key.index()).map(|c| &c.span);
        let what = match reason {
            Refusal::IdentityMismatch => "identity mismatch",
            Refusal::Unauthorized => "unauthorized",
        };
        self.refused_requests.warn(now, span, || {
            format!("refusing a request from {peer} ({what}): {message}")
        });
    }
}
