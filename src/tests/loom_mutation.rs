//! `cfg(loom_mutation = "…")`: the planted bug must make its model fail. Each mutation names
//! the model that catches it; the test runs that model under `catch_unwind` and asserts that
//! loom reported a failure. See `docs/loom.md` for the failing output of each.

/// The model that catches the mutation this build was compiled with.
fn model_for_mutation() -> (&'static str, fn()) {
    if cfg!(loom_mutation = "lock_release_relaxed") || cfg!(loom_mutation = "lock_acquire_relaxed")
    {
        (
            "tcache refill/flush",
            super::loom_tcache_flush::refill_and_flush_race_remote_flush,
        )
    } else if cfg!(loom_mutation = "remote_push_relaxed")
        || cfg!(loom_mutation = "remote_drain_relaxed")
    {
        (
            "remote free",
            super::loom_remote_free::remote_free_races_owner,
        )
    } else if cfg!(loom_mutation = "attach_unlocked") || cfg!(loom_mutation = "attach_ignores_cap")
    {
        ("registry", super::loom_registry::race_for_last_arena)
    } else if cfg!(loom_mutation = "exit_recycle_before_flush") {
        ("thread exit", super::loom_thread_exit::exit_races_attach)
    } else if cfg!(loom_mutation = "tcache_count_torn") {
        ("stats", super::loom_stats::stats_while_counters_change)
    } else if cfg!(loom_mutation = "remote_bytes_late") {
        (
            "stats (remote pending)",
            super::loom_stats::remote_pending_never_wraps,
        )
    } else {
        panic!("no model is registered for this loom_mutation value")
    }
}

#[test]
fn loom_mutation_is_caught() {
    let (name, f) = model_for_mutation();
    let r = std::panic::catch_unwind(f);
    assert!(
        r.is_err(),
        "the {name} model passed although the code carries a planted bug"
    );
    eprintln!("loom_mutation_is_caught: the {name} model reported the planted bug");
}
