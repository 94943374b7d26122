//! Zero-copy, proven: decoded payloads point into the buffer the bytes were received in, the
//! decoder allocates nothing per entry beyond the entries vector, and the encoder hands large
//! payloads to the send queue without copying them.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use common::wire::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

/// Counts allocations made by the current thread while counting is switched on, so the test
/// harness's other threads do not disturb the count.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the thread-local counters neither allocate nor touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same layout the caller gave us, forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (every allocation does).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarded unchanged; `ptr` and `layout` come from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(Cell::get))
}

fn append_with(entries: usize, size: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader {
            protocol_version: 3,
            id: Some("n1".into()),
            addr: Some("10.0.0.1:7000".into()),
        },
        term: 4,
        prev_log_entry: 100,
        prev_log_term: 4,
        leader_commit_index: 90,
        entries: (0..entries)
            .map(|i| Log {
                extensions: Some(Bytes::from(vec![0xee; 8])),
                appended_at: Timestamp::now(),
                ..Log::command(101 + i as u64, 4, vec![i as u8; size])
            })
            .collect(),
        ..Default::default()
    }
}

fn within(inner: &[u8], outer: std::ops::Range<usize>) -> bool {
    let start = inner.as_ptr() as usize;
    outer.contains(&start) && start + inner.len() <= outer.end
}

#[test]
fn decoded_payloads_are_slices_of_the_receive_buffer() {
    let request = append_with(64, 1024);
    let stream = encode_stream(
        &FrameEncoder::new(),
        &[Frame {
            request_id: 1,
            lane: Lane::Pipeline,
            flags: Flags::NONE,
            message: request.clone().into(),
        }],
    );
    // The "socket read" lands in this buffer.
    let mut buf = BytesMut::with_capacity(stream.len());
    buf.extend_from_slice(&stream);
    let received = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();

    let mut decoder = FrameDecoder::new();
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    let Message::Request(Request::AppendEntries(decoded)) = frame.message else {
        panic!("not an AppendEntries");
    };
    assert_eq!(decoded, request);
    for log in &decoded.entries {
        let data = log.data.as_ref().unwrap();
        let ext = log.extensions.as_ref().unwrap();
        assert!(within(data, received.clone()), "entry data was copied");
        assert!(
            within(ext, received.clone()),
            "entry extensions were copied"
        );
    }
    assert!(within(
        decoded.header.addr.as_ref().unwrap(),
        received.clone()
    ));
}

#[test]
fn decoding_allocates_only_the_entries_vector() {
    let request = append_with(64, 1024);
    let bytes = encode_frame(1, &request.clone().into());
    let mut buf = BytesMut::with_capacity(bytes.len());
    buf.extend_from_slice(&bytes);
    let mut decoder = FrameDecoder::new().without_preamble();

    let (frame, allocations) = count_allocations(|| decoder.decode(&mut buf).unwrap().unwrap());
    // One for the entries vector, and at most one more: `bytes` turns the buffer into a shared,
    // reference-counted one on its first split. Nothing per entry.
    assert!(
        allocations <= 2,
        "{allocations} allocations decoding 64 entries"
    );
    assert_eq!(frame.message, request.into());

    // A second frame from the same (already shared) buffer: just the vector.
    let mut buf = BytesMut::with_capacity(bytes.len() * 2);
    buf.extend_from_slice(&bytes);
    buf.extend_from_slice(&bytes);
    let mut decoder = FrameDecoder::new().without_preamble();
    decoder.decode(&mut buf).unwrap().unwrap();
    let (_, allocations) = count_allocations(|| decoder.decode(&mut buf).unwrap().unwrap());
    assert_eq!(allocations, 1, "only the entries vector");
}

#[test]
fn encoder_queues_large_payloads_without_copying() {
    let request = append_with(4, 64 * 1024);
    let mut queue = SendQueue::new();
    let encoder = FrameEncoder::new();
    encoder
        .encode(
            &mut queue,
            1,
            Lane::Pipeline,
            Flags::NONE,
            &request.clone().into(),
        )
        .unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 32];
    let n = queue.io_slices(&mut slices);
    for log in &request.entries {
        let data = log.data.as_ref().unwrap();
        assert!(
            slices[..n]
                .iter()
                .any(|s| s.as_ptr() == data.as_ptr() && s.len() == data.len()),
            "a large payload was copied instead of queued"
        );
    }
    // And small payloads are packed: one heartbeat-sized frame per call, all in one segment.
    let mut queue = SendQueue::new();
    for id in 0..100 {
        encoder
            .encode(
                &mut queue,
                id,
                Lane::Heartbeat,
                Flags::NONE,
                &append_with(0, 0).into(),
            )
            .unwrap();
    }
    assert_eq!(queue.segment_count(), 1);
}
