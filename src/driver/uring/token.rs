//! What a submission's user_data carries: the operation and the connection it is for, so a
//! completion finds its connection, and one for a connection that closed is told apart by its
//! generation.

use crate::engine::ConnKey;

/// What a submission was, in the low byte of its user_data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
    Wake = 1,
    Accept = 2,
    Connect = 3,
    Recv = 4,
    Send = 5,
    Cancel = 6,
    /// A zero-copy send: its token carries a slot of the driver's [`ZeroCopy`] holds, not a
    /// connection (`zero_copy.rs`).
    ///
    /// [`ZeroCopy`]: super::zero_copy::ZeroCopy
    SendZc = 7,
}

/// A submission's user_data: its [`Op`] (8 bits), its connection's slot index (24 bits) and the
/// slot's generation (32 bits). Operations of no connection carry index 0 and generation 0,
/// which no [`ConnKey`] has (generations start at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token(pub(super) u64);

/// Slot indexes a [`Token`] can carry.
pub(super) const MAX_INDEX: usize = (1 << 24) - 1;

impl Token {
    pub(super) fn new(op: Op, key: Option<ConnKey>) -> Token {
        let raw = key.map_or(0, |k| {
            let raw = k.to_raw();
            let (index, generation) = (raw & 0xffff_ffff, raw >> 32);
            debug_assert!(index as usize <= MAX_INDEX);
            (generation << 32) | (index << 8)
        });
        Token(raw | op as u64)
    }

    /// A token for slot `slot` (at most [`MAX_INDEX`]) of a table of the driver's own, with
    /// generation 0: for operations whose memory outlives their connection.
    pub(super) fn slot(op: Op, slot: usize) -> Token {
        debug_assert!(slot <= MAX_INDEX);
        Token(((slot as u64) << 8) | op as u64)
    }

    /// The slot a [`Token::slot`] carries.
    pub(super) fn slot_index(self) -> usize {
        ((self.0 >> 8) & 0xff_ffff) as usize
    }

    pub(super) fn op(self) -> Option<Op> {
        Some(match self.0 as u8 {
            1 => Op::Wake,
            2 => Op::Accept,
            3 => Op::Connect,
            4 => Op::Recv,
            5 => Op::Send,
            6 => Op::Cancel,
            7 => Op::SendZc,
            _ => return None,
        })
    }

    pub(super) fn key(self) -> ConnKey {
        let index = (self.0 >> 8) & 0xff_ffff;
        ConnKey::from_raw((self.0 >> 32) << 32 | index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_operation_and_the_whole_key() {
        let key = ConnKey::new(MAX_INDEX, u32::MAX);
        let token = Token::new(Op::Send, Some(key));
        assert_eq!(token.op(), Some(Op::Send));
        assert_eq!(token.key(), key);
        let other_generation = Token::new(Op::Send, Some(ConnKey::new(MAX_INDEX, 7)));
        assert_ne!(token, other_generation);
        assert_eq!(Token(0).op(), None);
        let held = Token::slot(Op::SendZc, MAX_INDEX);
        assert_eq!(
            (held.op(), held.slot_index()),
            (Some(Op::SendZc), MAX_INDEX)
        );
    }
}
