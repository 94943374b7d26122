//! What the tests that print measurements need: percentiles, and the build profile the numbers
//! were taken under.

use std::time::Duration;

/// Percentile of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The build profile, printed next to timings (debug timings are not release timings).
pub(crate) fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
