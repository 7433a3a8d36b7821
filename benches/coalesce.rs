//! Coalescing and memory-bound benchmark (being written).
fn main() {}
