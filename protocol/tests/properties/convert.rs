//! Property tests for convert.
