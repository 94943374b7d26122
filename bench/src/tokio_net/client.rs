//! The client (one per peer): calls multiplexed by id on one connection. Generic over what the
//! answers carry, so the openraft cluster's tokio network (`crate::cluster`) uses it with
//! openraft's messages; [`Client<Message>`] adds the tokio scenarios' calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::Message;
use super::connection::connection_ends;
use super::frame::{Envelope, Wire, encode};
use super::requests::Snapshot;

struct Pending<M> {
    /// The connection's reader has ended: no answer will come.
    closed: bool,
    waiting: HashMap<u64, oneshot::Sender<M>>,
}

struct ClientShared<M> {
    frames: mpsc::Sender<Bytes>,
    pending: Arc<Mutex<Pending<M>>>,
    next_id: AtomicU64,
}

/// One connection, calls multiplexed on it by id; `M` is what answers carry. (Also the
/// connection of the openraft cluster's tokio network, `crate::cluster`.)
pub(crate) struct Client<M>(Arc<ClientShared<M>>);

impl<M> Clone for Client<M> {
    fn clone(&self) -> Self {
        Client(self.0.clone())
    }
}

impl<M: Wire + Send + 'static> Client<M> {
    /// Connect to `addr` and start the connection's reader and writer tasks (on the current
    /// runtime).
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client<M>, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (responses, frames) =
            connection_ends(stream).map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let pending = Arc::new(Mutex::new(Pending {
            closed: false,
            waiting: HashMap::new(),
        }));
        tokio::spawn(read_responses(responses, pending.clone()));
        Ok(Client(Arc::new(ClientShared {
            frames,
            pending,
            next_id: AtomicU64::new(1),
        })))
    }
}

impl<M> Client<M> {
    /// Whether answers can still come.
    pub(crate) fn is_open(&self) -> bool {
        !self.0.frames.is_closed() && !self.0.pending.lock().unwrap().closed
    }

    /// A new request id, and where its answer will arrive.
    pub(crate) fn register(&self) -> Result<(u64, oneshot::Receiver<M>), String> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        let mut pending = self.0.pending.lock().unwrap();
        if pending.closed {
            return Err("connection closed".into());
        }
        pending.waiting.insert(id, done);
        Ok((id, answer))
    }

    /// Stop waiting for `id` (its caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        self.0.pending.lock().unwrap().waiting.remove(&id);
    }

    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), String> {
        self.0
            .frames
            .send(frame)
            .await
            .map_err(|_| "connection closed".to_string())
    }
}

impl Client<Message> {
    /// One request, its answer.
    pub(crate) async fn call(&self, request: &Message) -> Result<Message, String> {
        let (id, answer) = self.register()?;
        self.send(encode(id, request)).await?;
        answer.await.map_err(|_| "connection closed".to_string())
    }

    /// One snapshot transfer: the request, then the body's chunks with the same id; the
    /// answer comes after the last chunk.
    pub(crate) async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<Message, String> {
        let (id, answer) = self.register()?;
        self.send(encode(id, &snapshot.request)).await?;
        for chunk in &snapshot.chunks {
            self.send(encode(id, chunk)).await?;
        }
        answer.await.map_err(|_| "connection closed".to_string())
    }
}

/// The client's reader task: each answer completes the call waiting for its id.
async fn read_responses<M: Wire>(
    mut responses: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    pending: Arc<Mutex<Pending<M>>>,
) {
    while let Some(Ok(frame)) = responses.next().await {
        let Ok(Envelope { id, message }) = M::decode(frame.freeze()) else {
            break;
        };
        let done = pending.lock().unwrap().waiting.remove(&id);
        if let Some(done) = done {
            let _ = done.send(message);
        }
    }
    // Fail every call still waiting (their senders drop) and any later one.
    let mut pending = pending.lock().unwrap();
    pending.closed = true;
    pending.waiting.clear();
}
