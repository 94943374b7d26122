//! The `direct` design's callers ([`Design::Direct`](super::Design)): each owns its connection
//! and does everything in place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_rustls::TlsConnector;

use crate::check::Answer;
use crate::scenario::{
    BULK_PIPELINE_DEPTH, Control, FAN_IN_CONNECTIONS, PIPELINE_DEPTH, SNAPSHOT_SIZE, Sample,
    Scenario,
};
use crate::tokio_net::Message;
use crate::tokio_net::direct::Connection;
use crate::tokio_net::requests::{Snapshot, append_entries, heartbeat, request_vote};

use super::{answer_of, join};

async fn sequential_direct(
    conn: &mut Connection,
    request: &Message,
    expected: Answer,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        answer_of(&conn.call(request).await?).check(expected)?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// The direct design's pipeline: one task owns the connection and keeps `depth` requests in
/// flight; every answer ready is taken, each replaced by a new request in the write buffer,
/// and the buffer is written once nothing more is ready. The server answers a connection's
/// requests in order, so answers come in the order sent (checked by id).
async fn pipelined_direct(
    conn: &mut Connection,
    request: &Message,
    expected: Answer,
    depth: usize,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let mut sample = Sample::default();
    let mut in_flight = std::collections::VecDeque::with_capacity(depth);
    for _ in 0..depth {
        in_flight.push_back((conn.queue(request)?, Instant::now()));
    }
    conn.flush().await?;
    while !in_flight.is_empty() {
        let mut answer = Some(conn.answer().await?);
        while let Some(envelope) = answer {
            let (id, start) = in_flight
                .pop_front()
                .ok_or("an answer to nothing in flight")?;
            if envelope.id != id {
                return Err(format!("answer to {} while waiting for {id}", envelope.id));
            }
            answer_of(&envelope.message).check(expected)?;
            sample.record(control, start.elapsed(), payload);
            if !control.stopped() {
                in_flight.push_back((conn.queue(request)?, Instant::now()));
                conn.flush_if_full().await?;
            }
            answer = if in_flight.is_empty() {
                None
            } else {
                conn.ready_answer()?
            };
        }
        conn.flush().await?;
    }
    Ok(sample)
}

/// The direct design's snapshots: the request and every chunk written in large batches, then
/// the answer.
async fn snapshots_direct(conn: &mut Connection, control: &Control) -> Result<Sample, String> {
    let snapshot = Snapshot::new();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        let id = conn.queue(&snapshot.request)?;
        for chunk in &snapshot.chunks {
            conn.queue_as(id, chunk)?;
            conn.flush_if_full().await?;
        }
        conn.flush().await?;
        let answer = conn.answer().await?;
        if answer.id != id {
            return Err(format!("answer to {} while waiting for {id}", answer.id));
        }
        answer_of(&answer.message).check(Answer::snapshot())?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

/// The client side of a scenario in the direct design (a task on the client runtime).
/// With `tls`, every connection is mutual TLS.
pub(super) async fn drive_direct(
    scenario: Scenario,
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    control: Control,
) -> Result<Sample, String> {
    let tls = tls.as_ref();
    let payload = |s: Scenario| s.entries().map_or(0, |(n, size)| (n * size) as u64);
    let pipelined_scenario = |mut conn: Connection, s: Scenario, control: Control| async move {
        let (request, expected, depth) = match s {
            Scenario::HeartbeatPipelined => (heartbeat(), Answer::heartbeat(), PIPELINE_DEPTH),
            Scenario::Append64x1kPipelined => {
                (append_entries(64, 1024), Answer::append(64), PIPELINE_DEPTH)
            }
            _ => (
                append_entries(1, 1 << 20),
                Answer::append(1),
                BULK_PIPELINE_DEPTH,
            ),
        };
        let bytes = payload(s);
        pipelined_direct(&mut conn, &request, expected, depth, bytes, &control).await
    };
    match scenario {
        Scenario::FanIn1000 => {
            let request = Arc::new(heartbeat());
            let tasks: Vec<_> = (0..FAN_IN_CONNECTIONS)
                .map(|_| {
                    let (request, control) = (request.clone(), control.clone());
                    let tls = tls.cloned();
                    tokio::spawn(async move {
                        let mut conn = Connection::connect(addr, tls.as_ref()).await?;
                        let expected = Answer::heartbeat();
                        sequential_direct(&mut conn, &request, expected, 0, &control).await
                    })
                })
                .collect();
            let mut sample = Sample::default();
            let mut failure = None;
            for task in tasks {
                match join(task).await {
                    Ok(s) => sample.merge(s),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            match failure {
                Some(e) => Err(format!("fan-in-1000: {e}")),
                None => Ok(sample),
            }
        }
        Scenario::HeartbeatSeq | Scenario::VoteSeq | Scenario::Append100bSeq => {
            let (request, expected) = match scenario {
                Scenario::HeartbeatSeq => (heartbeat(), Answer::heartbeat()),
                Scenario::VoteSeq => (request_vote(), Answer::vote()),
                _ => (append_entries(1, 100), Answer::append(1)),
            };
            let mut conn = Connection::connect(addr, tls).await?;
            let bytes = payload(scenario);
            sequential_direct(&mut conn, &request, expected, bytes, &control).await
        }
        Scenario::HandshakeSeq => {
            let mut sample = Sample::default();
            while !control.stopped() {
                let start = Instant::now();
                let mut conn = Connection::connect(addr, tls).await?;
                answer_of(&conn.call(&heartbeat()).await?).check(Answer::heartbeat())?;
                drop(conn);
                sample.record(&control, start.elapsed(), 0);
            }
            Ok(sample)
        }
        Scenario::HeartbeatPipelined
        | Scenario::Append64x1kPipelined
        | Scenario::Append1mPipelined => {
            let conn = Connection::connect(addr, tls).await?;
            pipelined_scenario(conn, scenario, control).await
        }
        Scenario::Snapshot64m => {
            let mut conn = Connection::connect(addr, tls).await?;
            snapshots_direct(&mut conn, &control).await
        }
        Scenario::HeartbeatUnderLoad => {
            // Each stream owns its connection (a task per connection is the design): the
            // heartbeats', the snapshots' and the 1 MiB appends'.
            let mut heartbeat_conn = Connection::connect(addr, tls).await?;
            let snapshot_conn = Connection::connect(addr, tls).await?;
            let bulk_conn = Connection::connect(addr, tls).await?;
            let snapshot_control = control.clone();
            let snapshot = tokio::spawn(async move {
                let mut conn = snapshot_conn;
                snapshots_direct(&mut conn, &snapshot_control).await
            });
            let bulk = tokio::spawn(pipelined_scenario(
                bulk_conn,
                Scenario::Append1mPipelined,
                control.clone(),
            ));
            let heartbeats = sequential_direct(
                &mut heartbeat_conn,
                &heartbeat(),
                Answer::heartbeat(),
                0,
                &control,
            )
            .await;
            let background = [join(snapshot).await, join(bulk).await];
            let mut sample = heartbeats?;
            for load in background {
                sample.payload_bytes += load?.payload_bytes;
            }
            Ok(sample)
        }
        Scenario::Cluster1
        | Scenario::Cluster16
        | Scenario::Cluster64
        | Scenario::ClusterBench1
        | Scenario::ClusterBench16
        | Scenario::ClusterBench64 => {
            unreachable!("TokioImpl::run hands these to crate::cluster")
        }
    }
}
