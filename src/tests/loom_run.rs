//! A run's remote frees (`run::Run`): threads that do not own the run set its blocks' bits
//! with one atomic OR per word, racing the owner's exchange of the words (`Run::collect`) and
//! each other; and, on the real heap, racing the owner's exit and the adoption of its run.
//!
//! Catches `run_push_relaxed` and `run_collect_relaxed` (the OR no longer releases the freer's
//! last writes to its block, or the exchange no longer acquires them: the owner's reuse of
//! the block is reported as a causality violation through `sync::shadow`), `run_push_lost` (a
//! load and a store in place of the OR: a freer's bit is lost), `orphan_sweep_no_collect`,
//! `run_steal_relaxed` (the thief's exchange no longer acquires the freer's last writes) and
//! `run_steal_torn` (a load and a store in place of the thief's exchange: the owner and the
//! thief both take a block).

use super::{check_quiescent, heap_runs, model, thread, Ptr};
use crate::run::{Bits, Run, BIT_WORDS};

/// The set holding the block whose payload is `p`, of run `r`.
///
/// # Safety
/// `r` is live.
unsafe fn bits(r: *const Run, p: *mut u8) -> Bits {
    // SAFETY: caller.
    let i = unsafe { (*r).slot_of(p) }.expect("a block of the run");
    let mut b = [0; BIT_WORDS];
    crate::run::add_block(&mut b, i);
    b
}

/// A run of 64-byte blocks in a fresh mapping, owned by the calling thread.
fn new_run() -> Ptr<Run> {
    crate::keys::init();
    // The shadow table exists before any model thread starts (its creation would order them).
    crate::sync::shadow::touch();
    let len = 4096;
    let m = crate::os::map(len).expect("map");
    // SAFETY: a fresh mapping of ours; the run starts past a chunk header's worth of room.
    Ptr(unsafe { Run::init(m.add(16), len - 16, 64, 3) })
}

/// Spawns a thread that writes block `a` of run `r` (the program's last write, seen by loom)
/// and then frees it remotely (one push).
fn spawn_freer(r: Ptr<Run>, a: Ptr<u8>) -> thread::JoinHandle<()> {
    // SAFETY: the owner handed `a`, a block of live run `r`, to this thread, which frees it
    // once.
    thread::spawn(move || unsafe {
        a.0.write(7);
        crate::sync::shadow::write(a.0.addr());
        Run::push_remote(r.0, &bits(r.0, a.0), 1);
    })
}

/// One thread frees a block of the run while the owner collects: the block comes back once,
/// whichever side of the exchange the push lands on.
pub(crate) fn push_races_collect() {
    model("run_push_races_collect", || {
        let r = new_run();
        // SAFETY: the owner (this thread) hands the block to the freer and keeps the run.
        let (a, b) = unsafe { (Ptr((*r.0).pop()), Ptr((*r.0).pop())) };
        let freer = spawn_freer(Ptr(r.0), Ptr(a.0));
        // SAFETY: owner only. As a refill does, the owner collects and hands the block out at
        // once, before it joins the freer and whether or not the chain's count has come: the
        // exchange alone must order the link it reads (the count's own ordering must not be
        // what saves it).
        unsafe {
            let mut got = 0;
            while !(*r.0).has_listed() {
                got += (*r.0).collect();
                thread::yield_now();
            }
            let again = (*r.0).pop();
            assert_eq!(again, a.0, "the block freed remotely is handed out first");
            freer.join().unwrap();
            got += (*r.0).collect();
            assert_eq!(got, 1, "the remote free came back {got} times");
            (*r.0).push_local((*r.0).slot_of(again).unwrap());
            (*r.0).push_local((*r.0).slot_of(b.0).unwrap());
            assert!((*r.0).is_unused(), "blocks still out after every free");
        }
    });
}

#[test]
fn loom_run_push_races_collect() {
    push_races_collect();
}

/// A thread short of blocks takes the run's remote frees (`Run::steal`, a refill about to
/// carve a run) while a freer pushes one and the owner collects: the block goes out once, to
/// the thief or back to the owner, and the thief's use of it comes after the freer's last
/// write.
pub(crate) fn steal_races_collect() {
    model("run_steal_races_collect", || {
        let r = new_run();
        // SAFETY: the owner hands one block to the freer and keeps the other.
        let (a, b) = unsafe { (Ptr((*r.0).pop()), Ptr((*r.0).pop())) };
        let freer = spawn_freer(Ptr(r.0), Ptr(a.0));
        // SAFETY: the run stays live (the owner keeps `b` out); the thief reads the block only
        // when the exchange gave it to it.
        let thief = thread::spawn(move || unsafe {
            let (set, n) = Run::steal(r.0);
            if n > 0 {
                assert_eq!(set, bits(r.0, a.0), "the thief took another block");
                // The thief's program reads the block it got.
                crate::sync::shadow::read(a.0.addr());
                assert_eq!(a.0.read(), 7);
            }
            n
        });
        // SAFETY: owner only, racing the freer and the thief.
        unsafe {
            let mut got = (*r.0).collect();
            freer.join().unwrap();
            let stolen = thief.join().unwrap();
            got += (*r.0).collect();
            assert_eq!(
                got + stolen,
                1,
                "double free: a remote free taken {} times",
                got + stolen
            );
            if stolen == 1 {
                // The thief's program frees it: back to the owner.
                Run::push_remote(r.0, &bits(r.0, a.0), 1);
                assert_eq!((*r.0).collect(), 1);
            }
            (*r.0).push_local((*r.0).slot_of(b.0).unwrap());
            assert!((*r.0).is_unused(), "blocks still out after every free");
        }
    });
}

#[test]
fn loom_run_steal_races_collect() {
    steal_races_collect();
}

/// Two threads each free a block of the run at once; the owner collects after both: no chain
/// may be lost.
pub(crate) fn two_pushers() {
    model("run_two_pushers", || {
        let r = new_run();
        // SAFETY: the owner hands one block to each freer.
        let (a, b) = unsafe { (Ptr((*r.0).pop()), Ptr((*r.0).pop())) };
        let t: Vec<_> = [a, b]
            .into_iter()
            .map(|p| thread::spawn(move || unsafe { Run::push_remote(r.0, &bits(r.0, p.0), 1) }))
            .collect();
        for h in t {
            h.join().unwrap();
        }
        // SAFETY: owner only, every pusher done.
        unsafe {
            let got = (*r.0).collect();
            assert_eq!(got, 2, "run remote frees lost: {got} of 2 counted");
            // Both blocks are the owner's again (a lost bit leaves a fresh block here).
            let back = [(*r.0).pop(), (*r.0).pop()];
            let both = back.contains(&a.0) && back.contains(&b.0);
            assert!(both, "run remote frees lost: a bit was lost");
        }
    });
}

#[test]
fn loom_run_two_pushers() {
    two_pushers();
}

/// A thread frees the run's last block out while the owner collects until it sees every block
/// back: when the owner's count says so, the bits are in its hands too, so a run given back at
/// that point has nothing still coming onto its remote set.
pub(crate) fn count_never_runs_ahead() {
    model("run_count_never_runs_ahead", || {
        let r = new_run();
        // SAFETY: the owner hands its only block out to the freer.
        let a = unsafe { Ptr((*r.0).pop()) };
        let freer = thread::spawn(move || unsafe { Run::push_remote(r.0, &bits(r.0, a.0), 1) });
        // SAFETY: owner only.
        unsafe {
            while !(*r.0).is_unused() {
                (*r.0).collect();
                thread::yield_now();
            }
        }
        freer.join().unwrap();
        // SAFETY: owner only, the freer done.
        let late = unsafe { (*r.0).has_remote() };
        assert!(!late, "run looked empty with a free still coming");
    });
}

#[test]
fn loom_run_count_never_runs_ahead() {
    count_never_runs_ahead();
}

/// After every block is freed and every cache dropped, no run is left: the runs' figures are
/// zero (with `check_quiescent`: nothing in use, cached or pending).
fn assert_runs_given_back(h: &crate::heap::PrivateHeap) {
    check_quiescent(h);
    let s = h.stats();
    assert_eq!(
        s.run_free + s.run_remote,
        0,
        "orphan runs not given back: {s:?}"
    );
}

/// A heap with runs on, a cache (the runs' owner) that allocated two blocks of one class, and
/// a thread spawned to free the first of them without a cache of its own (one push). Returns
/// the heap, the owner, the second block and the freer.
fn owner_and_freer() -> (
    super::Arc<crate::heap::PrivateHeap>,
    *mut crate::tcache::ThreadCache,
    Ptr<u8>,
    thread::JoinHandle<()>,
) {
    let h = heap_runs(1);
    let owner = h.new_cache();
    // SAFETY: a fresh cache of this heap, used by this thread; the first block is handed to
    // the freer by the spawn and freed once there.
    unsafe {
        let (a, b) = (Ptr(h.malloc(owner, 24)), Ptr(h.malloc(owner, 24)));
        let freer = {
            let h = h.clone();
            thread::spawn(move || h.free(core::ptr::null_mut(), a.0))
        };
        (h, owner, b, freer)
    }
}

/// A thread frees a block of a run (no cache of its own: one push) while the run's owner
/// frees the other and exits: the run becomes an orphan of its arena with that block still
/// out, and gets it back either through the arena's lock (a freer that finds the run an orphan
/// settles it at once, `ArenaState::settle_orphan`) or, when the freer read the owner before
/// the exit and pushed after it, on its remote list, which the next sweep (`trim`) collects
/// before giving the run back.
pub(crate) fn push_races_owner_exit() {
    model("run_push_races_owner_exit", || {
        let (h, owner, b, freer) = owner_and_freer();
        // SAFETY: the owner's cache is this thread's; each block is freed once.
        unsafe {
            h.free(owner, b.0);
            // The owner's thread exits.
            h.drop_cache(owner);
            freer.join().unwrap();
        }
        h.trim(0);
        assert_runs_given_back(&h);
    });
}

#[test]
fn loom_run_push_races_owner_exit() {
    push_races_owner_exit();
}

/// A thread frees a block of a run while the run's owner exits and a new thread adopts the
/// orphan (its first refill of the class): the block comes back once, through the adopter's
/// collection or a later one, and the run goes back when the adopter exits.
pub(crate) fn push_races_adoption() {
    model("run_push_races_adoption", || {
        let (h, owner, b, freer) = owner_and_freer();
        // SAFETY: the owner's and the heir's caches are this thread's; each block is freed once.
        unsafe {
            h.drop_cache(owner);
            let heir = h.new_cache();
            let p = h.malloc(heir, 24);
            assert!(!p.is_null());
            assert_ne!(p, b.0, "a block still out was handed out again");
            freer.join().unwrap();
            h.free(heir, b.0);
            h.free(heir, p);
            h.drop_cache(heir);
        }
        assert_runs_given_back(&h);
    });
}

#[test]
fn loom_run_push_races_adoption() {
    push_races_adoption();
}
