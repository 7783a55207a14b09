//! Property tests for http.
