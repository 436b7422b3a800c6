//! Key wrapping (placeholder while being written).
