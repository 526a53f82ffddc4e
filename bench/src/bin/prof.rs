//! `prof PATTERN [ITERS]`: runs one micro pattern with arena-malloc as the global allocator,
//! for profiling with `perf record` (no timing, no peers). Patterns: pair16, batch100k,
//! grow, step, pc.
use std::hint::black_box;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pat = args.get(1).map(String::as_str).unwrap_or("batch100k");
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let t = std::time::Instant::now();
    let mut ops = 0usize;
    match pat {
        "pair16" => {
            for _ in 0..iters * 1_000_000 {
                let b = black_box(Box::new([0u8; 16]));
                drop(b);
            }
            ops = iters * 1_000_000;
        }
        "batch100k" => {
            let n = 100_000;
            let mut v: Vec<Vec<u8>> = Vec::with_capacity(n);
            let mut order: Vec<usize> = (0..n).collect();
            for _ in 0..iters {
                for _ in 0..n {
                    let sz = 16 + (rnd() % 1000) as usize;
                    v.push(black_box(Vec::with_capacity(sz)));
                }
                for i in (1..n).rev() {
                    order.swap(i, (rnd() as usize) % (i + 1));
                }
                let mut slots: Vec<Option<Vec<u8>>> = v.drain(..).map(Some).collect();
                for &i in &order {
                    drop(slots[i].take());
                }
                ops += n;
            }
        }
        "grow" | "step" => {
            for _ in 0..iters * 100 {
                let mut v: Vec<u8> = Vec::with_capacity(16);
                let mut cap = 16usize;
                let limit = if pat == "grow" { 256 << 10 } else { 64 << 10 };
                while cap < limit {
                    let next = if pat == "grow" {
                        (cap * 3 / 2 + 15) & !15
                    } else {
                        cap + 16
                    };
                    v.reserve_exact(next - v.len());
                    v.resize(next, 1);
                    cap = next;
                    ops += 1;
                }
                black_box(&v);
            }
        }
        "pc" => {
            // Producer/consumer through a ring, as in `micro`: every free is remote.
            use std::sync::atomic::{AtomicPtr, Ordering};
            const RING: usize = 1024;
            let ring: Vec<AtomicPtr<u8>> = (0..RING)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect();
            let n = iters * 1_000_000;
            std::thread::scope(|s| {
                let ring = &ring;
                s.spawn(move || {
                    let mut x = 77u64;
                    for i in 0..n {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let b: Box<[u8]> = vec![1u8; 16 + (x % 240) as usize].into_boxed_slice();
                        let p = Box::into_raw(b) as *mut u8;
                        let slot = &ring[i % RING];
                        while !slot.load(Ordering::Acquire).is_null() {
                            std::thread::yield_now();
                        }
                        slot.store(p, Ordering::Release);
                    }
                });
                s.spawn(move || {
                    let mut x = 77u64;
                    for i in 0..n {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = 16 + (x % 240) as usize;
                        let slot = &ring[i % RING];
                        let p = loop {
                            let p = slot.load(Ordering::Acquire);
                            if !p.is_null() {
                                break p;
                            }
                            std::thread::yield_now();
                        };
                        slot.store(std::ptr::null_mut(), Ordering::Release);
                        // SAFETY: the producer made this box with this length.
                        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
                    }
                });
            });
            ops = n;
        }
        _ => panic!("unknown pattern"),
    }
    let ns = t.elapsed().as_nanos() as f64 / ops as f64;
    eprintln!("{pat}: {ns:.1} ns/op over {ops} ops");
}
