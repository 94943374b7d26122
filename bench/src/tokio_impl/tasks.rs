//! The `tasks` design's callers ([`Design::Tasks`](super::Design)): requests multiplexed by id
//! over a shared client, its reader and writer tasks per connection end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::check::Answer;
use crate::scenario::{
    BULK_PIPELINE_DEPTH, Control, FAN_IN_CONNECTIONS, PIPELINE_DEPTH, SNAPSHOT_SIZE, Sample,
    Scenario,
};
use crate::tokio_net::Message;
use crate::tokio_net::client::Client;
use crate::tokio_net::frame::{Wire, codec, encode};
use crate::tokio_net::requests::{Snapshot, append_entries, heartbeat, request_vote};

use super::{answer_of, join};
/// One caller: the next request when the previous answer arrived.
pub(super) async fn sequential(
    client: &Client<Message>,
    request: &Message,
    expected: Answer,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        answer_of(&client.call(request).await?).check(expected)?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// Keep `depth` requests in flight on the connection; latency = time in flight. Every
/// completion is recorded (a `Vec` push is a few ns, well under 1 % of the cheapest op here).
async fn pipelined(
    client: &Client<Message>,
    request: &Message,
    expected: Answer,
    depth: usize,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let issue = || async {
        let start = Instant::now();
        (start, client.call(request).await)
    };
    let mut sample = Sample::default();
    let mut in_flight: FuturesUnordered<_> = (0..depth).map(|_| issue()).collect();
    while let Some((start, response)) = in_flight.next().await {
        answer_of(&response?).check(expected)?;
        sample.record(control, start.elapsed(), payload);
        if !control.stopped() {
            in_flight.push(issue());
        }
    }
    Ok(sample)
}

/// One snapshot transfer after another; op = one transfer.
async fn snapshots(client: &Client<Message>, control: &Control) -> Result<Sample, String> {
    let snapshot = Snapshot::new();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        answer_of(&client.install_snapshot(&snapshot).await?).check(Answer::snapshot())?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

/// `fan-in-1000`: each connection is its own task with its own `TcpStream`, doing sequential
/// heartbeats: a write of the whole frame per request (the frame carries its length,
/// `crate::tokio_net::frame`), then the answer read with `LengthDelimitedCodec`.
async fn fan_in_connection(
    addr: SocketAddr,
    request: Arc<Message>,
    control: Control,
) -> Result<Sample, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut answers = FramedRead::new(read, codec());
    let mut sample = Sample::default();
    let mut id = 0;
    while !control.stopped() {
        id += 1;
        let start = Instant::now();
        write
            .write_all(&encode(id, &request))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let frame = answers
            .next()
            .await
            .ok_or("connection closed")?
            .map_err(|e| format!("receive: {e}"))?;
        let envelope = Message::decode(frame.freeze())?;
        if envelope.id != id {
            return Err(format!("answer to {} while waiting for {id}", envelope.id));
        }
        answer_of(&envelope.message).check(Answer::heartbeat())?;
        sample.record(&control, start.elapsed(), 0);
    }
    Ok(sample)
}

/// The direct design's sequential caller: it owns the connection, writes a request, reads
/// its answer (no task between it and the socket).
/// The client side of a scenario: runs as a task on the client runtime.
pub(super) async fn drive(
    scenario: Scenario,
    addr: SocketAddr,
    control: Control,
) -> Result<Sample, String> {
    if scenario == Scenario::FanIn1000 {
        let request = Arc::new(heartbeat());
        let tasks: Vec<_> = (0..FAN_IN_CONNECTIONS)
            .map(|_| tokio::spawn(fan_in_connection(addr, request.clone(), control.clone())))
            .collect();
        let mut sample = Sample::default();
        let mut failure = None;
        for task in tasks {
            match join(task).await {
                Ok(s) => sample.merge(s),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        return match failure {
            Some(e) => Err(format!("fan-in-1000: {e}")),
            None => Ok(sample),
        };
    }

    if scenario == Scenario::HandshakeSeq {
        // A connection per call: its reader and writer tasks end when the client is dropped.
        let mut sample = Sample::default();
        while !control.stopped() {
            let start = Instant::now();
            let client = Client::<Message>::connect(addr).await?;
            answer_of(&client.call(&heartbeat()).await?).check(Answer::heartbeat())?;
            drop(client);
            sample.record(&control, start.elapsed(), 0);
        }
        return Ok(sample);
    }

    let client = Client::<Message>::connect(addr).await?;
    let payload = |s: Scenario| s.entries().map_or(0, |(n, size)| (n * size) as u64);
    match scenario {
        Scenario::HeartbeatSeq => {
            sequential(&client, &heartbeat(), Answer::heartbeat(), 0, &control).await
        }
        Scenario::VoteSeq => {
            sequential(&client, &request_vote(), Answer::vote(), 0, &control).await
        }
        Scenario::Append100bSeq => {
            let request = append_entries(1, 100);
            let expected = Answer::append(1);
            sequential(&client, &request, expected, payload(scenario), &control).await
        }
        Scenario::HeartbeatPipelined => {
            let expected = Answer::heartbeat();
            pipelined(&client, &heartbeat(), expected, PIPELINE_DEPTH, 0, &control).await
        }
        Scenario::Append64x1kPipelined => {
            let request = append_entries(64, 1024);
            let (expected, depth) = (Answer::append(64), PIPELINE_DEPTH);
            pipelined(
                &client,
                &request,
                expected,
                depth,
                payload(scenario),
                &control,
            )
            .await
        }
        Scenario::Append1mPipelined => {
            let request = append_entries(1, 1 << 20);
            let (expected, depth) = (Answer::append(1), BULK_PIPELINE_DEPTH);
            pipelined(
                &client,
                &request,
                expected,
                depth,
                payload(scenario),
                &control,
            )
            .await
        }
        Scenario::Snapshot64m => snapshots(&client, &control).await,
        Scenario::HeartbeatUnderLoad => {
            // Heartbeats get a connection of their own, as raftnet's get a lane of their own
            // (its pools are per lane): on the one multiplexed connection that the load uses,
            // a heartbeat's frame would queue behind snapshot chunks and 1 MiB entries in the
            // writer channel, the socket buffers and the server's reader task (head-of-line
            // blocking), which this baseline measured until lanes were compared with lanes.
            // The load (snapshots and appends) shares the other connection.
            let heartbeat_client = Client::<Message>::connect(addr).await?;
            let snapshot_client = client.clone();
            let snapshot_control = control.clone();
            let snapshot =
                tokio::spawn(async move { snapshots(&snapshot_client, &snapshot_control).await });
            let bulk_client = client.clone();
            let bulk_control = control.clone();
            let bulk = tokio::spawn(async move {
                let request = append_entries(1, 1 << 20);
                let (expected, depth) = (Answer::append(1), BULK_PIPELINE_DEPTH);
                pipelined(
                    &bulk_client,
                    &request,
                    expected,
                    depth,
                    1 << 20,
                    &bulk_control,
                )
                .await
            });
            let heartbeats = sequential(
                &heartbeat_client,
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
        Scenario::FanIn1000 | Scenario::HandshakeSeq => unreachable!("handled above"),
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
