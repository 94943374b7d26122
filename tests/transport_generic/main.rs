//! hashicorp/raft's generic `transport_test.go` (6 tests) and `inmem_transport_test.go`
//! (2 tests), plus contract behaviour those suites leave untested (the "gaps") that the
//! `Transport` docs promise.
//!
//! hashicorp runs the generic suite over every `LoopbackTransport`, which in practice means only
//! the in-memory one. Here every generic test is a function over `T: Fixture` (how to
//! build a connected server/client pair of some [`Transport`]) and runs against
//! [`NetTransport`] with its reactor on a thread of its own (epoll, [`Backend::Epoll`]), the same
//! on io_uring ([`Backend::Uring`]; skipped with the reason printed where io_uring cannot run),
//! [`NetTransport`] with its reactor as a task on a tokio runtime ([`NetTransport::bind_on`]),
//! [`NetTransport`] on the reference driver ([`Placement::ThreadPerConnection`]),
//! [`NetTransport`] over mutual TLS on a thread, on io_uring and on the runtime (feature `tls`),
//! and [`InmemTransport`]: `net::<test>`, `net_uring::<test>`, `net_on_runtime::<test>`,
//! `net_thread_per_connection::<test>`, `net_tls::<test>`, `net_tls_uring::<test>`,
//! `net_tls_on_runtime::<test>` and `inmem::<test>`.
//!
//! Each test doc names the Go test it ports, numbered #17 to #24 after hashicorp_net.rs's #1 to
//! #16.
//!
//! The files: this one holds `for_every_transport!`, the list of generic tests it runs, and the
//! in-memory transport's own tests (#17, #18); the transports are in [`transports`], the
//! generic tests in [`transport_test`] (`transport_test.go`'s), [`gaps`] and [`batches`].

#[path = "../common/mod.rs"]
mod common;

mod batches;
mod gaps;
mod transport_test;
mod transports;

use std::time::Duration;

use common::fixtures::*;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

use batches::*;
use gaps::*;
use transport_test::*;
use transports::*;

/// Run each generic test against every transport. `#[inmem_ignore = "reason"]` before a name
/// ignores only the in-memory run (a library bug in `InmemTransport`, see the reason).
macro_rules! for_every_transport {
    ($($(#[inmem_ignore = $reason:literal])? $name:ident),* $(,)?) => {
        mod net {
            $(
                #[test]
                fn $name() {
                    super::$name::<raftnet::NetTransport>()
                }
            )*
        }

        mod net_uring {
            $(
                #[test]
                fn $name() {
                    if super::uring_runs(concat!("net_uring::", stringify!($name))) {
                        super::$name::<super::Uring>()
                    }
                }
            )*
        }

        mod net_on_runtime {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::OnRuntime>()
                }
            )*
        }

        mod net_thread_per_connection {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::ThreadPerConnection>()
                }
            )*
        }

        mod net_tls {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::Tls>()
                }
            )*
        }

        mod net_tls_uring {
            $(
                #[test]
                fn $name() {
                    if super::uring_runs(concat!("net_tls_uring::", stringify!($name))) {
                        super::$name::<super::TlsUring>()
                    }
                }
            )*
        }

        mod net_tls_on_runtime {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::TlsOnRuntime>()
                }
            )*
        }

        mod inmem {
            $(
                #[test]
                $(#[ignore = $reason])?
                fn $name() {
                    super::$name::<raftnet::InmemTransport>()
                }
            )*
        }
    };
}

for_every_transport!(
    start_stop,
    append_entries,
    append_entries_pipeline,
    request_vote,
    install_snapshot,
    encode_decode,
    timeout_now,
    request_pre_vote,
    remote_error_text_is_verbatim,
    dropped_rpc_answers_with_an_error,
    wrong_response_type_is_an_error,
    snapshot_reader_shorter_than_size,
    snapshot_reader_longer_than_size,
    unreachable_target,
    calls_to_a_closed_transport_are_unreachable,
    per_call_deadline,
    call_wait,
    call_try_result,
    call_await_tokio,
    call_await_block_on,
    pipeline_close_fails_outstanding_futures,
    close_fails_outstanding_calls,
    close_fails_outstanding_pipeline_futures,
    batches_keep_order_and_answers_go_back_together,
    a_service_answers_in_place_and_gives_back_what_it_does_not_take,
    a_service_that_panics_or_blocks_answers_with_an_error,
    a_service_keeps_rpcs_and_answers_them_later_exactly_once,
    pipeline_batches_send_in_order_and_wait_for_room,
    snapshot_chunks_read_async_are_the_body_exactly,
    snapshot_bytes_send_exactly_size_bytes_or_fail,
);

pub(crate) fn default() -> CallOptions {
    CallOptions::default()
}

// ---- inmem_transport_test.go ------------------------------------------------------------------

/// #17 `TestInmemTransportImpl`, at compile time: `InmemTransport` is a `Transport` (usable as a
/// trait object, shareable across threads), and has hashicorp's `WithPeers` operations
/// (`Connect`, `Disconnect`, `DisconnectAll`) and `WithClose` (part of `Transport`).
const _: () = {
    fn transport<T: Transport + Send + Sync + 'static>() {}
    let _: fn() = transport::<InmemTransport>;
    let _: fn() = transport::<NetTransport>;
    let _: fn(&InmemTransport, &InmemTransport) = InmemTransport::connect;
    let _: fn(&InmemTransport, &ServerAddress) = InmemTransport::disconnect;
    let _: fn(&InmemTransport) = InmemTransport::disconnect_all;
};

/// #17 at run time: a boxed `dyn Transport`.
#[test]
fn inmem_transport_impl() {
    let transport: Box<dyn Transport> = Box::new(InmemTransport::new("inmem-impl"));
    assert_eq!(transport.local_addr(), ServerAddress::from("inmem-impl"));
    transport.close();
}

/// #18 `TestInmemTransportWriteTimeout`. hashicorp's consumer channel there is unbuffered, so
/// once the responder stops, the send itself times out ("send timed out"). raftnet's consumer
/// queue is unbounded, so the faithful adaptation is: with a short timeout, the first call is
/// answered (LastLog 1), and with nobody answering any more the next one fails with exactly
/// `Error::Timeout`. (The timeout is 2 s rather than 10 ms so the first call cannot time out on
/// a slow machine.)
#[test]
fn inmem_write_timeout() {
    let (server, client) = InmemTransport::pair_with_timeout(Duration::from_secs(2));
    let responder = answer_with(server.consumer(), 1, |_| {
        Ok(AppendEntriesResponse {
            success: true,
            last_log: 1,
            ..Default::default()
        }
        .into())
    });
    let target = server.local_addr();
    let first = client.append_entries(&id(), &target, AppendEntriesRequest::default(), default());
    assert_eq!(finish(first).map(|r| r.last_log), Ok(1));
    join(responder);

    let second = client.append_entries(&id(), &target, AppendEntriesRequest::default(), default());
    assert_eq!(finish(second), Err(Error::Timeout));
}
