//! Whether this machine's `memcpy` slows down when the destination sits a few bytes past the
//! source's offset within a 4 KiB page, a trap the TLS rows fall into by heap layout alone.
//!
//! On AMD Zen CPUs, glibc copies large blocks with `rep movsb` unless it has the fix for glibc
//! bug 30994 (Debian 12's 2.36 does not), and `rep movsb` runs several times slower there when
//! `(destination - source) mod 4096` is small but not zero.
//! rustls copies every received record's plaintext (16 KiB) from its receive buffer into a new
//! allocation; when that allocation lands right after the receive buffer on the heap (whose
//! capacity is a multiple of 4 KiB), the two are 16 bytes apart in the page and the record's
//! payload starts 5 bytes in, so every copy is 11 bytes out of step. Where that happens depends
//! on what else the reading thread allocated, not on the transport's design: the same code can
//! measure 0.5x or 1.1x its rival on the same machine (BENCHMARKS.md, "A memcpy trap decides
//! the TLS bulk rows").
//!
//! [`measure`] times 16 KiB copies at that offset and at a harmless one; [`note`] turns the two
//! rates into the warning `raftnet-bench` prints before its table, so that a reader comparing
//! transports knows the TLS bulk figures of this machine are a matter of luck.

use std::time::Instant;

/// The size of one copy: a full TLS record's plaintext.
const COPY: usize = 16 * 1024;
/// The offset of the destination within its page, past the source's, that rustls' records
/// meet (see the module doc).
pub const TRAP_DISTANCE: usize = 11;
/// A distance far from the trap.
const HARMLESS_DISTANCE: usize = 1024;
/// Bytes walked per pass: larger than the caches, as the copies of a bulk transfer are.
const SPAN: usize = 8 << 20;
/// A slowdown from this factor on is reported.
const REPORTED_FROM: f64 = 2.0;

/// The copy rates (bytes per second) at the trap's distance and at a harmless one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyRates {
    /// Destination [`TRAP_DISTANCE`] bytes past the source's page offset.
    pub trap: f64,
    /// Destination 1 KiB past it.
    pub harmless: f64,
}

/// Time 16 KiB copies at both distances, each the best of three passes over 8 MiB (tens of
/// milliseconds in all, most of it at the trap's distance where the trap is).
pub fn measure() -> CopyRates {
    let source = vec![1u8; SPAN + 2 * 4096];
    let mut destination = vec![2u8; SPAN + 2 * 4096];
    let mut best = |distance| {
        (0..3)
            .map(|_| copy_rate(&source, &mut destination, distance))
            .fold(0.0, f64::max)
    };
    CopyRates {
        trap: best(TRAP_DISTANCE),
        harmless: best(HARMLESS_DISTANCE),
    }
}

/// Bytes per second of 16 KiB copies from `source` to `destination` with the destination's page
/// offset `distance` bytes past the source's, over [`SPAN`].
fn copy_rate(source: &[u8], destination: &mut [u8], distance: usize) -> f64 {
    // Start the source 5 bytes into a page (a record's payload after its header) and the
    // destination `distance` further.
    let page_offset = |slice: &[u8]| slice.as_ptr() as usize % 4096;
    let from = (4096 + 5 - page_offset(source)) % 4096;
    let to = (4096 + 5 + distance - page_offset(destination)) % 4096;
    let stride = COPY + 4096;
    let started = Instant::now();
    let mut copied = 0usize;
    let mut at = 0;
    while at + stride < SPAN {
        destination[to + at..to + at + COPY].copy_from_slice(&source[from + at..from + at + COPY]);
        copied += COPY;
        at += stride;
    }
    std::hint::black_box(&destination);
    copied as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// The warning for `rates`, or `None` when copies at the trap's distance run at more than half
/// the harmless rate.
pub fn note(rates: CopyRates) -> Option<String> {
    let slowdown = rates.harmless / rates.trap;
    // NaN (nothing measured at either distance) is not a slowdown.
    if slowdown.is_nan() || slowdown < REPORTED_FROM {
        return None;
    }
    Some(format!(
        "this machine's memcpy copies 16 KiB {slowdown:.1}x slower ({:.1} against {:.1} GB/s) \
         when the destination's page offset is {TRAP_DISTANCE} bytes past the source's \
         (glibc's rep movsb on AMD Zen, glibc bug 30994). rustls' received plaintext can be \
         copied that way for a whole run, by heap layout alone, so the --tls bulk rows \
         (append-1m, snapshot-64m) of either implementation may be luck; \
         GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4294967295 takes the trap away",
        rates.trap / 1e9,
        rates.harmless / 1e9,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slowdown of 2x or more is reported with its figures; less is not, and neither is a
    /// rate of zero at the harmless distance (nothing measured).
    #[test]
    fn a_slowdown_of_two_or_more_is_reported_with_its_figures() {
        let seven = note(CopyRates {
            trap: 2.5e9,
            harmless: 17.5e9,
        })
        .expect("7x is reported");
        assert!(
            seven.contains("7.0x slower (2.5 against 17.5 GB/s)"),
            "{seven}"
        );
        assert!(seven.contains("11 bytes past"), "{seven}");
        assert!(
            note(CopyRates {
                trap: 5e9,
                harmless: 10e9
            })
            .is_some()
        );
        assert_eq!(
            note(CopyRates {
                trap: 9e9,
                harmless: 17.9e9
            }),
            None
        );
        assert_eq!(
            note(CopyRates {
                trap: 0.0,
                harmless: 0.0
            }),
            None
        );
    }

    /// Both rates are measured (positive and finite), whatever the machine.
    #[test]
    fn both_rates_are_measured() {
        let rates = measure();
        for rate in [rates.trap, rates.harmless] {
            assert!(rate.is_finite() && rate > 0.0, "{rates:?}");
        }
    }
}
