//! Placeholder; filled by the socks5 module work.
