//! `sixpath-client doctor` run as a program inside a namespace.
