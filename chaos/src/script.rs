//! Faults on a timeline, written as text, one step per line:
//!
//! ```text
//! # at (ms)  direction  fault [arguments]
//! 0      both      delay 50 20        # 50 ms, plus up to 20 ms of jitter
//! 1000   forward   blackhole          # a one-way cut
//! 2500   both      heal
//! 3000   backward  pause
//! 3500   backward  heal
//! 4000   both      bandwidth 65536    # bytes per second
//! 4000   both      pieces 3           # writes of at most 3 bytes
//! 6000   both      drop rst           # or: drop fin
//! ```
//!
//! `direction` is `forward` (dialler to target), `backward`, or `both`. A step's fault replaces
//! that direction's faults of the same kind and keeps the others; `heal` clears them all.

use std::time::{Duration, Instant};

use crate::proxy::{Close, Direction, Faults, Link};

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delay and jitter.
    Delay(Duration, Duration),
    /// Bytes per second.
    Bandwidth(u64),
    /// Writes of at most this many bytes.
    Pieces(usize),
    /// Hold the bytes.
    Pause,
    /// Throw the bytes away.
    Blackhole,
    /// End every current connection.
    Drop(Close),
    /// Clear every fault.
    Heal,
}

/// One line of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When, from the start of the script.
    pub at: Duration,
    /// Which directions (both for `both`).
    pub directions: Vec<Direction>,
    /// What.
    pub action: Action,
}

/// Parse a script; the error names the line.
pub fn parse(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fail = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .ok_or_else(|| fail("missing a number"))?
                .parse()
                .map_err(|_| fail("not a number"))
        };
        if words.len() < 3 {
            return Err(fail("expected: AT_MS DIRECTION FAULT [ARGS]"));
        }
        let at = Duration::from_millis(number(0)?);
        let directions = match words[1] {
            "forward" => vec![Direction::Forward],
            "backward" => vec![Direction::Backward],
            "both" => Direction::BOTH.to_vec(),
            _ => return Err(fail("direction must be forward, backward or both")),
        };
        let action = match words[2] {
            "delay" => Action::Delay(
                Duration::from_millis(number(3)?),
                Duration::from_millis(if words.len() > 4 { number(4)? } else { 0 }),
            ),
            "bandwidth" => Action::Bandwidth(number(3)?),
            "pieces" => Action::Pieces(number(3)?.max(1) as usize),
            "pause" => Action::Pause,
            "blackhole" => Action::Blackhole,
            "drop" => match words.get(3).copied() {
                Some("fin") => Action::Drop(Close::Fin),
                Some("rst") | None => Action::Drop(Close::Rst),
                Some(_) => return Err(fail("drop takes fin or rst")),
            },
            "heal" => Action::Heal,
            _ => return Err(fail("unknown fault")),
        };
        steps.push(Step {
            at,
            directions,
            action,
        });
    }
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

/// Apply one step to a link.
pub fn apply(link: &Link, step: &Step) {
    if let Action::Drop(how) = step.action {
        link.drop_connections(how);
        return;
    }
    for &direction in &step.directions {
        link.update(direction, |faults| match step.action {
            Action::Delay(delay, jitter) => {
                faults.delay = delay;
                faults.jitter = jitter;
            }
            Action::Bandwidth(rate) => faults.bandwidth = Some(rate),
            Action::Pieces(n) => faults.pieces = Some(n),
            Action::Pause => faults.paused = true,
            Action::Blackhole => faults.blackhole = true,
            Action::Heal => *faults = Faults::none(),
            Action::Drop(_) => {}
        });
    }
}

/// Play a script on a link, each step at its time from now; `report` sees each step as it is
/// applied.
pub fn play(link: &Link, steps: &[Step], mut report: impl FnMut(&Step)) {
    let start = Instant::now();
    for step in steps {
        let due = start + step.at;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        apply(link, step);
        report(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault() {
        let steps = parse(
            "# a comment\n0 both delay 50 20\n1000 forward blackhole # cut\n\n2500 both heal\n\
             3000 backward pause\n4000 both bandwidth 65536\n4000 both pieces 3\n6000 both drop fin\n",
        )
        .unwrap();
        assert_eq!(steps.len(), 7);
        assert_eq!(
            steps[0].action,
            Action::Delay(Duration::from_millis(50), Duration::from_millis(20))
        );
        assert_eq!(steps[1].directions, vec![Direction::Forward]);
        assert_eq!(steps[1].action, Action::Blackhole);
        assert_eq!(steps[2].directions, Direction::BOTH.to_vec());
        assert_eq!(steps[3].directions, vec![Direction::Backward]);
        assert_eq!(steps[4].action, Action::Bandwidth(65536));
        assert_eq!(steps[5].action, Action::Pieces(3));
        assert_eq!(steps[6].action, Action::Drop(Close::Fin));
        assert_eq!(steps[6].at, Duration::from_secs(6));
    }

    #[test]
    fn names_the_bad_line() {
        let e = parse("0 both delay 5\n10 sideways pause\n").unwrap_err();
        assert!(e.starts_with("line 2: direction"), "{e}");
        let e = parse("0 both explode\n").unwrap_err();
        assert!(e.starts_with("line 1: unknown fault"), "{e}");
    }
}
