//! The linearizability checker: is there one order of the recorded operations, each taking
//! effect at an instant between its invocation and its answer, in which a single register per
//! key explains every answer?
//!
//! Wing and Gong's search with Lowe's memoisation, as porcupine does it: operations are walked
//! in invocation order; the first one that can take effect now (its model step is legal) is
//! linearized, and the search moves on; when an answer comes up whose operation has not been
//! linearized, the last choice is undone and the next one tried. A cache of (set of linearized
//! operations, register value) prunes every state reached twice. Keys are independent registers,
//! so each key's history is checked alone (P-compositionality), which keeps the search small.
//!
//! Operations whose outcome the client never learned (a timeout, a connection lost mid-call)
//! are recorded as [`Outcome::Unknown`]: they may have taken effect at any instant after their
//! invocation, up to the end of the history, or never. Operations that failed for certain (a
//! node that refused before proposing) are left out of the history by the recorder: they did
//! not happen.
//!
//! Why not a crate: stateright's `LinearizabilityTester` (the one well-kept Rust option) checks
//! histories it records itself, thread by thread, with one operation in flight per thread, and
//! searches without memoisation by recursion as deep as the history: fine for a model
//! checker's short histories, not for a minute of a cluster's operations.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A register operation as the client invoked it, with what it observed when it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read the value; `None` for a key never written.
    Read(Option<u64>),
    /// Write a value.
    Write(u64),
    /// Compare-and-set: write `new` if the value is `expected`. `succeeded` is what the answer
    /// said (ignored for an unknown outcome).
    Cas {
        /// The value the client expects.
        expected: u64,
        /// The value written if it matches.
        new: u64,
        /// Whether the answer said it matched and wrote.
        succeeded: bool,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered at this time (nanoseconds on the recorder's clock).
    Ok(u64),
    /// Never answered: it took effect once, at some instant after its invocation, or not at all.
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The register.
    pub key: String,
    /// Which client (for the report).
    pub client: u32,
    /// What was asked and observed.
    pub op: Op,
    /// When it was invoked (nanoseconds on the recorder's clock).
    pub invoked: u64,
    /// When and whether it was answered.
    pub outcome: Outcome,
}

/// What the checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// This key's history is not; `operations` is its whole history, for the report.
    Violation {
        /// The key.
        key: String,
        /// The key's operations, in invocation order.
        operations: Vec<Operation>,
    },
    /// The search for this key gave up after its step budget (neither proven nor refuted).
    Undecided {
        /// The key.
        key: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation { key, operations } => {
                writeln!(f, "key {key}: not linearizable; its history:")?;
                for op in operations {
                    writeln!(
                        f,
                        "  client {} {:?} invoked {} ns, {:?}",
                        op.client, op.op, op.invoked, op.outcome
                    )?;
                }
                Ok(())
            }
            Verdict::Undecided { key } => write!(f, "key {key}: undecided (search budget spent)"),
        }
    }
}

/// Search steps allowed per key before the key is reported [`Verdict::Undecided`].
pub const STEP_BUDGET: u64 = 20_000_000;

/// Check a whole history, key by key; the first key that fails decides the verdict.
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_register(&ops, STEP_BUDGET) {
            Some(true) => {}
            Some(false) => {
                let mut operations: Vec<Operation> = ops.into_iter().cloned().collect();
                operations.sort_by_key(|op| op.invoked);
                return Verdict::Violation {
                    key: key.to_string(),
                    operations,
                };
            }
            None => {
                return Verdict::Undecided {
                    key: key.to_string(),
                };
            }
        }
    }
    Verdict::Linearizable
}

/// The register's value: `None` until the first write.
type Value = Option<u64>;

/// One candidate effect of an operation on the register: the value after it, if it is legal
/// from `value`. An unknown operation has a second candidate, "no effect" (index 1).
fn step(op: &Op, unknown: bool, choice: u8, value: Value) -> Option<Value> {
    if choice == 1 {
        return unknown.then_some(value);
    }
    match *op {
        Op::Read(observed) => (unknown || observed == value).then_some(value),
        Op::Write(v) => Some(Some(v)),
        Op::Cas {
            expected,
            new,
            succeeded,
        } => {
            let matches = value == Some(expected);
            if unknown {
                // It took effect: it wrote if it matched; a non-match leaves the value, which
                // the "no effect" candidate already covers.
                matches.then_some(Some(new))
            } else if succeeded {
                matches.then_some(Some(new))
            } else {
                (!matches).then_some(value)
            }
        }
    }
}

/// An entry of the event list: the invocation or the answer of operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// The call's partner (the answer's index in the list), for lifting both out together.
    partner: usize,
    prev: usize,
    next: usize,
}

/// The doubly linked event list of the search; index 0 is the head sentinel.
struct Events {
    events: Vec<Event>,
}

const NIL: usize = usize::MAX;

impl Events {
    fn lift(&mut self, call: usize) {
        let ret = self.events[call].partner;
        for i in [call, ret] {
            let Event { prev, next, .. } = self.events[i];
            self.events[prev].next = next;
            if next != NIL {
                self.events[next].prev = prev;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.events[call].partner;
        for i in [ret, call] {
            let Event { prev, next, .. } = self.events[i];
            self.events[prev].next = i;
            if next != NIL {
                self.events[next].prev = i;
            }
        }
    }
}

/// `Some(true)` if linearizable, `Some(false)` if not, `None` if `budget` steps did not decide.
fn check_register(ops: &[&Operation], budget: u64) -> Option<bool> {
    // Values some answered operation saw: read, or expected by a compare-and-set.
    let observed: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match (o.op, o.outcome) {
            (Op::Read(Some(v)), Outcome::Ok(_)) => Some(v),
            (Op::Cas { expected, .. }, _) => Some(expected),
            _ => None,
        })
        .collect();
    // Left out, without changing the verdict: reads with an unknown outcome (they constrain
    // nothing), and unknown writes whose value nobody saw. Such a write, had it taken effect,
    // left a value no later operation observed before the next write replaced it (a read would
    // have returned it, a compare-and-set would have expected it), so every linearization with
    // it is one without it. Dropping them keeps the open-ended unknowns from multiplying the
    // search.
    let ops: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|o| match (o.op, o.outcome) {
            (Op::Read(_), Outcome::Unknown) => false,
            (Op::Write(v), Outcome::Unknown) | (Op::Cas { new: v, .. }, Outcome::Unknown) => {
                observed.contains(&v)
            }
            _ => true,
        })
        .collect();
    let n = ops.len();
    if n == 0 {
        return Some(true);
    }
    // (time, is_answer, op): at equal times invocations come first, so operations that touch
    // are taken as concurrent (the lenient reading of a clock's resolution).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.invoked, false, i));
        let answered = match op.outcome {
            Outcome::Ok(at) => at.max(op.invoked),
            Outcome::Unknown => u64::MAX,
        };
        order.push((answered, true, i));
    }
    order.sort();
    let mut events = Vec::with_capacity(2 * n + 1);
    events.push(Event {
        op: NIL,
        is_call: false,
        partner: NIL,
        prev: NIL,
        next: 1,
    });
    let mut call_at = vec![0; n];
    for (position, &(_, is_answer, op)) in order.iter().enumerate() {
        let index = position + 1;
        events.push(Event {
            op,
            is_call: !is_answer,
            partner: NIL,
            prev: index - 1,
            next: if index == 2 * n { NIL } else { index + 1 },
        });
        if is_answer {
            events[call_at[op]].partner = index;
        } else {
            call_at[op] = index;
        }
    }
    let mut list = Events { events };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    // (call event, choice taken, value before it, whether it was forced)
    let mut stack: Vec<(usize, u8, Value, bool)> = Vec::new();
    let mut value: Value = None;
    let mut entry = list.events[0].next;
    let mut first_choice = 0u8;
    let mut steps = 0u64;
    while list.events[0].next != NIL {
        steps += 1;
        if steps > budget {
            return None;
        }
        // The walk always meets an answer before the list ends (every answer follows its own
        // invocation), so `entry` is never NIL here; were it, it would count as a dead end.
        let event = (entry != NIL).then(|| list.events[entry]);
        match event {
            Some(event) if event.is_call => {
                let op = ops[event.op];
                let unknown = op.outcome == Outcome::Unknown;
                let mut taken = None;
                for choice in first_choice..2 {
                    if let Some(next) = step(&op.op, unknown, choice, value) {
                        let mut set = linearized.clone();
                        set[event.op / 64] |= 1 << (event.op % 64);
                        if cache.insert((set.clone(), next)) {
                            taken = Some((choice, next, set));
                            break;
                        }
                    }
                }
                first_choice = 0;
                // An operation that leaves the value as it is and has one candidate (an
                // answered read, or compare-and-set that did not match) is taken as soon as it
                // is legal, with no alternative kept: were there a linearization placing it
                // later, moving it here would change no value any other operation sees, and it
                // already follows everything that finished before it began. This keeps a crowd
                // of concurrent reads of one value from being tried in every order.
                let forced = !unknown
                    && matches!(
                        op.op,
                        Op::Read(_)
                            | Op::Cas {
                                succeeded: false,
                                ..
                            }
                    );
                match taken {
                    Some((choice, next, set)) => {
                        stack.push((entry, choice, value, forced));
                        value = next;
                        linearized = set;
                        list.lift(entry);
                        entry = list.events[0].next;
                    }
                    None => entry = event.next,
                }
            }
            _ => {
                // An answer whose operation is not linearized yet (or the end): undo the last
                // choice and try the next candidate after it.
                // Forced operations are undone without trying them elsewhere.
                loop {
                    let Some((call, choice, before, forced)) = stack.pop() else {
                        return Some(false);
                    };
                    list.unlift(call);
                    let op = list.events[call].op;
                    linearized[op / 64] &= !(1 << (op % 64));
                    value = before;
                    if forced {
                        continue;
                    }
                    entry = call;
                    first_choice = choice + 1;
                    if first_choice > 1 {
                        first_choice = 0;
                        entry = list.events[call].next;
                    }
                    break;
                }
            }
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, op: Op, invoked: u64, answered: Option<u64>) -> Operation {
        Operation {
            key: "k".into(),
            client,
            op,
            invoked,
            outcome: answered.map_or(Outcome::Unknown, Outcome::Ok),
        }
    }

    fn is_violation(history: &[Operation]) -> bool {
        matches!(check(history), Verdict::Violation { .. })
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            op(1, Op::Read(None), 0, Some(5)),
            op(1, Op::Write(1), 10, Some(15)),
            op(2, Op::Read(Some(1)), 20, Some(25)),
            op(
                2,
                Op::Cas {
                    expected: 1,
                    new: 2,
                    succeeded: true,
                },
                30,
                Some(35),
            ),
            op(
                1,
                Op::Cas {
                    expected: 1,
                    new: 3,
                    succeeded: false,
                },
                40,
                Some(45),
            ),
            op(1, Op::Read(Some(2)), 50, Some(55)),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        // The write was acknowledged, then a later read finds the key never written.
        let history = [
            op(1, Op::Write(1), 0, Some(10)),
            op(2, Op::Read(None), 20, Some(30)),
        ];
        assert!(is_violation(&history));
    }

    #[test]
    fn rejects_a_stale_read() {
        // 2 overwrote 1 before the read began, yet the read returns 1.
        let history = [
            op(1, Op::Write(1), 0, Some(10)),
            op(1, Op::Write(2), 20, Some(30)),
            op(2, Op::Read(Some(1)), 40, Some(50)),
        ];
        assert!(is_violation(&history));
        // The same read, concurrent with the second write, may see either value.
        let concurrent = [
            op(1, Op::Write(1), 0, Some(10)),
            op(1, Op::Write(2), 20, Some(60)),
            op(2, Op::Read(Some(1)), 40, Some(50)),
        ];
        assert_eq!(check(&concurrent), Verdict::Linearizable);
    }

    #[test]
    fn rejects_a_duplicated_write() {
        // Write 1 took effect, was overwritten by 2, then appeared again: applied twice.
        let history = [
            op(1, Op::Write(1), 0, Some(10)),
            op(2, Op::Write(2), 20, Some(30)),
            op(3, Op::Read(Some(2)), 40, Some(50)),
            op(3, Op::Read(Some(1)), 60, Some(70)),
        ];
        assert!(is_violation(&history));
        // A compare-and-set that succeeded twice: 1→2 applied, 2 overwritten back to 1 by a
        // write, and the value 2 shows up again with no operation left to write it.
        let cas_twice = [
            op(1, Op::Write(1), 0, Some(10)),
            op(
                2,
                Op::Cas {
                    expected: 1,
                    new: 2,
                    succeeded: true,
                },
                20,
                Some(30),
            ),
            op(1, Op::Write(1), 40, Some(50)),
            op(3, Op::Read(Some(2)), 60, Some(70)),
        ];
        assert!(is_violation(&cas_twice));
    }

    #[test]
    fn rejects_a_compare_and_set_that_lies() {
        // The value is 1 for certain, yet a compare-and-set expecting 1 reports no match.
        let history = [
            op(1, Op::Write(1), 0, Some(10)),
            op(
                2,
                Op::Cas {
                    expected: 1,
                    new: 2,
                    succeeded: false,
                },
                20,
                Some(30),
            ),
        ];
        assert!(is_violation(&history));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        // An unanswered write seen by a later read: it happened.
        let seen = [
            op(1, Op::Write(1), 0, None),
            op(2, Op::Read(Some(1)), 100, Some(110)),
        ];
        assert_eq!(check(&seen), Verdict::Linearizable);
        // One never seen: it did not (or not yet).
        let unseen = [
            op(1, Op::Write(1), 0, None),
            op(2, Op::Read(None), 100, Some(110)),
        ];
        assert_eq!(check(&unseen), Verdict::Linearizable);
        // It can take effect late, but only once: seen, then gone, then seen again is a
        // violation when a write in between is acknowledged.
        let twice = [
            op(1, Op::Write(1), 0, None),
            op(2, Op::Read(Some(1)), 100, Some(110)),
            op(2, Op::Write(2), 120, Some(130)),
            op(2, Op::Read(Some(2)), 140, Some(150)),
            op(2, Op::Read(Some(1)), 160, Some(170)),
        ];
        assert!(is_violation(&twice));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut history = vec![
            op(1, Op::Write(1), 0, Some(10)),
            op(2, Op::Read(Some(1)), 20, Some(30)),
        ];
        let mut other = op(3, Op::Read(None), 20, Some(30));
        other.key = "other".into();
        history.push(other);
        assert_eq!(check(&history), Verdict::Linearizable);
        let mut wrong = op(3, Op::Read(Some(1)), 20, Some(30));
        wrong.key = "other".into();
        history.push(wrong);
        assert_eq!(
            match check(&history) {
                Verdict::Violation { key, .. } => key,
                v => panic!("expected a violation, got {v}"),
            },
            "other"
        );
    }

    #[test]
    fn a_crowd_of_concurrent_reads_is_refuted_quickly() {
        // 40 overlapping reads of 1, then 2 written, then a read of 1: a stale read. Trying the
        // 40 reads in every order before refuting would take 2^40 steps.
        let mut history = vec![op(0, Op::Write(1), 0, Some(10))];
        for c in 0..40 {
            history.push(op(c + 1, Op::Read(Some(1)), 20 + c as u64, Some(1000)));
        }
        history.push(op(50, Op::Write(2), 1100, Some(1200)));
        history.push(op(51, Op::Read(Some(1)), 1300, Some(1400)));
        let ops: Vec<&Operation> = history.iter().collect();
        assert_eq!(check_register(&ops, 100_000), Some(false));
    }

    #[test]
    fn many_concurrent_clients_check_quickly() {
        // 16 clients, 4000 operations on one register, each read seeing the last write that
        // finished before it: linearizable, and found within the budget.
        let mut history = Vec::new();
        let mut last = None;
        for i in 0..4000u64 {
            let t = i * 10;
            let client = (i % 16) as u32;
            if i % 3 == 0 {
                history.push(op(client, Op::Write(i), t, Some(t + 25)));
                last = Some(i);
            } else if i % 7 == 0 {
                history.push(op(client, Op::Write(i + 1_000_000), t, None));
            } else {
                // Overlaps the write before it by less than its span: the read comes after it.
                history.push(op(client, Op::Read(last), t + 30, Some(t + 35)));
            }
        }
        let ops: Vec<&Operation> = history.iter().collect();
        assert_eq!(check_register(&ops, 2_000_000), Some(true));
    }
}
