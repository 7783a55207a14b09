//! Property tests for socks6.
