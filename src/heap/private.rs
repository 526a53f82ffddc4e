//! A heap of its own in a mapping of its own, for the crate's tests, fuzz targets and loom
//! models (feature `internals`): they make as many as they like and drive several thread
//! caches from one OS thread.

use super::Heap;
use crate::config::Tunables;
use crate::os;

/// A heap of its own, for tests, fuzzing and model checking; unmapped on drop.
#[derive(Debug)]
pub struct PrivateHeap {
    heap: *mut Heap,
}

impl PrivateHeap {
    /// Builds a private heap with these tunables (`use_brk` is ignored: only the global heap may
    /// own the break). The heap struct itself lives in its own mapping.
    pub fn new(t: &Tunables) -> Option<PrivateHeap> {
        let len = os::page_align_up(core::mem::size_of::<Heap>())?;
        let m = os::map(len)?;
        let heap: *mut Heap = m.cast();
        let mut t = *t;
        t.use_brk = false;
        // SAFETY: fresh, writable, aligned mapping large enough for a Heap.
        unsafe {
            heap.write(Heap::new());
            if !(*heap).init(&t) {
                (*heap).destroy();
                os::unmap(m, len);
                return None;
            }
        }
        Some(PrivateHeap { heap })
    }
}

impl core::ops::Deref for PrivateHeap {
    type Target = Heap;
    fn deref(&self) -> &Heap {
        // SAFETY: valid until drop.
        unsafe { &*self.heap }
    }
}

impl Drop for PrivateHeap {
    fn drop(&mut self) {
        // SAFETY: we own the heap; dropping means no one uses it any more.
        unsafe {
            (*self.heap).destroy();
            core::ptr::drop_in_place(self.heap);
            let len = os::page_align_up(core::mem::size_of::<Heap>()).unwrap_or(0);
            os::unmap(self.heap.cast(), len);
        }
    }
}

// SAFETY: a Heap is Sync and Send; the wrapper only owns it.
unsafe impl Send for PrivateHeap {}
// SAFETY: as above.
unsafe impl Sync for PrivateHeap {}
