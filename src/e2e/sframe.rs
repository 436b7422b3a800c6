//! SFrame (placeholder while being written).
