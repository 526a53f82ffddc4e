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
        _ => panic!("unknown pattern"),
    }
    let ns = t.elapsed().as_nanos() as f64 / ops as f64;
    eprintln!("{pat}: {ns:.1} ns/op over {ops} ops");
}
