//! Planted bugs (`sync::mutation`): each must be reported by the model meant for it, with the
//! report that names it — a causality violation, a deadlock, or the model's own assertion —
//! not just any panic. The mutations are switched on at run time for the test's own thread
//! (loom runs a model's threads on the thread that calls it), so the models and the mutation
//! runs share one build. See `docs/loom.md` for each mutation and its report.

use super::{
    loom_lock, loom_registry, loom_remote_free, loom_run, loom_stats, loom_tcache_flush,
    loom_thread_exit,
};

/// Every mutation planted in the code: its name, the model that must catch it, and a part of
/// the report that the model must fail with.
pub(crate) const MUTATIONS: &[(&str, fn(), &str)] = &[
    (
        "lock_acquire_relaxed",
        loom_lock::two_threads,
        "Causality violation",
    ),
    ("lock_wake_dropped", loom_lock::two_threads, "deadlock"),
    (
        "lock_woken_takes_held",
        loom_lock::three_threads,
        "deadlock",
    ),
    (
        "lock_release_relaxed",
        loom_tcache_flush::refill_and_flush_race_remote_flush,
        "Causality violation",
    ),
    (
        "remote_push_relaxed",
        loom_remote_free::remote_free_races_owner,
        "Causality violation",
    ),
    (
        "remote_drain_relaxed",
        loom_remote_free::remote_free_races_owner,
        "Causality violation",
    ),
    (
        "remote_push_lost",
        loom_remote_free::two_pushers,
        "remote frees left pending",
    ),
    (
        "remote_drain_not_swapped",
        loom_remote_free::two_freers_vs_cache_owner,
        "accounts more free than committed",
    ),
    (
        "attach_unlocked",
        loom_registry::race_for_last_arena,
        "cache attached to an arena the table lost",
    ),
    (
        "attach_ignores_cap",
        loom_registry::race_for_last_arena,
        "arena cap exceeded",
    ),
    (
        "free_to_main_arena",
        loom_registry::busy_arena_tries_another,
        "accounts more free than committed",
    ),
    (
        "exit_keeps_attached",
        loom_registry::reuse_after_exit,
        "attach counts do not add up",
    ),
    (
        "exit_recycle_before_flush",
        loom_thread_exit::exit_races_attach,
        "Causality violation",
    ),
    (
        "tcache_count_torn",
        loom_stats::stats_while_counters_change,
        "Causality violation",
    ),
    (
        "run_push_relaxed",
        loom_run::push_races_collect,
        "Causality violation",
    ),
    (
        "run_collect_relaxed",
        loom_run::push_races_collect,
        "Causality violation",
    ),
    (
        "run_push_lost",
        loom_run::two_pushers,
        "run remote frees lost",
    ),
    (
        "run_steal_relaxed",
        loom_run::steal_races_collect,
        "Causality violation",
    ),
    (
        "run_steal_torn",
        loom_run::steal_races_collect,
        "double free",
    ),
    (
        "orphan_sweep_no_collect",
        loom_run::push_races_owner_exit,
        "orphan runs not given back",
    ),
    (
        "remote_bytes_late",
        loom_stats::remote_pending_never_wraps,
        "remote pending wrapped or torn",
    ),
];

/// The driver `.ci/loom.sh` runs once per mutation, each in a process of its own (a deadlock
/// found by loom ends in an abort during loom's clean-up, which no `catch_unwind` survives):
/// `LOOM_MUTATION=list` prints `MUTATION <name>` for each; `LOOM_MUTATION=<name>` prints
/// `EXPECT <report>`, plants the bug and runs its model, which must fail with that report
/// (the script checks the output); a model that passes fails with `MUTATION NOT CAUGHT`.
/// Ignored in plain runs: it is a driver, not a check, without the script.
#[test]
#[ignore = "run by .ci/loom.sh, one mutation per process"]
fn loom_mutation_driver() {
    let only = std::env::var("LOOM_MUTATION").unwrap_or_default();
    if only == "list" {
        for (name, _, _) in MUTATIONS {
            println!("MUTATION {name}");
        }
        return;
    }
    let Some(&(name, model, want)) = MUTATIONS.iter().find(|m| m.0 == only) else {
        panic!("LOOM_MUTATION={only:?} names no planted mutation");
    };
    println!("EXPECT {want}");
    crate::sync::mutation::set(name);
    model();
    crate::sync::mutation::set("");
    panic!("MUTATION NOT CAUGHT: the model passed with {name} planted");
}
