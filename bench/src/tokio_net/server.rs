//! The scenarios' server: accepts connections, answers in the connection task or hands requests
//! to a consumer task (standing for the Raft loop), as [`Routing`] says; checks snapshot bodies
//! byte by byte and their length (`crate::check`) before answering success, as raftnet's side
//! does.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::Message;
use super::connection::connection_ends;
use super::frame::{Envelope, Wire, encode};
use super::messages;
use super::requests::buf;
use crate::check::{BodyCheck, Findings};
use crate::scenario::{PIPELINE_DEPTH, SNAPSHOT_SIZE};

/// Requests the server's consumer channel holds.
const CONSUMER_QUEUE: usize = 2 * PIPELINE_DEPTH;

const FOLLOWER_ID: &[u8] = b"n2";
const FOLLOWER_ADDR: &[u8] = b"127.0.0.1:7001";

/// The server's answer to a request, `None` for anything that is not a request it answers.
pub(crate) fn answer(message: &Message) -> Option<Message> {
    Some(match message {
        Message::AppendEntries(m) => {
            Message::AppendEntriesResponse(messages::AppendEntriesResponse {
                protocol_version: 3,
                id: buf(FOLLOWER_ID),
                addr: buf(FOLLOWER_ADDR),
                term: m.term,
                last_log: m.entries.last().map_or(m.prev_log_entry, |e| e.index),
                success: true,
                no_retry_backoff: false,
            })
        }
        Message::RequestVote(m) => Message::RequestVoteResponse(messages::RequestVoteResponse {
            protocol_version: 3,
            id: buf(FOLLOWER_ID),
            addr: buf(FOLLOWER_ADDR),
            term: m.term,
            peers: None,
            granted: true,
        }),
        _ => return None,
    })
}

/// A request handed to the consumer, with the connection to answer on.
struct Work {
    id: u64,
    request: Message,
    reply: mpsc::Sender<Bytes>,
}

/// Where the server's connection tasks send requests.
#[derive(Clone)]
pub(crate) struct Routing {
    /// The consumer ("Raft loop") that answers requests; `None`: the connection task answers
    /// every request itself at once.
    consumer: Option<mpsc::Sender<Work>>,
    /// With a consumer: heartbeats are still answered at once by the connection task (as
    /// raftnet's heartbeat fast path does).
    heartbeat_fast_path: bool,
}

impl Routing {
    /// The connection task answers every request itself, at once.
    pub(crate) fn in_connection() -> Routing {
        Routing {
            consumer: None,
            heartbeat_fast_path: true,
        }
    }

    /// Requests go to a consumer task, spawned on `runtime`, that answers them; heartbeats are
    /// answered by the connection task if `heartbeat_fast_path`.
    pub(crate) fn through_consumer(runtime: &Handle, heartbeat_fast_path: bool) -> Routing {
        let (consumer, work) = mpsc::channel(CONSUMER_QUEUE);
        runtime.spawn(consume(work));
        Routing {
            consumer: Some(consumer),
            heartbeat_fast_path,
        }
    }
}

/// A snapshot being received.
struct Transfer {
    term: u64,
    /// The size the request declared.
    size: u64,
    body: BodyCheck,
}

impl Transfer {
    /// Whether the body was whole and right: every byte the pattern's, as many as the request
    /// declared and as the scenario sends. `Err` says what was wrong.
    fn check(&self) -> Result<(), String> {
        if self.size != SNAPSHOT_SIZE as u64 {
            return Err(format!(
                "InstallSnapshot declares {} bytes, expected {SNAPSHOT_SIZE}",
                self.size
            ));
        }
        self.body.finish(self.size)
    }
}

/// What one connection receives of snapshots: the transfers under way, by request id.
pub(crate) struct Snapshots {
    transfers: HashMap<u64, Transfer>,
    findings: Findings,
}

/// A message taken by [`Snapshots::take`].
pub(crate) enum Taken {
    /// Part of a snapshot transfer: nothing to answer yet, or the transfer's answer.
    Snapshot(Option<Message>),
    /// Any other message: a request for whoever answers requests.
    Request(Message),
}

impl Snapshots {
    pub(crate) fn new(findings: Findings) -> Snapshots {
        Snapshots {
            transfers: HashMap::new(),
            findings,
        }
    }

    /// Take a message: a snapshot's request or chunk (its body is read and checked, not
    /// stored; the answer follows the last chunk), or hand back any other request. `Err`: a
    /// chunk of no transfer (the connection is broken).
    pub(crate) fn take(&mut self, id: u64, message: Message) -> Result<Taken, String> {
        match message {
            Message::InstallSnapshot(request) => {
                self.transfers.insert(
                    id,
                    Transfer {
                        term: request.term,
                        size: request.size as u64,
                        body: BodyCheck::new(),
                    },
                );
                Ok(Taken::Snapshot(None))
            }
            Message::SnapshotChunk { data, last } => {
                let transfer = self
                    .transfers
                    .get_mut(&id)
                    .ok_or_else(|| format!("a snapshot chunk for {id}, which sent no request"))?;
                transfer.body.feed(&data);
                if !last {
                    return Ok(Taken::Snapshot(None));
                }
                let transfer = self.transfers.remove(&id).expect("present");
                let checked = transfer.check();
                if let Err(e) = &checked {
                    self.findings.report(e.clone());
                }
                Ok(Taken::Snapshot(Some(Message::InstallSnapshotResponse(
                    messages::InstallSnapshotResponse {
                        protocol_version: 3,
                        id: buf(FOLLOWER_ID),
                        addr: buf(FOLLOWER_ADDR),
                        term: transfer.term,
                        success: checked.is_ok(),
                    },
                ))))
            }
            request => Ok(Taken::Request(request)),
        }
    }
}

/// How the server's connections are served: the design of [`super::connection`] (a reader
/// task, a writer task, requests routed as [`Routing`] says), or the direct design
/// ([`super::direct`]: one task per connection answers in place and writes its answers in
/// batches), over mutual TLS if it holds an acceptor (`--tls`).
#[derive(Clone)]
pub(crate) enum Serving {
    Tasks(Routing),
    Direct(Option<tokio_rustls::TlsAcceptor>),
}

/// Bind 127.0.0.1:0, accept connections, serve each in its own tasks. Runs inside the server
/// runtime. Why a snapshot body was refused goes to `findings`.
pub(crate) async fn start_server(
    routing: Routing,
    findings: Findings,
) -> Result<SocketAddr, String> {
    start_serving(Serving::Tasks(routing), findings).await
}

/// [`start_server`] with either design.
pub(crate) async fn start_serving(
    serving: Serving,
    findings: Findings,
) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // On an accept error (e.g. out of file descriptors) stop accepting: dropping the
        // listener resets the connections still in its backlog, so their clients fail
        // instead of waiting forever.
        while let Ok((stream, _)) = listener.accept().await {
            match &serving {
                Serving::Tasks(routing) => {
                    tokio::spawn(serve_connection(stream, routing.clone(), findings.clone()));
                }
                Serving::Direct(tls) => {
                    tokio::spawn(super::direct::serve(stream, tls.clone(), findings.clone()));
                }
            }
        }
    });
    Ok(addr)
}

/// The consumer task: answers what the connection tasks hand it.
async fn consume(mut work: mpsc::Receiver<Work>) {
    while let Some(Work { id, request, reply }) = work.recv().await {
        if let Some(response) = answer(&request) {
            let _ = reply.send(encode(id, &response)).await;
        }
    }
}

/// One server connection: this task reads and routes requests, a writer task writes answers.
async fn serve_connection(stream: TcpStream, routing: Routing, findings: Findings) {
    let Ok((mut requests, reply)) = connection_ends(stream) else {
        return;
    };
    let mut snapshots = Snapshots::new(findings);
    while let Some(Ok(frame)) = requests.next().await {
        let Ok(Envelope { id, message }) = Message::decode(frame.freeze()) else {
            break;
        };
        let Ok(taken) = snapshots.take(id, message) else {
            break;
        };
        let response = match taken {
            Taken::Snapshot(response) => response,
            Taken::Request(request) => {
                let fast = routing.heartbeat_fast_path
                    && matches!(&request, Message::AppendEntries(r) if r.is_heartbeat());
                match &routing.consumer {
                    Some(consumer) if !fast => {
                        let work = Work {
                            id,
                            request,
                            reply: reply.clone(),
                        };
                        if consumer.send(work).await.is_err() {
                            break;
                        }
                        None
                    }
                    _ => answer(&request),
                }
            }
        };
        if let Some(response) = response
            && reply.send(encode(id, &response)).await.is_err()
        {
            break;
        }
    }
}
