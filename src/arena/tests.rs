//! Unit tests of the arena (through private heaps).
