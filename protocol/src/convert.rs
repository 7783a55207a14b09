//! Placeholder; filled by the convert module work.
