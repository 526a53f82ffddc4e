//! Allocation-heavy workloads written as ordinary Rust (collections, `Box`, `String`,
//! `Vec`, channels, threads), so that they exercise whatever allocator the process
//! registered as `#[global_allocator]`.
//!
//! Each workload takes a [`Params`] (a scale factor multiplying its amount of work, and
//! an optional thread count), is deterministic given its seeds, and returns a checksum.
//! The checksum is built from order-independent sums wherever threads interleave, so
//! it is the same for every allocator and every run at a given scale: the driver
//! compares it across allocators as a cheap correctness check, and printing it keeps
//! the work from being optimised away.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

use crate::rng::{mix, Rng};

/// How much work a workload does.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Multiplies the amount of work (1.0 = the default scale of `compare`).
    pub scale: f64,
    /// Thread count for the multithreaded workloads; `None` = the workload's default.
    pub threads: Option<usize>,
}

impl Params {
    /// `base` scaled, at least 1.
    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(1)
    }

    fn threads_or(&self, default: usize) -> usize {
        self.threads.unwrap_or(default).max(1)
    }
}

/// One workload: its name, what it stresses, and its entry point.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Name used on the command line and in tables.
    pub name: &'static str,
    /// One line saying what it stresses.
    pub about: &'static str,
    /// Runs the workload and returns its checksum.
    pub run: fn(&Params) -> u64,
}

/// Every workload, in table order.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "service",
        about: "8 workers behind channels parse requests into Strings/HashMaps; responses freed by the requesting thread; helper threads now and then",
        run: service,
    },
    Workload {
        name: "pipeline4",
        about: "dispatcher -> 4 workers -> collector over bounded channels: every request and response freed by another thread; short-lived helper threads",
        run: pipeline4,
    },
    Workload {
        name: "pipeline16",
        about: "the same pipeline with 16 workers: threads outnumber the cores",
        run: pipeline16,
    },
    Workload {
        name: "dispatch4",
        about: "a dispatcher runs ahead of 4 workers over unbounded queues: requests with string headers and 64 B-4 KiB bodies; workers build Strings, HashMaps, temporaries; a collector frees the replies; helper threads now and then",
        run: dispatch4,
    },
    Workload {
        name: "dispatch16",
        about: "the same dispatcher with 16 workers",
        run: dispatch16,
    },
    Workload {
        name: "prodcons",
        about: "4 producers allocate batches of Box<[u8]> (16 B-8 KiB), 4 consumers free them",
        run: prodcons,
    },
    Workload {
        name: "larson",
        about: "8 threads replace random slots of one shared pool with blocks of 16 B-128 KiB; most frees are remote",
        run: larson,
    },
    Workload {
        name: "falseshare",
        about: "16-byte objects allocated by one thread and written by others, by many and written by one",
        run: falseshare,
    },
    Workload {
        name: "churn",
        about: "3000 short-lived threads in waves of 16, each allocating a little; some objects outlive their thread",
        run: churn,
    },
    Workload {
        name: "realloc",
        about: "Vecs and Strings grown by push to several MiB, and by exact reserve (a realloc per step)",
        run: realloc,
    },
    Workload {
        name: "footprint",
        about: "~10 MiB live, GiBs of traffic over 8 generations of 4 threads; peak RSS is the figure",
        run: footprint,
    },
    Workload {
        name: "compiler",
        about: "single thread: token Vecs, interned Strings, Box trees, HashMaps of many sizes, built and dropped",
        run: compiler,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// A block of `size` bytes holding `size` and `tag` in its first bytes (when they fit),
/// without zeroing the rest: the allocation is what we measure, not a memset.
fn block(size: usize, tag: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&[tag; 16][..size.min(16)]);
    v
}

// --- service -------------------------------------------------------------------------

struct Request {
    id: u64,
    body: String,
    reply: mpsc::Sender<Response>,
}

struct Response {
    id: u64,
    status: u16,
    headers: Vec<String>,
    body: String,
}

/// Request/response service: clients send requests to worker threads over channels,
/// workers parse them, build maps and vectors, and answer on the client's channel, so
/// that the response is freed by the client (a remote free). Every 128 requests a
/// worker hands its access log to a short-lived helper thread.
fn service(p: &Params) -> u64 {
    let workers = p.threads_or(8);
    let clients = (workers / 2).max(1);
    let per_client = p.n(80_000) / clients;

    thread::scope(|s| {
        let mut senders = Vec::with_capacity(workers);
        let mut worker_handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Request>();
            senders.push(tx);
            worker_handles.push(s.spawn(move || service_worker(&rx)));
        }
        let client_handles: Vec<_> = (0..clients)
            .map(|c| {
                let senders = senders.clone();
                s.spawn(move || service_client(c as u64, per_client, &senders))
            })
            .collect();
        let mut sum = 0u64;
        for h in client_handles {
            sum = sum.wrapping_add(h.join().expect("service client panicked"));
        }
        drop(senders);
        for h in worker_handles {
            sum = sum.wrapping_add(h.join().expect("service worker panicked"));
        }
        sum
    })
}

const WORDS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "items", "users", "orders", "cart", "search", "v1", "v2",
    "api", "static", "json", "session", "token", "region", "eu", "us", "cache",
];

fn make_request(rng: &mut Rng, client: u64, n: u64) -> String {
    let mut path = String::new();
    for _ in 0..rng.range(1, 5) {
        path.push('/');
        path.push_str(WORDS[rng.below(WORDS.len())]);
    }
    let mut body = format!(
        "GET {path}?user={client}&req={n}&limit={}&q={} HTTP/1.1\r\nHost: example.test\r\n",
        rng.range(1, 24),
        WORDS[rng.below(WORDS.len())]
    );
    for h in 0..rng.range(3, 16) {
        let value: String = (0..rng.range(4, 60))
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect();
        body.push_str(&format!("X-Header-{h}: {value}\r\n"));
    }
    body.push_str("\r\n");
    body
}

fn service_client(client: u64, count: usize, workers: &[mpsc::Sender<Request>]) -> u64 {
    const WINDOW: usize = 16;
    let mut rng = Rng::new(1000 + client);
    let (tx, rx) = mpsc::channel::<Response>();
    let (mut sent, mut received, mut sum) = (0usize, 0usize, 0u64);
    while received < count {
        while sent < count && sent - received < WINDOW {
            let body = make_request(&mut rng, client, sent as u64);
            let worker = &workers[rng.below(workers.len())];
            let req = Request {
                id: (client << 32) | sent as u64,
                body,
                reply: tx.clone(),
            };
            worker.send(req).expect("service worker gone");
            sent += 1;
        }
        let resp = rx.recv().expect("service worker dropped a reply");
        let mut h = mix(resp.id, u64::from(resp.status));
        for line in &resp.headers {
            h = mix(h, line.len() as u64);
        }
        h = mix(h, resp.body.len() as u64);
        sum = sum.wrapping_add(h);
        received += 1;
    }
    sum
}

fn parse_query(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (path.to_string(), pairs)
}

fn handle_request(id: u64, body: &str) -> Response {
    let mut lines = body.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (path, query) = parse_query(target);
    let query: HashMap<String, String> = query.into_iter().collect();
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(": ") {
            headers.insert(k.to_ascii_lowercase(), v.to_string());
        }
    }
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let items: Vec<String> = (0..limit)
        .map(|i| {
            format!(
                "{{\"id\":{},\"name\":\"{}-{}\",\"tags\":[\"{}\"]}}",
                id.wrapping_mul(31).wrapping_add(i as u64),
                segments.last().copied().unwrap_or("root"),
                i,
                query.get("q").map_or("none", String::as_str)
            )
        })
        .collect();
    let body = format!(
        "{{\"items\":[{}],\"count\":{}}}",
        items.join(","),
        items.len()
    );
    let mut out_headers: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-header-"))
        .map(|(k, v)| format!("{k}: {}", v.len()))
        .collect();
    out_headers.sort_unstable();
    out_headers.push(format!("content-length: {}", body.len()));
    Response {
        id,
        status: 200,
        headers: out_headers,
        body,
    }
}

/// Sum of a per-line hash: independent of which helper sees which lines, so the total
/// over all workers is deterministic.
fn digest_log(log: Vec<String>) -> u64 {
    log.iter().fold(0u64, |acc, line| {
        let h = line
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| mix(h, u64::from(b)));
        acc.wrapping_add(h)
    })
}

fn service_worker(rx: &mpsc::Receiver<Request>) -> u64 {
    const LOG_BATCH: usize = 128;
    let mut log: Vec<String> = Vec::new();
    let mut sum = 0u64;
    for req in rx {
        let resp = handle_request(req.id, &req.body);
        log.push(format!("{} {} {}", req.id, resp.status, resp.body.len()));
        // The response goes back to the client thread, which frees it; the request
        // (allocated by the client) is freed here.
        // An error means the client is gone, which only happens on a panic there.
        let _ = req.reply.send(resp);
        if log.len() == LOG_BATCH {
            let batch = std::mem::take(&mut log);
            let helper = thread::spawn(move || digest_log(batch));
            sum = sum.wrapping_add(helper.join().expect("service helper panicked"));
        }
    }
    sum.wrapping_add(digest_log(log))
}

// --- pipeline ------------------------------------------------------------------------

/// A request on its way through the pipeline.
struct Job {
    id: u64,
    body: String,
}

/// Multi-stage service: one dispatcher builds requests and deals them round-robin to the
/// workers over bounded channels; each worker parses its request (and frees it: the
/// dispatcher allocated it), builds a response and sends it on to one collector, which
/// frees it (a worker allocated it). So every block dies on another thread than the one that
/// made it, and at 16 workers threads outnumber the cores. Every 128 requests a worker
/// hands its access log to a short-lived helper thread.
fn pipeline(p: &Params, default_workers: usize) -> u64 {
    let workers = p.threads_or(default_workers);
    let total = p.n(60_000);
    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::sync_channel::<Response>(256);
        let collector = s.spawn(move || {
            let mut sum = 0u64;
            for resp in done_rx {
                let mut h = mix(resp.id, u64::from(resp.status));
                for line in &resp.headers {
                    h = mix(h, line.len() as u64);
                }
                sum = sum.wrapping_add(mix(h, resp.body.len() as u64));
            }
            sum
        });
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<Job>(64);
            queues.push(tx);
            let done = done_tx.clone();
            handles.push(s.spawn(move || pipeline_worker(&rx, &done)));
        }
        drop(done_tx);
        let mut rng = Rng::new(4242);
        for n in 0..total {
            let body = make_request(&mut rng, n as u64 % 97, n as u64);
            queues[n % workers]
                .send(Job { id: n as u64, body })
                .expect("pipeline worker gone");
        }
        drop(queues);
        let mut sum = 0u64;
        for h in handles {
            sum = sum.wrapping_add(h.join().expect("pipeline worker panicked"));
        }
        sum.wrapping_add(collector.join().expect("pipeline collector panicked"))
    })
}

fn pipeline_worker(rx: &mpsc::Receiver<Job>, done: &mpsc::SyncSender<Response>) -> u64 {
    const LOG_BATCH: usize = 128;
    let mut log: Vec<String> = Vec::new();
    let mut sum = 0u64;
    for job in rx {
        let resp = handle_request(job.id, &job.body);
        log.push(format!("{} {} {}", job.id, resp.status, resp.body.len()));
        drop(job);
        done.send(resp).expect("pipeline collector gone");
        if log.len() == LOG_BATCH {
            let batch = std::mem::take(&mut log);
            let helper = thread::spawn(move || digest_log(batch));
            sum = sum.wrapping_add(helper.join().expect("pipeline helper panicked"));
        }
    }
    sum.wrapping_add(digest_log(log))
}

fn pipeline4(p: &Params) -> u64 {
    pipeline(p, 4)
}

fn pipeline16(p: &Params) -> u64 {
    pipeline(p, 16)
}

// --- dispatch ------------------------------------------------------------------------

/// A request as the dispatcher builds it.
struct Req {
    id: u64,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A worker's reply, freed by the collector.
struct Reply {
    id: u64,
    text: String,
    tags: Vec<String>,
}

fn dispatch_request(rng: &mut Rng, id: u64) -> Req {
    let headers = (0..rng.range(3, 12))
        .map(|h| {
            let name = format!("X-{}-{h}", WORDS[rng.below(WORDS.len())]);
            let value: String = (0..rng.range(4, 40))
                .map(|_| char::from(b'a' + rng.below(26) as u8))
                .collect();
            (name, value)
        })
        .collect();
    let len = rng.range(64, 4097);
    let tag = id as u8;
    let body = (0..len).map(|k| (k as u8) ^ tag).collect();
    Req { id, headers, body }
}

fn dispatch_handle(req: Req) -> Reply {
    // The request (allocated by the dispatcher) is taken apart and freed here.
    let map: HashMap<String, String> = req
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    let mut text = format!("{{\"id\":{},\"len\":{}", req.id, req.body.len());
    for k in &keys {
        let v = &map[*k];
        // A temporary per header, as a service's formatting code makes them.
        let field = format!(",\"{k}\":\"{}\"", v.to_uppercase());
        text.push_str(&field);
    }
    let sum = req
        .body
        .iter()
        .step_by(61)
        .fold(0u64, |h, &b| mix(h, u64::from(b)));
    text.push_str(&format!(",\"sum\":{sum}}}"));
    let tags = keys
        .iter()
        .filter(|k| k.contains('a'))
        .map(|k| (*k).clone())
        .collect();
    Reply {
        id: req.id,
        text,
        tags,
    }
}

fn dispatch_worker(rx: &mpsc::Receiver<Req>, done: &mpsc::Sender<Reply>) -> u64 {
    const LOG_BATCH: usize = 256;
    let mut log: Vec<String> = Vec::new();
    let mut sum = 0u64;
    for req in rx {
        let reply = dispatch_handle(req);
        log.push(format!("{} {}", reply.id, reply.text.len()));
        // An error means the collector is gone, which only happens on a panic there.
        let _ = done.send(reply);
        if log.len() == LOG_BATCH {
            let batch = std::mem::take(&mut log);
            let helper = thread::spawn(move || digest_log(batch));
            sum = sum.wrapping_add(helper.join().expect("dispatch helper panicked"));
        }
    }
    sum.wrapping_add(digest_log(log))
}

/// A dispatcher deals requests at random to the workers over *unbounded* queues, so it runs
/// ahead of them (the queues fill with requests it allocated); each worker parses its
/// requests (freeing them), builds a reply with maps, strings and temporaries, and sends it
/// to one collector, which frees it. Every 256 requests a worker hands its log to a
/// short-lived helper thread.
fn dispatch(p: &Params, default_workers: usize) -> u64 {
    let workers = p.threads_or(default_workers);
    let total = p.n(50_000);
    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<Reply>();
        let collector = s.spawn(move || {
            done_rx.into_iter().fold(0u64, |acc, r| {
                let h = r.tags.iter().fold(mix(r.id, r.text.len() as u64), |h, t| {
                    mix(h, t.len() as u64)
                });
                let h = r.text.bytes().fold(h, |h, b| mix(h, u64::from(b)));
                acc.wrapping_add(h)
            })
        });
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Req>();
            senders.push(tx);
            let done = done_tx.clone();
            handles.push(s.spawn(move || dispatch_worker(&rx, &done)));
        }
        drop(done_tx);
        let mut rng = Rng::new(4242);
        for i in 0..total {
            let req = dispatch_request(&mut rng, i as u64);
            senders[rng.below(workers)]
                .send(req)
                .expect("dispatch worker gone");
        }
        drop(senders);
        let mut sum = 0u64;
        for h in handles {
            sum = sum.wrapping_add(h.join().expect("dispatch worker panicked"));
        }
        sum.wrapping_add(collector.join().expect("dispatch collector panicked"))
    })
}

fn dispatch4(p: &Params) -> u64 {
    dispatch(p, 4)
}

fn dispatch16(p: &Params) -> u64 {
    dispatch(p, 16)
}

// --- prodcons ------------------------------------------------------------------------

/// Producers allocate batches of blocks and send them to consumers, which free them.
fn prodcons(p: &Params) -> u64 {
    let pairs = p.threads_or(4);
    let per_producer = p.n(9600) / pairs;
    let mut consumers_tx = Vec::with_capacity(pairs);
    thread::scope(|s| {
        let mut consumers = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(4);
            consumers_tx.push(tx);
            consumers.push(s.spawn(move || {
                let mut sum = 0u64;
                for batch in rx {
                    for b in &batch {
                        let last = b.last().copied().unwrap_or(0);
                        sum = sum.wrapping_add(u64::from(b[0]) + u64::from(last) + b.len() as u64);
                    }
                }
                sum
            }));
        }
        let producers: Vec<_> = (0..pairs)
            .map(|i| {
                let txs = consumers_tx.clone();
                s.spawn(move || {
                    let mut rng = Rng::new(2000 + i as u64);
                    for b in 0..per_producer {
                        let len = rng.range(200, 1000);
                        let mut batch: Vec<Box<[u8]>> = Vec::with_capacity(len);
                        for _ in 0..len {
                            let size = if rng.one_in(16) {
                                rng.range(512, 8192)
                            } else {
                                rng.range(16, 512)
                            };
                            let mut blk = vec![0u8; size].into_boxed_slice();
                            blk[0] = rng.next_u64() as u8;
                            blk[size - 1] = blk[0] ^ 0x5a;
                            batch.push(blk);
                        }
                        txs[(i + b) % txs.len()].send(batch).expect("consumer gone");
                    }
                })
            })
            .collect();
        for h in producers {
            h.join().expect("producer panicked");
        }
        consumers_tx.clear();
        consumers
            .into_iter()
            .map(|h| h.join().expect("consumer panicked"))
            .fold(0u64, u64::wrapping_add)
    })
}

// --- larson --------------------------------------------------------------------------

fn larson_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0 => rng.range(8192, 131_072),
        1..=9 => rng.range(1024, 8192),
        _ => rng.range(16, 1024),
    }
}

/// Larson-style server: threads replace random slots of one shared pool, freeing the
/// block they displace, which another thread usually allocated.
fn larson(p: &Params) -> u64 {
    const SLOTS: usize = 8192;
    let threads = p.threads_or(8);
    let per_thread = p.n(4_000_000) / threads;
    let mut seed = Rng::new(3000);
    let slots: Vec<Mutex<Vec<u8>>> = (0..SLOTS)
        .map(|_| Mutex::new(block(larson_size(&mut seed), 1)))
        .collect();
    let slots = &slots;
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng::new(3001 + t as u64);
                    let mut sum = 0u64;
                    for _ in 0..per_thread {
                        let size = larson_size(&mut rng);
                        let tag = rng.next_u64() as u8;
                        let new = block(size, tag);
                        sum = sum.wrapping_add(size as u64 + u64::from(tag));
                        let slot = &slots[rng.below(SLOTS)];
                        let old = {
                            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
                            std::mem::replace(&mut *guard, new)
                        };
                        black_box(old.first());
                        drop(old);
                    }
                    sum
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("larson thread panicked"))
            .fold(0u64, u64::wrapping_add)
    })
}

// --- falseshare ----------------------------------------------------------------------

type Obj = Box<[u64; 2]>;

/// Writes `obj` `n` times; `black_box` forces every store to memory.
#[inline]
fn hammer(obj: &mut Obj, n: usize) {
    for _ in 0..n {
        obj[0] = obj[0].wrapping_add(1);
        black_box(&mut *obj);
    }
}

/// Allocator-induced false sharing (Hoard's cache-scratch and cache-thrash, plus the
/// reverse hand-off): small objects that different threads write heavily must not share
/// cache lines just because of where the allocator put them.
fn falseshare(p: &Params) -> u64 {
    let threads = p.threads_or(4);
    let rounds = p.n(80_000);
    let writes = 100;
    // A: allocated by one thread, written (then freed and reallocated) by others.
    let handed_out: Vec<Obj> = (0..threads).map(|i| Box::new([i as u64, 0])).collect();
    let a = thread::scope(|s| {
        let hs: Vec<_> = handed_out
            .into_iter()
            .map(|mut obj| {
                s.spawn(move || {
                    let mut sum = 0u64;
                    for _ in 0..rounds {
                        hammer(&mut obj, writes);
                        sum = sum.wrapping_add(obj[0]);
                        // Free (possibly a remote free) and take a fresh one: an allocator
                        // that reuses the freed block here puts the threads side by side.
                        #[allow(clippy::replace_box, reason = "the new allocation is the point")]
                        {
                            obj = Box::new([0, 0]);
                        }
                    }
                    sum
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("falseshare A"))
            .fold(0u64, u64::wrapping_add)
    });
    // B: every thread allocates its own objects and writes them.
    let b = thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut sum = 0u64;
                    for r in 0..rounds {
                        let mut obj: Obj = Box::new([r as u64, 0]);
                        hammer(&mut obj, writes);
                        sum = sum.wrapping_add(obj[0]);
                    }
                    sum
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("falseshare B"))
            .fold(0u64, u64::wrapping_add)
    });
    // C: many threads allocate, one thread writes them all and frees them. The writer is
    // the bottleneck: each batch carries 64 objects and 6 400 writes, so the phase's time
    // is the writer's stores (slowed if producers' fresh objects share its lines) and not
    // the channel's hand-offs (batches of 32 with 800 writes spent 95 % of their time
    // blocking and waking, and varied ±30 % from run to run with the scheduler).
    let batches = (rounds / 32).max(1);
    let c = thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Obj>>(threads);
        let writer = s.spawn(move || {
            let mut sum = 0u64;
            for mut batch in rx {
                for obj in &mut batch {
                    hammer(obj, writes);
                    sum = sum.wrapping_add(obj[0]);
                }
            }
            sum
        });
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let tx = tx.clone();
                s.spawn(move || {
                    for r in 0..batches {
                        let batch: Vec<Obj> =
                            (0..64).map(|i| Box::new([(t + r + i) as u64, 0])).collect();
                        tx.send(batch).expect("falseshare writer gone");
                    }
                })
            })
            .collect();
        drop(tx);
        for h in hs {
            h.join().expect("falseshare C");
        }
        writer.join().expect("falseshare writer")
    });
    mix(mix(a, b), c)
}

// --- churn ---------------------------------------------------------------------------

/// Thousands of short-lived threads, a wave at a time, each allocating a little; a few
/// of their strings outlive them and are freed by the main thread later.
fn churn(p: &Params) -> u64 {
    let total = p.n(3000);
    let wave = p.threads_or(16);
    let mut kept: Vec<Vec<String>> = Vec::new();
    let mut sum = 0u64;
    let mut started = 0usize;
    while started < total {
        let n = wave.min(total - started);
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let id = (started + i) as u64;
                thread::spawn(move || {
                    let mut rng = Rng::new(4000 + id);
                    let strings: Vec<String> = (0..rng.range(300, 900))
                        .map(|_| "x".repeat(rng.range(8, 200)))
                        .collect();
                    let numbers: Vec<u64> =
                        (0..rng.range(64, 512) as u64).map(|k| k * id).collect();
                    let map: HashMap<u32, String> =
                        (0..32u32).map(|k| (k, format!("{id}-{k}"))).collect();
                    let mut h = strings.iter().map(String::len).sum::<usize>() as u64;
                    h = mix(h, numbers.iter().copied().fold(0, u64::wrapping_add));
                    h = mix(h, map.values().map(String::len).sum::<usize>() as u64);
                    let keep: Vec<String> = strings.into_iter().step_by(16).collect();
                    (h, keep)
                })
            })
            .collect();
        for h in handles {
            let (h, keep) = h.join().expect("churn thread panicked");
            sum = sum.wrapping_add(h + keep.len() as u64);
            kept.push(keep);
        }
        if kept.len() > 256 {
            kept.drain(..128);
        }
        started += n;
    }
    sum
}

// --- realloc -------------------------------------------------------------------------

/// Growth by reallocation: interleaved byte vectors pushed to several MiB, a `Vec<u64>`
/// grown by single pushes, strings grown with `reserve_exact` (one realloc per step),
/// then `shrink_to_fit`.
fn realloc(p: &Params) -> u64 {
    const PATTERN: [u8; 64] = [0xA5; 64];
    let rounds = p.n(20);
    let mut rng = Rng::new(5000);
    let mut sum = 0u64;
    for _ in 0..rounds {
        // Six byte vectors growing side by side, so in-place growth is not trivial.
        let targets: Vec<usize> = (0..6).map(|_| rng.range(1 << 20, 6 << 20)).collect();
        let mut vs: Vec<Vec<u8>> = (0..6).map(|_| Vec::new()).collect();
        let mut open: Vec<usize> = (0..6).collect();
        while !open.is_empty() {
            let k = rng.below(open.len());
            let i = open[k];
            vs[i].extend_from_slice(&PATTERN[..rng.range(1, 64)]);
            if vs[i].len() >= targets[i] {
                open.swap_remove(k);
            }
        }
        sum = vs.iter().fold(sum, |acc, v| mix(acc, v.len() as u64));
        drop(vs);

        let mut words: Vec<u64> = Vec::new();
        for k in 0..rng.range(200_000, 500_000) as u64 {
            words.push(k);
        }
        sum = mix(sum, words.len() as u64 + words[words.len() / 2]);
        drop(words);

        // Strings grown a step at a time with an exact reserve: a realloc per step.
        let mut strings: Vec<String> = (0..128).map(|_| String::new()).collect();
        for step in 0..96 {
            for (i, s) in strings.iter_mut().enumerate() {
                let add = 16 + (i + step) % 32;
                s.reserve_exact(add);
                for _ in 0..add {
                    s.push('z');
                }
            }
        }
        for s in strings.iter_mut().step_by(2) {
            s.truncate(s.len() / 3);
            s.shrink_to_fit();
        }
        sum = strings.iter().fold(sum, |acc, s| mix(acc, s.len() as u64));
    }
    sum
}

// --- footprint -----------------------------------------------------------------------

fn footprint_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=4 => rng.range(16 << 10, 256 << 10),
        5..=149 => rng.range(512, 4096),
        _ => rng.range(16, 512),
    }
}

/// Writes the first bytes and one byte per OS page so that the whole block counts in RSS.
fn touch(v: &mut Vec<u8>, size: usize, tag: u8) {
    v.resize(size.min(256), tag);
    for byte in v.spare_capacity_mut().iter_mut().step_by(4096) {
        byte.write(tag);
    }
}

/// Long churn with a small live set: 8 generations of 4 threads; each generation takes
/// over the previous one's rings of live blocks (so the blocks of exited threads are
/// freed by new ones) and replaces random slots. Traffic is GiBs, live data ~10 MiB.
fn footprint(p: &Params) -> u64 {
    const RING: usize = 1024;
    const GENERATIONS: usize = 8;
    let threads = p.threads_or(4);
    let per_thread = p.n(9_600_000) / (GENERATIONS * threads);
    let mut rings: Vec<Vec<Vec<u8>>> = (0..threads).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for g in 0..GENERATIONS {
        let handles: Vec<_> = rings
            .into_iter()
            .enumerate()
            .map(|(t, mut ring)| {
                thread::spawn(move || {
                    let mut rng = Rng::new(6000 + (g * 64 + t) as u64);
                    let mut traffic = 0u64;
                    if ring.is_empty() {
                        ring = (0..RING).map(|_| Vec::new()).collect();
                    }
                    for _ in 0..per_thread {
                        let size = footprint_size(&mut rng);
                        let mut v = Vec::with_capacity(size);
                        touch(&mut v, size, size as u8);
                        traffic += size as u64;
                        ring[rng.below(RING)] = v;
                    }
                    (traffic, ring)
                })
            })
            .collect();
        rings = Vec::with_capacity(threads);
        for h in handles {
            let (traffic, ring) = h.join().expect("footprint thread panicked");
            sum = sum.wrapping_add(traffic);
            rings.push(ring);
        }
        // Hand each ring to a different thread of the next generation.
        rings.rotate_left(1);
    }
    let live: usize = rings.iter().flatten().map(Vec::len).sum();
    mix(sum, live as u64)
}

// --- compiler ------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Op {
    Add,
    Mul,
    Sub,
}

enum Expr {
    Num(i64),
    Var(u32),
    Str(String),
    Bin(Box<Expr>, Op, Box<Expr>),
    Call(u32, Vec<Expr>),
    Let(u32, Box<Expr>, Box<Expr>),
}

struct Token {
    kind: u8,
    text: String,
}

fn gen_expr(rng: &mut Rng, depth: u32, names: &[u32], nodes: &mut usize) -> Expr {
    *nodes += 1;
    if depth == 0 || rng.one_in(4) {
        return match rng.below(3) {
            0 => Expr::Num(rng.below(1000) as i64),
            1 => Expr::Var(names[rng.below(names.len())]),
            _ => Expr::Str(format!("s{}", rng.below(100_000))),
        };
    }
    match rng.below(4) {
        0 | 1 => {
            let op = [Op::Add, Op::Mul, Op::Sub][rng.below(3)];
            let l = gen_expr(rng, depth - 1, names, nodes);
            let r = gen_expr(rng, depth - 1, names, nodes);
            Expr::Bin(Box::new(l), op, Box::new(r))
        }
        2 => {
            let args = (0..rng.range(0, 5))
                .map(|_| gen_expr(rng, depth - 1, names, nodes))
                .collect();
            Expr::Call(names[rng.below(names.len())], args)
        }
        _ => {
            let v = gen_expr(rng, depth - 1, names, nodes);
            let body = gen_expr(rng, depth - 1, names, nodes);
            Expr::Let(names[rng.below(names.len())], Box::new(v), Box::new(body))
        }
    }
}

/// Constant folding into a fresh tree (the old one is dropped by the caller).
fn fold(e: &Expr, env: &mut HashMap<u32, i64>) -> Expr {
    match e {
        Expr::Num(n) => Expr::Num(*n),
        Expr::Var(v) => env.get(v).map_or(Expr::Var(*v), |n| Expr::Num(*n)),
        Expr::Str(s) => Expr::Str(s.to_uppercase()),
        Expr::Bin(l, op, r) => match (fold(l, env), fold(r, env)) {
            (Expr::Num(a), Expr::Num(b)) => Expr::Num(match op {
                Op::Add => a.wrapping_add(b),
                Op::Mul => a.wrapping_mul(b) % 1_000_003,
                Op::Sub => a.wrapping_sub(b),
            }),
            (l, r) => Expr::Bin(Box::new(l), *op, Box::new(r)),
        },
        Expr::Call(f, args) => Expr::Call(*f, args.iter().map(|a| fold(a, env)).collect()),
        Expr::Let(v, val, body) => {
            let val = fold(val, env);
            let saved = env.remove(v);
            if let Expr::Num(n) = val {
                env.insert(*v, n);
            }
            let body = fold(body, env);
            env.remove(v);
            if let Some(s) = saved {
                env.insert(*v, s);
            }
            Expr::Let(*v, Box::new(val), Box::new(body))
        }
    }
}

fn emit(e: &Expr, names: &HashMap<u32, String>, out: &mut String) {
    match e {
        Expr::Num(n) => out.push_str(&n.to_string()),
        Expr::Var(v) => out.push_str(names.get(v).map_or("?", String::as_str)),
        Expr::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Expr::Bin(l, op, r) => {
            out.push('(');
            emit(l, names, out);
            out.push_str(match op {
                Op::Add => " + ",
                Op::Mul => " * ",
                Op::Sub => " - ",
            });
            emit(r, names, out);
            out.push(')');
        }
        Expr::Call(f, args) => {
            out.push_str(names.get(f).map_or("?", String::as_str));
            let rendered: Vec<String> = args
                .iter()
                .map(|a| {
                    let mut s = String::new();
                    emit(a, names, &mut s);
                    s
                })
                .collect();
            out.push('(');
            out.push_str(&rendered.join(", "));
            out.push(')');
        }
        Expr::Let(v, val, body) => {
            out.push_str("let ");
            out.push_str(names.get(v).map_or("?", String::as_str));
            out.push_str(" = ");
            emit(val, names, out);
            out.push_str(" in ");
            emit(body, names, out);
        }
    }
}

/// Single-threaded compiler-like work: lex into tokens, intern identifiers, build
/// expression trees, fold them into new trees, emit text, fill symbol tables of many
/// sizes, and drop it all, unit after unit.
fn compiler(p: &Params) -> u64 {
    let units = p.n(600);
    let mut rng = Rng::new(7000);
    let mut sum = 0u64;
    for unit in 0..units {
        // Lexing: a token vector with owned texts.
        let tokens: Vec<Token> = (0..rng.range(1000, 4000))
            .map(|_| {
                let kind = rng.below(4) as u8;
                let text = match kind {
                    0 => format!("id_{}", rng.below(600)),
                    1 => rng.below(100_000).to_string(),
                    2 => String::from(["(", ")", "+", "*", "-", "let", "in"][rng.below(7)]),
                    _ => "w".repeat(rng.range(1, 24)),
                };
                Token { kind, text }
            })
            .collect();
        // Interning.
        let mut interner: HashMap<String, u32> = HashMap::new();
        for t in tokens.iter().filter(|t| t.kind == 0) {
            let next = interner.len() as u32;
            interner.entry(t.text.clone()).or_insert(next);
        }
        let names: HashMap<u32, String> = interner.iter().map(|(k, v)| (*v, k.clone())).collect();
        let mut ids: Vec<u32> = interner.values().copied().collect();
        ids.sort_unstable();
        if ids.is_empty() {
            ids.push(0);
        }
        // Parsing and folding.
        let mut nodes = 0usize;
        let trees: Vec<Expr> = (0..rng.range(4, 12))
            .map(|_| gen_expr(&mut rng, 11, &ids, &mut nodes))
            .collect();
        let mut env = HashMap::new();
        let folded: Vec<Expr> = trees.iter().map(|t| fold(t, &mut env)).collect();
        drop(trees);
        let mut out = String::new();
        for t in &folded {
            emit(t, &names, &mut out);
            out.push('\n');
        }
        drop(folded);
        // Symbol tables of many sizes.
        let tables: Vec<HashMap<u64, Vec<u32>>> = [8usize, 64, 512, 4096]
            .iter()
            .map(|&n| {
                (0..n as u64)
                    .map(|k| {
                        (
                            k * 2654435761 + unit as u64,
                            vec![k as u32; (k % 7) as usize],
                        )
                    })
                    .collect()
            })
            .collect();
        let table_total: usize = tables
            .iter()
            .map(|t| t.values().map(Vec::len).sum::<usize>())
            .sum();
        sum = mix(sum, out.len() as u64);
        sum = mix(sum, nodes as u64 + table_total as u64 + tokens.len() as u64);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every workload runs at a tiny scale and gives the same checksum twice.
    #[test]
    fn deterministic_checksums() {
        let p = Params {
            scale: 0.01,
            threads: Some(3),
        };
        for w in WORKLOADS {
            assert_eq!((w.run)(&p), (w.run)(&p), "{}", w.name);
        }
    }
}
