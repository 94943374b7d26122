//! One end of a connection: `TCP_NODELAY`, the frames read from it, and a writer task that
//! batches the frames queued to it.

use bytes::Bytes;
use futures::SinkExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::frame::codec;

/// Frames a connection's writer channel holds (a common channel size). It bounds how much
/// background data can queue in user space ahead of a heartbeat in `heartbeat-under-load`
/// (32 snapshot chunks = 8 MiB, or the 8 in-flight 1 MiB entries); the sockets' kernel buffers
/// hold more. Measured here: 32 costs the 128-deep pipelines nothing against 128, while 8 costs
/// them about 30 %; 128 raised the under-load heartbeat p50 by about half.
const WRITE_QUEUE: usize = 32;

/// The writer task of one connection end: batched writes. It waits for a frame, `feed`s it and
/// every other frame already queued (`feed` writes only when the codec's buffer passes its
/// backpressure boundary), then `flush`es once.
async fn write_frames(
    mut sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    mut frames: mpsc::Receiver<Bytes>,
) {
    while let Some(frame) = frames.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        while let Ok(frame) = frames.try_recv() {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return;
        }
    }
}

/// Set `TCP_NODELAY`, split the stream, and start its writer task ([`write_frames`]) on the
/// current runtime: the frames to read, and where to queue frames to write. (Also the
/// connection of the openraft cluster's tokio network, `crate::cluster`.)
pub(crate) fn connection_ends(
    stream: TcpStream,
) -> std::io::Result<(
    FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    mpsc::Sender<Bytes>,
)> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let (frames, queued) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(write_frames(FramedWrite::new(write, codec()), queued));
    Ok((FramedRead::new(read, codec()), frames))
}
