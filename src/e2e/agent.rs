//! The key agent (placeholder while being written).
