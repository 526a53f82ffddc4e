//! Request sizes ↔ chunk sizes ↔ thread-cache classes.
//!
//! A request of `n` bytes becomes a chunk of `request_to_chunk(n)` bytes (header included):
//! - up to 1024 bytes: the payload rounds up to 16 bytes (classes 0..=63, chunk sizes 32..=1040);
//! - up to 32 KiB: the payload rounds up to one of four steps per doubling (1280, 1536, 1792,
//!   2048, 2560, …, 32768; classes 64..=83), at most 25% slack;
//! - above: the payload rounds up to 16 bytes.
//!
//! Every chunk whose size is exactly a class size can sit in that class of a thread cache,
//! wherever it came from.

use crate::chunk::{ALIGN, HEADER};

/// Number of 16-byte-step classes (payloads 16..=1024).
pub const NSMALL_CLASSES: usize = 64;
/// Largest request of the 16-byte-step classes.
pub const SMALL_MAX_REQUEST: usize = 1024;
/// Number of classes in all.
pub const NCLASSES: usize = 84;
/// Largest request that has a class.
pub const MAX_CLASS_REQUEST: usize = 32 << 10;
/// Largest request the allocator will try to serve; larger requests fail (null).
pub const MAX_REQUEST: usize = crate::chunk::MAX_CHUNK_SIZE - (64 << 20);

/// A thread-cache class index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClassIdx(pub usize);

const fn medium_class(n: usize) -> usize {
    let m = n - 1;
    let e = (usize::BITS - 1 - m.leading_zeros()) as usize;
    let j = (m >> (e - 2)) & 3;
    NSMALL_CLASSES + (e - 10) * 4 + j
}

const fn build_sizes() -> [usize; NCLASSES] {
    let mut t = [0usize; NCLASSES];
    let mut i = 0;
    while i < NSMALL_CLASSES {
        t[i] = (i + 1) * 16 + HEADER;
        i += 1;
    }
    let mut e = 10;
    while e < 15 {
        let mut j = 0;
        while j < 4 {
            t[NSMALL_CLASSES + (e - 10) * 4 + j] = (1 << e) + (j + 1) * (1 << (e - 2)) + HEADER;
            j += 1;
        }
        e += 1;
    }
    t
}

/// Chunk size of each class.
pub static CLASS_CHUNK_SIZE: [usize; NCLASSES] = build_sizes();

/// The class of a request of `n ≤ MAX_CLASS_REQUEST` bytes.
#[inline(always)]
pub fn request_class(n: usize) -> ClassIdx {
    if n <= SMALL_MAX_REQUEST {
        ClassIdx(n.saturating_sub(1) >> 4)
    } else {
        ClassIdx(medium_class(n))
    }
}

/// The chunk size for a request of `n` bytes, or `None` if the request is impossible.
#[inline(always)]
pub fn request_to_chunk(n: usize) -> Option<usize> {
    if n <= MAX_CLASS_REQUEST {
        Some(CLASS_CHUNK_SIZE[request_class(n).0])
    } else if n <= MAX_REQUEST {
        Some(((n + ALIGN - 1) & !(ALIGN - 1)) + HEADER)
    } else {
        None
    }
}

/// The class whose chunk size is exactly `size`, if there is one.
#[inline(always)]
pub fn chunk_class(size: usize) -> Option<ClassIdx> {
    if size <= SMALL_MAX_REQUEST + HEADER {
        if size >= 32 {
            Some(ClassIdx((size - 32) >> 4))
        } else {
            None
        }
    } else if size <= MAX_CLASS_REQUEST + HEADER {
        let c = medium_class(size - HEADER);
        if CLASS_CHUNK_SIZE[c] == size {
            Some(ClassIdx(c))
        } else {
            None
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustive_up_to_largest_class() {
        let mut prev = 0;
        for n in 0..=MAX_CLASS_REQUEST {
            let c = request_class(n);
            let sz = CLASS_CHUNK_SIZE[c.0];
            assert!(sz - HEADER >= n.max(1), "n={n}");
            assert_eq!(sz % ALIGN, 0);
            assert!(sz >= prev, "monotonic");
            prev = sz;
            assert_eq!(request_to_chunk(n), Some(sz));
            assert_eq!(chunk_class(sz), Some(c));
            // the class is the smallest that fits
            if c.0 > 0 {
                assert!(CLASS_CHUNK_SIZE[c.0 - 1] - HEADER < n.max(1), "n={n}");
            }
            // slack at most 25% for medium requests
            if n > SMALL_MAX_REQUEST {
                assert!((sz - HEADER) * 4 <= n * 5, "n={n}");
            }
        }
        assert_eq!(CLASS_CHUNK_SIZE[NCLASSES - 1], MAX_CLASS_REQUEST + HEADER);
        assert_eq!(chunk_class(1296), Some(ClassIdx(64)));
        assert_eq!(chunk_class(1312), None);
        assert_eq!(chunk_class(16), None);
        assert_eq!(request_to_chunk(usize::MAX), None);
        assert_eq!(
            request_to_chunk(MAX_CLASS_REQUEST + 1),
            Some(MAX_CLASS_REQUEST + 16 + HEADER)
        );
    }
}
