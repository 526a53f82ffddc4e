//! Unit tests of the heap (on private heaps).
use super::*;
