//! RSS stays flat in a long-running service: a dispatcher thread makes requests of mixed sizes
//! (16 B–64 KiB) and sends them through `std::sync::mpsc` to worker threads, which free them,
//! build a response and send it to a collector thread, which frees it. Every block is freed on
//! another thread than the one that made it (remote frees, thread caches overflowing into the
//! arenas' quick lists), and every round the workers exit and new ones start (thread-exit
//! flushes, arenas handed to new threads). After a warm-up, neither RSS nor the bytes in use may
//! grow with the rounds: a leak, a cache or quick list that keeps what it takes, or an arena
//! per dead thread would.

mod common;

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use common::{rss, watchdog, Rng};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// Rounds in all, the first `WARMUP` of them before the reference figures are taken. RSS
/// reaches about 90% of its plateau within the warm-up (each of the ~8 arenas that the run's
/// threads share has to see its peak of in-flight blocks) and the rest within ~60 rounds.
const ROUNDS: usize = 200;
const WARMUP: usize = 20;
/// Worker threads per round (new ones each round).
const WORKERS: usize = 4;
/// Requests per round.
const REQUESTS: usize = 2000;
/// Capacity of each worker's request queue and of the collector's queue: as in a service, the
/// queues are bounded, so what is in flight (and so the live data) is bounded too, at about
/// `(WORKERS + 1) * QUEUE` blocks of 8 KiB on average (~2.5 MiB).
const QUEUE: usize = 64;
/// Most RSS may grow from the end of the warm-up to the end of the run. Measured (2 CPUs, debug
/// and release): ~21 MiB after the warm-up, a plateau of 22–23 MiB from round ~60 on, so
/// 1–3 MiB of growth; leaking every 100th response (~160 KiB a round) grows it by ~30 MiB.
const RSS_SLACK: usize = 8 << 20;
/// Most `in_use` may exceed its value before the first round once every round is done: the
/// blocks of the run's channels (a few KiB) and the frees still pending in the dispatcher's and
/// main thread's pipelines (at most 8 each; the collector flushes its own).
const IN_USE_SLACK: usize = 1 << 20;

struct Request {
    id: u64,
    body: Vec<u8>,
}

struct Response {
    id: u64,
    body: Vec<u8>,
}

enum ToCollector {
    Response(Response),
    /// Every response of the round was sent before this: report the count and checksum.
    RoundEnd(Sender<(usize, u64)>),
}

/// A size between 16 B and 64 KiB, spread evenly over the powers of two (most requests small).
fn mixed_size(rng: &mut Rng) -> usize {
    let cap = 16usize << rng.below(13);
    16 + rng.below(cap as u64) as usize
}

/// A block of `n` bytes, all of them `tag` (every OS page written, so it is resident).
fn block(n: usize, tag: u8) -> Vec<u8> {
    vec![tag; n]
}

/// The dispatcher: for each round it is handed the new workers' senders and spreads that
/// round's requests over them; dropping the senders tells the workers the round is over.
fn dispatcher(rounds: Receiver<Vec<SyncSender<Request>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut rng = Rng::new(7);
        let mut id = 0u64;
        for workers in rounds {
            for i in 0..REQUESTS {
                id += 1;
                let body = block(mixed_size(&mut rng), id as u8);
                workers[i % workers.len()]
                    .send(Request { id, body })
                    .expect("worker gone");
            }
        }
    })
}

fn worker(requests: Receiver<Request>, out: SyncSender<ToCollector>, seed: u64) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut rng = Rng::new(seed);
        for req in requests {
            let tag = req.id as u8;
            assert!(
                req.body[0] == tag && req.body[req.body.len() - 1] == tag,
                "request {} overwritten",
                req.id
            );
            let mut body = block(mixed_size(&mut rng), tag);
            body[0] = req.body[req.body.len() / 2];
            drop(req.body);
            // A small header, as a service's response would carry.
            body.extend_from_slice(format!("id={}", req.id).as_bytes());
            out.send(ToCollector::Response(Response { id: req.id, body }))
                .expect("collector gone");
        }
    })
}

fn collector(inbox: Receiver<ToCollector>) -> JoinHandle<()> {
    thread::spawn(move || {
        let (mut count, mut sum) = (0usize, 0u64);
        for msg in inbox {
            match msg {
                ToCollector::Response(r) => {
                    let header = format!("id={}", r.id);
                    assert!(r.body.ends_with(header.as_bytes()), "response {}", r.id);
                    count += 1;
                    sum = sum.wrapping_add(r.id);
                    drop(r);
                }
                ToCollector::RoundEnd(reply) => {
                    // Completes the frees still pending in this thread's pipeline (up to 8
                    // responses, each up to 64 KiB, that would count as in use).
                    arena_malloc::flush_thread_cache();
                    reply.send((count, sum)).expect("main gone");
                    (count, sum) = (0, 0);
                }
            }
        }
    })
}

#[test]
fn rss_stays_flat_in_a_service_with_thread_churn() {
    watchdog(120);
    let started = Instant::now();
    let (to_collector, inbox) = mpsc::sync_channel(QUEUE);
    let collector = collector(inbox);
    let (to_dispatcher, rounds) = mpsc::channel();
    let dispatcher = dispatcher(rounds);
    let base_in_use = arena_malloc::stats().in_use;
    let mut warm_rss = 0;
    let mut warm_in_use = 0;
    let mut first_id = 1u64;
    for round in 0..ROUNDS {
        if round == WARMUP {
            warm_rss = rss();
            warm_in_use = arena_malloc::stats().in_use;
        }
        let (senders, workers): (Vec<_>, Vec<_>) = (0..WORKERS)
            .map(|w| {
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                let seed = (round * WORKERS + w) as u64 + 100;
                (tx, worker(rx, to_collector.clone(), seed))
            })
            .unzip();
        to_dispatcher.send(senders).unwrap();
        for w in workers {
            w.join().unwrap();
        }
        // Every response of the round was sent before its worker exited.
        let (reply, answer) = mpsc::channel();
        to_collector.send(ToCollector::RoundEnd(reply)).unwrap();
        let (count, sum) = answer.recv().unwrap();
        let last_id = first_id + REQUESTS as u64 - 1;
        assert_eq!(count, REQUESTS, "round {round}: responses lost");
        assert_eq!(sum, (first_id + last_id) * REQUESTS as u64 / 2);
        first_id = last_id + 1;
    }
    let end_rss = rss();
    let end = arena_malloc::stats();
    eprintln!(
        "rss_flat: {ROUNDS} rounds in {:.1} s; RSS after warm-up {:.1} MiB, at the end {:.1} MiB; \
         in use before {} KiB, after warm-up {} KiB, at the end {} KiB\n{end}",
        started.elapsed().as_secs_f64(),
        warm_rss as f64 / (1 << 20) as f64,
        end_rss as f64 / (1 << 20) as f64,
        base_in_use >> 10,
        warm_in_use >> 10,
        end.in_use >> 10
    );
    assert!(
        end_rss <= warm_rss + RSS_SLACK,
        "RSS grew from {} KiB after the warm-up to {} KiB after {} more rounds\n{end}",
        warm_rss >> 10,
        end_rss >> 10,
        ROUNDS - WARMUP
    );
    assert!(
        end.in_use <= base_in_use + IN_USE_SLACK,
        "in use {} KiB after the run, {} KiB before it\n{end}",
        end.in_use >> 10,
        base_in_use >> 10
    );
    drop(to_dispatcher);
    dispatcher.join().unwrap();
    drop(to_collector);
    collector.join().unwrap();
}
