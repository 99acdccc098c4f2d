//! Tracing and metrics setup (being written).
