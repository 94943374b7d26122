//! raftnet's hand-written msgpack codec against rmp-serde with serde-derived twins of the same
//! structs, and hashicorp/raft's format (`wire::hashicorp`) beside them, plus the measurement behind the encoder's large-payload threshold.
//!
//! `cargo bench --bench codec` runs everything; `cargo bench --bench codec -- threshold` runs only
//! the threshold group. Results and the machine they were taken on are in BENCHMARKS.md.
//!
//! raftnet's side includes the 16-byte frame header in both directions (encode writes it,
//! decode parses and validates it); rmp-serde's side has no framing at all.

mod support;

use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raftnet::message::{AppendEntriesRequest, Message};
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodec};
use raftnet::wire::native::{DEFAULT_MAX_BODY_LEN, FrameEncoder, HEADER_LEN, decode_body};
use raftnet::wire::{Codec, Flags, FrameHeader, Lane, SendQueue};

use support::{SerdeAppendEntries, append_entries, heartbeat, payload_len};

/// The scenarios of the encode/decode comparison.
fn scenarios() -> Vec<(&'static str, AppendEntriesRequest)> {
    vec![
        ("heartbeat", heartbeat()),
        ("1x100B", append_entries(1, 100)),
        ("64x1KiB", append_entries(64, 1024)),
        ("1x1MiB", append_entries(1, 1 << 20)),
    ]
}

fn throughput(request: &AppendEntriesRequest) -> Option<Throughput> {
    match payload_len(request) {
        0 => None,
        bytes => Some(Throughput::Bytes(bytes)),
    }
}

fn encode(c: &mut Criterion) {
    for (name, request) in scenarios() {
        let message = Message::from(request.clone());
        let twin = SerdeAppendEntries::from(&request);
        let mut group = c.benchmark_group(format!("encode/{name}"));
        if let Some(t) = throughput(&request) {
            group.throughput(t);
        }

        let encoder = FrameEncoder::new();
        let mut queue = SendQueue::new();
        group.bench_function("raftnet", |b| {
            b.iter(|| {
                encoder
                    .encode(
                        &mut queue,
                        black_box(support::REQUEST_ID),
                        Lane::Control,
                        Flags::NONE,
                        black_box(&message),
                    )
                    .unwrap();
                black_box(&queue);
                queue.clear();
            })
        });

        // hashicorp/raft's format (wire::hashicorp): no frame header; the codec remembers each
        // request it encodes to match its answer, so it is replaced every 4096 requests to keep
        // that queue from growing through the run.
        let mut codec = HashicorpCodec::new(GoRaftVersion::Latest, false);
        let mut encoded = 0u32;
        group.bench_function("hashicorp", |b| {
            b.iter(|| {
                encoded += 1;
                if encoded.is_multiple_of(4096) {
                    codec = HashicorpCodec::new(GoRaftVersion::Latest, false);
                }
                codec
                    .encode(
                        &mut queue,
                        black_box(support::REQUEST_ID),
                        Lane::Control,
                        black_box(&message),
                    )
                    .unwrap();
                black_box(&queue);
                queue.clear();
            })
        });

        let mut vec = Vec::new();
        group.bench_function("rmp_serde", |b| {
            b.iter(|| {
                vec.clear();
                rmp_serde::encode::write(&mut vec, black_box(&twin)).unwrap();
                black_box(&vec);
            })
        });
        group.finish();
    }
}

fn decode(c: &mut Criterion) {
    for (name, request) in scenarios() {
        let frame = support::native_frame(&Message::from(request.clone()));
        let serde_body = rmp_serde::to_vec(&SerdeAppendEntries::from(&request)).unwrap();
        support::check_same_wire_bytes(&request, &frame, &serde_body);

        let mut group = c.benchmark_group(format!("decode/{name}"));
        if let Some(t) = throughput(&request) {
            group.throughput(t);
        }

        group.bench_function("raftnet", |b| {
            b.iter(|| {
                let frame: &Bytes = black_box(&frame);
                let head = frame.first_chunk::<HEADER_LEN>().unwrap();
                let header = FrameHeader::parse(head, DEFAULT_MAX_BODY_LEN).unwrap();
                decode_body(header.kind, &frame.slice(HEADER_LEN..)).unwrap()
            })
        });

        // The same request in hashicorp/raft's format, its body decoded from a frame cut out of
        // the stream once (as raftnet's side decodes a frame already read): the scan that finds
        // where a value ends is not in this number.
        let hashicorp_frame = {
            let mut queue = SendQueue::new();
            HashicorpCodec::new(GoRaftVersion::Latest, false)
                .encode(
                    &mut queue,
                    1,
                    Lane::Control,
                    &Message::from(request.clone()),
                )
                .unwrap();
            let mut input = BytesMut::from(&queue.to_vec()[..]);
            HashicorpCodec::new(GoRaftVersion::Latest, true)
                .decode_frame(&mut input)
                .unwrap()
                .unwrap()
        };
        let mut codec = HashicorpCodec::new(GoRaftVersion::Latest, true);
        group.bench_function("hashicorp", |b| {
            b.iter(|| codec.decode_body(black_box(&hashicorp_frame)).unwrap())
        });

        group.bench_function("rmp_serde", |b| {
            b.iter(|| rmp_serde::from_slice::<SerdeAppendEntries>(black_box(&serde_body)).unwrap())
        });
        group.finish();
    }
}

/// A connected loopback pair: the sending side, and a thread on the accepting side that reads
/// and discards everything until the sender closes.
fn loopback_sink() -> (TcpStream, thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let sender = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (mut receiver, _) = listener.accept().expect("accept");
    sender.set_nodelay(true).unwrap();
    receiver.set_nodelay(true).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match receiver.read(&mut buf) {
                Ok(0) => return total,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("loopback read: {e}"),
            }
        }
    });
    (sender, reader)
}

/// Write everything in `queue` with vectored writes, as the reactor will.
fn write_queue(stream: &mut TcpStream, queue: &mut SendQueue) {
    while !queue.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = queue.io_slices(&mut slices);
            stream.write_vectored(&slices[..n]).expect("write_vectored")
        };
        queue.advance(written);
    }
    queue.clear();
}

/// Copy every payload into the frame buffer (one iovec) or queue each as its own segment
/// (an iovec per payload plus one per gap between them), then write the frame to a socket.
fn threshold(c: &mut Criterion) {
    const ENTRIES: usize = 16;
    const SIZES: [usize; 8] = [
        256,
        512,
        1 << 10,
        2 << 10,
        4 << 10,
        8 << 10,
        16 << 10,
        64 << 10,
    ];

    let (mut stream, reader) = loopback_sink();
    let mut sent = 0u64;
    let mut group = c.benchmark_group("threshold");
    for size in SIZES {
        let message = Message::from(append_entries(ENTRIES, size));
        group.throughput(Throughput::Bytes((ENTRIES * size) as u64));
        for (name, limit) in [("copy", usize::MAX), ("segment", 0)] {
            let encoder = FrameEncoder::new().with_large_payload_threshold(limit);
            let mut queue = SendQueue::new();
            group.bench_with_input(BenchmarkId::new(name, size), &message, |b, message| {
                b.iter(|| {
                    encoder
                        .encode(
                            &mut queue,
                            support::REQUEST_ID,
                            Lane::Pipeline,
                            Flags::NONE,
                            message,
                        )
                        .unwrap();
                    sent += queue.len() as u64;
                    write_queue(&mut stream, &mut queue);
                })
            });
        }
    }
    group.finish();
    drop(stream);
    let received = reader.join().expect("reader thread");
    assert_eq!(received, sent, "the reader saw every byte written");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, decode, threshold
}
criterion_main!(benches);
