//! fan-in-1000's client side: a thousand sequential callers as tasks of one current-thread
//! runtime, with raftnet's client transport bound on it.

use std::sync::Arc;
use std::time::Instant;

use raftnet::{CallOptions, Config, NetTransport, ServerAddress, Transport};

use super::{append_answer, heartbeat, id};
use crate::check::Answer;
use crate::pin;
use crate::scenario::*;

/// `FAN_IN_CONNECTIONS` sequential callers as futures polled by one client thread, the thread
/// that runs `runtime` (a current-thread one): every call in flight holds its own pooled
/// connection, so there are that many connections.
///
/// raftnet's own rows bind the client on that runtime ([`client_on`]), as an application whose
/// callers are tasks would: callers and the driver's task then share the thread, as tokio's
/// client does its connections' tasks. A client on a driver thread of its own works too: its
/// callers then wait for wake-ups from that thread, about one per answer when the two threads
/// share a CPU across from the server (`--pin split`: 0.87x the runtime-bound client's ops/s),
/// and it is the faster of the two with everything on one CPU (1.09x; BENCHMARKS.md, "A lone
/// slice goes out by `send(2)`").
pub(super) fn fan_in(
    client: &NetTransport,
    to: &ServerAddress,
    control: &Control,
    runtime: &tokio::runtime::Runtime,
) -> Result<Sample, String> {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    pin::pin_client_thread();
    runtime.block_on(async {
        let mut callers: FuturesUnordered<_> = (0..FAN_IN_CONNECTIONS)
            .map(|_| async {
                let mut sample = Sample::default();
                while !control.stopped() {
                    let start = Instant::now();
                    let response = client
                        .append_entries(&id(), to, heartbeat(), CallOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    append_answer(&response).check(Answer::heartbeat())?;
                    sample.record(control, start.elapsed(), 0);
                }
                Ok::<Sample, String>(sample)
            })
            .collect();
        let mut total = Sample::default();
        while let Some(sample) = callers.next().await {
            total.merge(sample?);
        }
        Ok(total)
    })
}

/// A current-thread runtime for [`fan_in`]'s callers, made among the client's threads.
pub(super) fn fan_in_runtime() -> Result<tokio::runtime::Runtime, String> {
    pin::as_client(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    })
    .map_err(|e| format!("fan-in-1000's runtime: {e}"))
}

/// A client transport whose driver is a task on `runtime` (`bind_on`).
pub(super) fn client_on(
    config: Config,
    runtime: &tokio::runtime::Runtime,
) -> Result<Arc<NetTransport>, String> {
    let transport =
        pin::as_client(|| NetTransport::bind_on("127.0.0.1:0", None, config, runtime.handle()))
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
    super::driver_calls::count(&transport);
    Ok(transport)
}
