//! The bounds the cases assert: the slack on top of what a limit lets an attack hold
//! ([`RSS_SLACK`], [`VM_SLACK`]), the limits' defaults written out, what a read and a TLS
//! connection add, the legitimate peer's calls and timeouts, and a case's memory [`Bound`].

use std::time::Duration;

use crate::attack::*;
use crate::common::tls::Security;

// ---- bounds ------------------------------------------------------------------------------------

/// KiB in a MiB (memory is counted in KiB, as `/proc` does).
pub(crate) const MIB: u64 = 1024;

/// What the child's resident set may grow by, on top of what a limit lets an attack hold: its
/// own movement (the legitimate peer's calls, the allocator's caches and fragmentation, the log
/// lines it formats). The cases that hold nothing (4a, 4c, 7) grow it by 0.0 to 0.3 MiB; 8 MiB
/// leaves room for the allocator's rounding on top of the larger holdings, and keeps every
/// bound well below what each attack took before its limit (+160 MiB to +860 MiB resident,
/// 2.5 GiB of address space).
pub(crate) const RSS_SLACK: u64 = 8 * MIB;

/// What the child's address space may grow by, on top of what a limit lets an attack hold:
/// glibc reserves 64 MiB of address space for each thread's malloc arena, and a thread that
/// allocates for the first time (a snapshot reader) adds one; four of them. Against the
/// 2.5 GiB of reservations the 40 headers of case 1 made before memory followed bytes received.
pub(crate) const VM_SLACK: u64 = 256 * MIB;

/// The limits' defaults the bounds assume (src/config.rs), written out: the server child runs
/// with the library's defaults, so a default that changes, or a limit that stops acting, fails
/// a bound here instead of moving it.
pub(crate) const MAX_UNANSWERED_REQUESTS: u64 = 256;
/// `DEFAULT_MAX_INBOUND_SNAPSHOTS`.
pub(crate) const MAX_INBOUND_SNAPSHOTS: u64 = 4;
/// `DEFAULT_SNAPSHOT_BUFFER`, in KiB.
pub(crate) const SNAPSHOT_BUFFER: u64 = 4 * MIB;
/// `DEFAULT_MAX_ENTRIES_PER_REQUEST`.
pub(crate) const MAX_ENTRIES_PER_REQUEST: u64 = 65_536;

/// The most the server's driver reads from one connection before it cuts frames out and hands
/// them over (KiB): `READ_BUDGET` (256 KiB, src/driver/mio.rs), whose last read may take
/// `MAX_READ` (256 KiB) more. The limits act after a read's frames are handed over, so each
/// connection may hold one such read beyond them.
pub(crate) const ONE_READ: u64 = 512;

/// What a TLS connection holds in the server on top of a plain one (KiB): the TLS stream's
/// ciphertext buffer (64 KiB, `CIPHERTEXT_READ` in src/driver/tls/mod.rs) once it has read, and
/// rustls' session after its handshake, 32 KiB. The session measured: 500 slowloris sessions
/// (case 5b, each 10 bytes read) grew the server by +16.7 to +17.8 MiB against +4.4 to
/// +4.5 MiB plain in a debug build (+14.8 against +4.3 MiB in a release build), 21 to 27 KiB
/// more per connection, the buffer's touched pages included (it is zeroed memory, resident
/// only where written).
pub(crate) const TLS_CONNECTION: u64 = 64 + 32;

/// What `connections` held at once add to a bound over TLS (KiB), and the bound's words for it:
/// nothing over plain TCP.
pub(crate) fn tls_connections(security: &Security, connections: u64) -> (u64, String) {
    match security.is_tls() {
        true => (
            connections * TLS_CONNECTION,
            format!(
                " + {connections} × a TLS connection's {} KiB (its 64 KiB ciphertext buffer and \
                 rustls' session)",
                TLS_CONNECTION
            ),
        ),
        false => (0, String::new()),
    }
}

/// Calls the legitimate peer makes before an attack: its idle latency.
pub(crate) const IDLE_CALLS: usize = 200;

/// Calls the legitimate peer must get answered during an attack, at its worst.
pub(crate) const ATTACK_CALLS: usize = 100;

/// The legitimate peer's call timeout: a call not answered within it fails the test.
pub(crate) const LEGIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's `Config::timeout` where a test waits for a slow-peer deadline.
pub(crate) const SHORT_TIMEOUT_MS: u64 = 1000;

/// A memory bound: what the limit lets the attack hold (KiB), why, and whether address space
/// is bounded too (it is where the attack reserved without touching).
pub(crate) struct Bound {
    pub(crate) held: u64,
    pub(crate) why: String,
    pub(crate) address_space: bool,
}

impl Bound {
    pub(crate) fn rss_limit(&self) -> u64 {
        self.held + RSS_SLACK
    }

    pub(crate) fn vm_limit(&self) -> u64 {
        self.held + VM_SLACK
    }

    pub(crate) fn describe(&self) -> String {
        let mut text = format!(
            "RSS +≤ {} MiB ({} + {} slack)",
            mib(self.rss_limit()),
            self.why,
            mib(RSS_SLACK)
        );
        if self.address_space {
            text.push_str(&format!("; address space +≤ {} MiB", mib(self.vm_limit())));
        }
        text
    }
}
