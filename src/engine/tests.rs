//! Engine tests without sockets.
