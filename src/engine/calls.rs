//! The per-call `trace` events: a call sent and answered, a pipelined append sent and answered,
//! a request received and answered. The paths they sit on run once per RPC, so each is a cold
//! function of its own, called only when the engine's flag says someone may record it
//! (`Engine::trace_calls`, looked up once per turn): with no one interested, a call costs the
//! test of that flag, and the formatting code stays out of the hot functions. Their target is
//! this module's, `raftnet::engine::calls`, so a filter can ask for them alone
//! (`raftnet::engine::calls=trace`).

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{Span, trace};

use crate::metrics::RpcType;

#[cold]
#[inline(never)]
pub(super) fn call_sent(span: &Span, peer: &SocketAddr, rpc: RpcType, request_id: u64) {
    trace!(parent: span, %peer, ?rpc, request_id, "call sent");
}

#[cold]
#[inline(never)]
pub(super) fn call_answered(
    span: &Span,
    peer: &SocketAddr,
    rpc: RpcType,
    request_id: u64,
    latency: Duration,
) {
    trace!(parent: span, %peer, ?rpc, request_id, ?latency, "call answered");
}

#[cold]
#[inline(never)]
pub(super) fn append_sent(span: &Span, peer: &SocketAddr, rpc: RpcType, seq: u64) {
    trace!(parent: span, %peer, ?rpc, seq, "append sent");
}

#[cold]
#[inline(never)]
pub(super) fn append_answered(span: &Span, peer: &SocketAddr, seq: u64, latency: Duration) {
    trace!(parent: span, %peer, seq, ?latency, "append answered");
}

#[cold]
#[inline(never)]
pub(super) fn request_received(span: &Span, peer: &SocketAddr, rpc: RpcType, request_id: u64) {
    trace!(parent: span, %peer, ?rpc, request_id, "request received");
}

#[cold]
#[inline(never)]
pub(super) fn answering(span: &Span, peer: &SocketAddr, rpc: RpcType, request_id: u64) {
    trace!(parent: span, %peer, ?rpc, request_id, "answering");
}
