//! [`ConnKey`]: how everything outside a connection names it.

use std::fmt;

/// Names one connection of an engine: its slot in the engine's slab and the generation the slot
/// had when the connection took it. A slot is reused once its connection closes, with a new
/// generation, so a key held for a closed connection (by a timer, a driver's event, an
/// answer from the Raft side) never reaches the connection that reuses the slot (h2's
/// `store::Key` "ABA guard").
///
/// A typed pair, never packed into a `usize`: drivers that need a number (a mio `Token`) use
/// [`index`](ConnKey::index) and check the generation against their own table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnKey {
    index: u32,
    generation: u32,
}

impl ConnKey {
    pub(crate) fn new(index: usize, generation: u32) -> ConnKey {
        let index = u32::try_from(index).expect("more than 2^32 connections");
        ConnKey { index, generation }
    }

    /// The connection's slot in the engine's slab (and in a driver's table of streams).
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }

    /// The key as one number, for the transport layer's response route (opaque there, and
    /// lossless on every target: a `u64`, never a `usize`).
    pub(crate) fn to_raw(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`to_raw`](Self::to_raw).
    pub(crate) fn from_raw(raw: u64) -> ConnKey {
        ConnKey {
            index: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

impl fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation)
    }
}

/// Hands out slab generations: never 0, so a default-built key matches nothing.
#[derive(Debug)]
pub(crate) struct Generations {
    next: u32,
}

impl Default for Generations {
    fn default() -> Self {
        Generations { next: 1 }
    }
}

impl Generations {
    pub(crate) fn next(&mut self) -> u32 {
        let generation = self.next;
        self.next = generation.checked_add(1).unwrap_or(1);
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_keeps_both_halves() {
        let key = ConnKey::new(7, u32::MAX);
        assert_eq!(ConnKey::from_raw(key.to_raw()), key);
        assert_eq!(key.index(), 7);
        assert_ne!(ConnKey::new(7, 1), ConnKey::new(7, 2));
    }

    #[test]
    fn generations_skip_zero_when_they_wrap() {
        let mut g = Generations { next: u32::MAX };
        assert_eq!(g.next(), u32::MAX);
        assert_eq!(g.next(), 1);
    }
}
