// scratch: paired ratios arena vs mimalloc vs jemalloc for one micro pattern
use arena_bench::rng::Rng;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

fn layout(s: usize) -> Layout {
    Layout::from_size_align(s, 8).unwrap()
}
fn batch<A: GlobalAlloc>(a: &A, n: usize, work: usize) -> f64 {
    let mut rng = Rng::new(n as u64);
    let layouts: Vec<Layout> = (0..n).map(|_| layout(rng.range(16, 1016))).collect();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); n];
    let rounds = (work / n).max(1);
    let mut ta = 0u128;
    let mut tf = 0u128;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for (slot, l) in ptrs.iter_mut().zip(&layouts) {
            let p = unsafe { a.alloc(*l) };
            unsafe { p.write(1) };
            *slot = p;
        }
        let t1 = Instant::now();
        for &i in &order {
            unsafe { a.dealloc(black_box(ptrs[i]), layouts[i]) };
        }
        ta += (t1 - t0).as_nanos();
        tf += t1.elapsed().as_nanos();
    }
    if std::env::var_os("SPLIT").is_some() {
        eprintln!(
            "{} alloc {:.1} free {:.1}",
            std::any::type_name::<A>(),
            ta as f64 / (rounds * n) as f64,
            tf as f64 / (rounds * n) as f64
        );
    }
    (ta + tf) as f64 / (rounds * n) as f64
}
fn med(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(31);
    let work = 1_000_000;
    batch(&arena_malloc::ArenaMalloc, n, work / 5);
    batch(&mimalloc::MiMalloc, n, work / 5);
    let (mut ra, mut rm, mut rat) = (vec![], vec![], vec![]);
    for r in 0..reps {
        let (a, m) = if r % 2 == 0 {
            let a = batch(&arena_malloc::ArenaMalloc, n, work);
            (a, batch(&mimalloc::MiMalloc, n, work))
        } else {
            let m = batch(&mimalloc::MiMalloc, n, work);
            (batch(&arena_malloc::ArenaMalloc, n, work), m)
        };
        ra.push(a);
        rm.push(m);
        rat.push(m / a);
        if std::env::var_os("ALL").is_some() {
            batch(&std::alloc::System, n, work);
            batch(&tikv_jemallocator::Jemalloc, n, work);
        }
    }
    println!(
        "n={n} arena {:.1} mimalloc {:.1} median paired ratio mi/arena {:.3}",
        med(ra),
        med(rm),
        med(rat)
    );
}
