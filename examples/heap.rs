//! A `Heap` shared by four threads that build `hashbrown` maps and vectors in it; the main thread
//! frees them all (remote frees into the heap) and then drops the heap.
//!
//! `cargo run --example heap`

use arena_malloc::allocator_api2::vec::Vec;
use arena_malloc::Heap;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn main() {
    let heap = Heap::new();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..4u64 {
            let tx = tx.clone();
            let heap = &heap;
            s.spawn(move || {
                let mut m = hashbrown::HashMap::with_capacity_in(0, heap);
                let mut v = Vec::new_in(heap);
                for i in 0..10_000u64 {
                    m.insert(i, t * i);
                    v.push(i);
                }
                tx.send((m, v)).unwrap();
            });
        }
        drop(tx);
        let mut total = 0;
        for (m, v) in rx {
            total += m.len() + v.len();
        } // maps and vectors freed here, on the main thread: remote frees into the heap
        assert_eq!(total, 80_000);
    });
    assert_eq!(heap.stats().in_use, 0);
    println!("{}", heap.stats());
}
