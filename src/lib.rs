//! arena-malloc (skeleton: forwards to the system allocator until the core lands).
#![allow(missing_docs)]
use core::alloc::{GlobalAlloc, Layout};

/// The global allocator handle.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArenaMalloc;

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for ArenaMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: caller contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}
