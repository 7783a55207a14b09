//! Property tests for socks5.
