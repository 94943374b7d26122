//! What the engine shares with the API side of the transport: the configuration, the handoff
//! and consumer queues, metrics and gauges, the handlers (heartbeat, `Service`) and the close
//! that fails everything waiting when the driver ends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::handoff::{Handoff, HandoffSink, Wake};
use crate::config::Config;
use crate::metrics::TransportMetrics;
use crate::transport::rpc::{Consumer, ResponseSink};
use crate::transport::{HeartbeatHandler, Service};

/// Values the engine publishes for the API to read.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) idle_pooled: AtomicUsize,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) timers: AtomicUsize,
}

/// What serves inbound RPCs on the engine's thread: the heartbeat handler and the service.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    pub(crate) heartbeat: Option<HeartbeatHandler>,
    pub(crate) service: Option<Arc<dyn Service>>,
}

/// The [`Handlers`] as the API sets them. The engine keeps a copy and takes the lock only when
/// `version` moved, so serving an RPC costs an atomic load, not a lock.
#[derive(Default)]
pub(crate) struct HandlerSlot {
    handlers: RwLock<Handlers>,
    version: AtomicU64,
}

impl HandlerSlot {
    pub(crate) fn set_heartbeat(&self, handler: Option<HeartbeatHandler>) {
        self.update(|h| h.heartbeat = handler);
    }

    pub(crate) fn set_service(&self, service: Option<Arc<dyn Service>>) {
        self.update(|h| h.service = service);
    }

    fn update(&self, change: impl FnOnce(&mut Handlers)) {
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        change(&mut handlers);
        // Under the lock: a reader that sees the new version reads the new handlers.
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The handlers as they are now.
    pub(crate) fn get(&self) -> Handlers {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bring `cached` (the handlers with the version they were read at) up to date.
    pub(crate) fn refresh(&self, cached: &mut (u64, Handlers)) {
        let version = self.version.load(Ordering::Acquire);
        if version != cached.0 {
            let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
            *cached = (self.version.load(Ordering::Acquire), handlers.clone());
        }
    }
}

/// What a transport's API and its engine share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) handoff: Arc<Handoff>,
    pub(crate) sink: Arc<dyn ResponseSink>,
    pub(crate) consumer: Consumer,
    pub(crate) handlers: HandlerSlot,
    pub(crate) metrics: Arc<TransportMetrics>,
    pub(crate) gauges: Gauges,
}

impl Shared {
    /// The state of a new transport whose driver `waker` wakes.
    pub(crate) fn new(config: Config, waker: Box<dyn Wake>) -> Arc<Shared> {
        let metrics = Arc::new(TransportMetrics::default());
        let handoff = Arc::new(Handoff::new(waker, metrics.clone()));
        Arc::new(Shared {
            sink: Arc::new(HandoffSink(handoff.clone())),
            handoff,
            consumer: Consumer::new(Some(metrics.clone())),
            handlers: HandlerSlot::default(),
            metrics,
            gauges: Gauges::default(),
            config,
        })
    }

    /// The end of the transport, whoever reaches it first (the API's `close`, the engine's
    /// shutdown, a driver that stops): submissions fail from now on, what is queued fails, and
    /// the consumer reports the shutdown once drained.
    pub(crate) fn close(&self) {
        self.handoff.close();
        self.consumer.shared().close();
    }
}

/// Runs [`Shared::close`] when dropped: a driver holds one for its whole run, so however it
/// ends (even by a panic, or a runtime dropping its task) callers are not left waiting.
pub(crate) struct ClosedOnExit(pub(crate) Arc<Shared>);

impl Drop for ClosedOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}
