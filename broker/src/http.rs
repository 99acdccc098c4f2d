//! HTTP side port (being written).
