//! What every answer and every snapshot body must be, checked the same way on both sides of the
//! comparison, so that a figure can only be published for work that was actually done right.
//!
//! - [`Answer`]: the fields of an answer a Raft leader acts on (term, success or granted,
//!   `last_log`), in one shape for raftnet's messages and the tokio baseline's. Each scenario
//!   fixes what its answers must say ([`Answer::heartbeat`], [`Answer::append`],
//!   [`Answer::vote`], [`Answer::snapshot`]), from the constants both implementations build
//!   their requests from; a driver that gets anything else ends its run with an error (an error
//!   row in the output), whether the server answered wrong or the driver sent the wrong request.
//! - [`snapshot_body`] and [`BodyCheck`]: the snapshot body is a position-dependent pattern
//!   (pseudo-random bytes with a prime period), and the receiving side checks every byte and
//!   the length before it answers success. A flipped, lost, repeated or truncated byte anywhere
//!   in the 64 MiB, or chunks out of order, fail the transfer. The check reads the whole body
//!   once, at memory speed, on both sides alike, so it costs both the same CPU per transfer.
//! - [`Findings`]: where a receiving side writes down why it refused a body, so the error row
//!   says what was wrong and not only that the answer said `success: false`.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use crate::scenario::SNAPSHOT_SIZE;

/// The leader's term in every request but votes.
pub const TERM: u64 = 7;
/// The candidate's term in `vote-seq`.
pub const VOTE_TERM: u64 = TERM + 1;
/// The log index the append scenarios' entries follow (entries are `PREV_INDEX + 1`, …).
pub const PREV_INDEX: u64 = 1000;

/// The fields of an answer that a Raft leader acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An AppendEntries answer.
    Append {
        /// The follower's term.
        term: u64,
        /// Whether the entries were accepted.
        success: bool,
        /// The follower's last log index after the request.
        last_log: u64,
    },
    /// A RequestVote answer.
    Vote {
        /// The voter's term.
        term: u64,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// An InstallSnapshot answer.
    Snapshot {
        /// The follower's term.
        term: u64,
        /// Whether the whole body arrived intact.
        success: bool,
    },
    /// Any other message where an answer was expected.
    Other(&'static str),
}

impl Answer {
    /// A heartbeat's answer: no entries, so `last_log` is the request's `prev_log_entry`, 0.
    pub fn heartbeat() -> Answer {
        Answer::Append {
            term: TERM,
            success: true,
            last_log: 0,
        }
    }

    /// The answer to an AppendEntries of `entries` entries following [`PREV_INDEX`].
    pub fn append(entries: usize) -> Answer {
        Answer::Append {
            term: TERM,
            success: true,
            last_log: PREV_INDEX + entries as u64,
        }
    }

    /// The answer to `vote-seq`'s RequestVote.
    pub fn vote() -> Answer {
        Answer::Vote {
            term: VOTE_TERM,
            granted: true,
        }
    }

    /// The answer to a snapshot transfer whose body arrived intact.
    pub fn snapshot() -> Answer {
        Answer::Snapshot {
            term: TERM,
            success: true,
        }
    }

    /// `Ok` if `self` (what arrived) is `expected`; otherwise the error that ends the run.
    pub fn check(self, expected: Answer) -> Result<(), String> {
        if self == expected {
            Ok(())
        } else {
            Err(format!("wrong answer: {self}, expected {expected}"))
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Answer::Append {
                term,
                success,
                last_log,
            } => write!(
                f,
                "AppendEntries(term {term}, success {success}, last_log {last_log})"
            ),
            Answer::Vote { term, granted } => {
                write!(f, "RequestVote(term {term}, granted {granted})")
            }
            Answer::Snapshot { term, success } => {
                write!(f, "InstallSnapshot(term {term}, success {success})")
            }
            Answer::Other(what) => write!(f, "{what}"),
        }
    }
}

/// What the receiving sides found wrong, shared by a run's server and its driver: the first
/// finding is kept, and the run's error names it.
#[derive(Debug, Clone, Default)]
pub struct Findings(Arc<Mutex<Option<String>>>);

impl Findings {
    /// Nothing found yet.
    pub fn new() -> Findings {
        Findings::default()
    }

    /// Write down `what` (the first finding wins).
    pub fn report(&self, what: String) {
        let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    /// The first finding, if any.
    pub fn first(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `result`, with the receiving side's finding added to its error.
    pub fn explain<T>(&self, result: Result<T, String>) -> Result<T, String> {
        result.map_err(|e| match self.first() {
            Some(found) => format!("{e} (receiver: {found})"),
            None => e,
        })
    }
}

/// The pattern's period: a prime, so no chunk size a transport would use (a power of two, a
/// multiple of a page) is a multiple of it, and a piece lost, repeated or moved by whole chunks
/// shifts the pattern and fails the check. (A shift by an exact multiple of this many bytes
/// with the length unchanged would pass; nothing in either transport cuts at such sizes.)
pub const PERIOD: usize = 65_521;

/// One period of the pattern: bytes of a xorshift generator (no shorter period, no constant
/// runs), made once per process.
fn period() -> &'static [u8] {
    static PERIOD_BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    PERIOD_BYTES.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    })
}

/// The snapshot body both implementations send: [`SNAPSHOT_SIZE`] bytes of the pattern, made
/// once per process and shared (each side reads or slices it; neither copies it to prepare a
/// transfer).
pub fn snapshot_body() -> Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| Bytes::from(pattern(SNAPSHOT_SIZE)))
        .clone()
}

/// `len` bytes of the pattern: byte `i` is byte `i % PERIOD` of one period.
pub fn pattern(len: usize) -> Vec<u8> {
    let period = period();
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let n = (len - body.len()).min(PERIOD);
        body.extend_from_slice(&period[..n]);
    }
    body
}

/// Checks a body against the pattern as its pieces arrive, in order, cut anywhere. It
/// compares each piece with the period (`memcmp`, at memory speed; the period stays in cache),
/// so it costs both sides the same: one read of every byte received.
#[derive(Debug, Default)]
pub struct BodyCheck {
    /// Bytes seen so far.
    offset: u64,
    /// The first wrong byte: its offset, what arrived, what was expected.
    first_wrong: Option<(u64, u8, u8)>,
}

impl BodyCheck {
    /// Nothing seen yet.
    pub fn new() -> BodyCheck {
        BodyCheck::default()
    }

    /// Check the next piece.
    pub fn feed(&mut self, mut piece: &[u8]) {
        let period = period();
        while !piece.is_empty() {
            let at = (self.offset % PERIOD as u64) as usize;
            let n = piece.len().min(PERIOD - at);
            let (got, want) = (&piece[..n], &period[at..at + n]);
            if self.first_wrong.is_none() && got != want {
                let i = got
                    .iter()
                    .zip(want)
                    .position(|(g, w)| g != w)
                    .expect("the pieces differ");
                self.first_wrong = Some((self.offset + i as u64, got[i], want[i]));
            }
            self.offset += n as u64;
            piece = &piece[n..];
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// `Ok` if exactly `expected_len` bytes of the pattern arrived.
    pub fn finish(&self, expected_len: u64) -> Result<(), String> {
        if let Some((at, got, want)) = self.first_wrong {
            return Err(format!(
                "snapshot body byte {at} is {got:#04x}, expected {want:#04x}"
            ));
        }
        if self.offset != expected_len {
            return Err(format!(
                "snapshot body is {} bytes, expected {expected_len}",
                self.offset
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pieces: &[&[u8]], len: u64) -> Result<(), String> {
        let mut c = BodyCheck::new();
        for p in pieces {
            c.feed(p);
        }
        c.finish(len)
    }

    #[test]
    fn the_pattern_passes_cut_anywhere() {
        let body = pattern(3 * PERIOD + 100);
        let len = body.len() as u64;
        assert_eq!(check(&[&body], len), Ok(()));
        for cut in [
            1,
            3,
            7,
            8,
            9,
            4096,
            PERIOD - 1,
            PERIOD,
            PERIOD + 1,
            2 * PERIOD + 7,
        ] {
            let (a, b) = body.split_at(cut);
            assert_eq!(check(&[a, b], len), Ok(()), "cut at {cut}");
        }
        let pieces: Vec<&[u8]> = body.chunks(13).collect();
        assert_eq!(check(&pieces, len), Ok(()));
    }

    #[test]
    fn any_wrong_byte_fails() {
        let body = pattern(5 * PERIOD);
        let len = body.len() as u64;
        for at in [
            0,
            1,
            7,
            8,
            4096,
            PERIOD - 1,
            PERIOD,
            3 * PERIOD + 5,
            5 * PERIOD - 1,
        ] {
            let mut bad = body.clone();
            bad[at] ^= 0x01;
            let err = check(&[&bad[..at / 2], &bad[at / 2..]], len).unwrap_err();
            assert!(err.contains(&format!("byte {at} ")), "{err}");
        }
        // Short, long, shifted (a lost byte), a constant body.
        assert!(check(&[&body[..len as usize - 1]], len).is_err());
        assert!(check(&[&body, &[0]], len).is_err());
        assert!(check(&[&body[1..], &[0]], len).is_err());
        assert!(check(&[&vec![0xa5; len as usize]], len).is_err());
        // Pieces in the wrong order, one repeated in place of another (256 KiB chunks, as the
        // tokio side sends, and 64 KiB ones).
        let big = pattern(1 << 20);
        for chunk in [256 << 10, 64 << 10] {
            let pieces: Vec<&[u8]> = big.chunks(chunk).collect();
            let mut swapped = pieces.clone();
            swapped.swap(1, 2);
            assert!(check(&swapped, big.len() as u64).is_err());
            let mut repeated = pieces.clone();
            repeated[2] = repeated[1];
            assert!(check(&repeated, big.len() as u64).is_err());
            assert_eq!(check(&pieces, big.len() as u64), Ok(()));
        }
        assert_eq!(snapshot_body().len(), SNAPSHOT_SIZE);
    }

    #[test]
    fn answers_are_compared_whole() {
        assert_eq!(Answer::append(1).check(Answer::append(1)), Ok(()));
        let wrong_term = Answer::Append {
            term: 6,
            success: true,
            last_log: PREV_INDEX + 1,
        };
        let err = wrong_term.check(Answer::append(1)).unwrap_err();
        assert!(err.contains("term 6") && err.contains("expected"), "{err}");
        assert!(Answer::append(64).check(Answer::append(1)).is_err());
        assert!(Answer::heartbeat().check(Answer::append(0)).is_err());
        assert!(
            Answer::Vote {
                term: VOTE_TERM,
                granted: false
            }
            .check(Answer::vote())
            .is_err()
        );
        assert!(Answer::Other("x").check(Answer::snapshot()).is_err());
    }

    #[test]
    fn findings_keep_the_first() {
        let f = Findings::new();
        assert_eq!(f.explain::<()>(Err("e".into())), Err("e".into()));
        f.report("one".into());
        f.report("two".into());
        assert_eq!(
            f.explain::<()>(Err("e".into())),
            Err("e (receiver: one)".into())
        );
    }
}
