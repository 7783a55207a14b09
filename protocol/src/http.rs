//! Placeholder; filled by the http module work.
