//! Keeping the pool's threads awake between layer calls.
//!
//! Rayon parks a thread that has found no work after a few dozen rounds of yielding, tens of
//! microseconds; the next parallel section then waits for it to be woken. A network calls
//! its layers one after another, so between two calls the other threads park, and every
//! call pays the wake-up. On the shared VMs we measure on that was the most of what two
//! threads lost against onnxruntime's, whose pool (as OpenMP's) spins for a while after each
//! parallel region: `perf sched latency` of context-d4's forward pass at two threads found
//! 0.17 ms of scheduling delay on average per switch of our threads, where a parked vCPU
//! has to be woken by the host, and the two-thread medians of `suite --quick` runs were
//! often those of one thread.
//!
//! So after a layer call that ran on several threads, the pool's other threads keep
//! looking for work, yielding the core between looks, until they have found none for
//! [`KEEP_WARM`]; then rayon parks them as before. Work that comes in meanwhile (the next
//! layer's) they take at once. Intel Xeon, two threads, fastest and median of six
//! alternated `suite --only CASE --quick` runs, without and with (`CONVGEN_KEEP_WARM_US=0`
//! and the default): context-d4 0.751 / 0.953 -> 0.708 / 0.987 ms, dcgan-up 0.890 / 1.457
//! -> 0.793 / 1.214, down-s2 0.504 / 0.579 -> 0.473 / 0.522, sr-x3 0.242 / 0.338 -> 0.209
//! / 0.224, seed-upconv 0.0070 / 0.0091 -> 0.0069 / 0.0072 (a slow hour of the host; one
//! thread unchanged). Called from outside the pool (the caller not one of its threads),
//! context-d4 and seed-dilated ran level or faster (`suite --repeat`, wall time).
//!
//! `CONVGEN_KEEP_WARM_US` sets the time in microseconds (0: park at once, as rayon does).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the pool's threads look for work after a parallel layer call before parking,
/// unless `CONVGEN_KEEP_WARM_US` says otherwise.
const KEEP_WARM: Duration = Duration::from_micros(200);

thread_local! {
    /// Whether the layer call running on this thread has gone parallel.
    static PARALLEL: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is keeping warm already: another call's request then returns at
    /// once rather than nesting.
    static WARM: Cell<bool> = const { Cell::new(false) };
}

/// Marks the layer call running on this thread as parallel.
pub(crate) fn mark_parallel() {
    PARALLEL.set(true);
}

/// Runs one layer call, `call`, on this thread; if it went parallel ([`mark_parallel`]),
/// keeps the pool's other threads looking for work afterwards. A call made inside another
/// (none is today) answers for itself: the mark of the one around it is kept aside.
pub(crate) fn layer_call<R>(call: impl FnOnce() -> R) -> R {
    let outer = PARALLEL.replace(false);
    let result = call();
    if PARALLEL.replace(outer) {
        keep_warm(keep_warm_period());
    }
    result
}

/// [`KEEP_WARM`], or `CONVGEN_KEEP_WARM_US` microseconds, read once.
fn keep_warm_period() -> Duration {
    static PERIOD: OnceLock<Duration> = OnceLock::new();
    *PERIOD.get_or_init(|| {
        std::env::var("CONVGEN_KEEP_WARM_US")
            .ok()
            .and_then(|value| value.trim().parse().ok())
            .map_or(KEEP_WARM, Duration::from_micros)
    })
}

/// Has every thread of the current pool but the calling one look for work until it has
/// found none for `period`. Returns at once: the looking is a job of each thread's.
fn keep_warm(period: Duration) {
    if period.is_zero() || rayon::current_num_threads() < 2 {
        return;
    }
    let caller = rayon::current_thread_index();
    rayon::spawn_broadcast(move |context| {
        if Some(context.index()) == caller || WARM.get() {
            return;
        }
        WARM.set(true);
        let mut last_work = Instant::now();
        while last_work.elapsed() < period {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => last_work = Instant::now(),
                // Nothing pending: give the core to whatever else wants it (the caller's
                // own code between layers, where it shares this core) before looking again.
                _ => std::thread::yield_now(),
            }
        }
        WARM.set(false);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each thread of a two-thread pool is doing right after a layer call on one of
    /// them (`parallel`: whether the call went parallel): whether it is the caller, and
    /// whether it is keeping warm.
    fn threads_after_a_call(parallel: bool) -> Vec<(bool, bool)> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let value = layer_call(|| {
                if parallel {
                    mark_parallel();
                }
                (0..1000).sum::<usize>()
            });
            assert_eq!(value, 499_500, "the call's own result");
            let caller = rayon::current_thread_index();
            rayon::broadcast(|context| (Some(context.index()) == caller, WARM.get()))
        })
    }

    /// After a parallel call the other thread is looking for work (it runs the next job,
    /// this broadcast, from there), the caller is not; after a serial call neither is.
    #[test]
    fn only_a_parallel_call_keeps_the_other_threads_warm() {
        let mut after_parallel = threads_after_a_call(true);
        after_parallel.sort();
        assert_eq!(after_parallel, [(false, true), (true, false)]);
        assert!(threads_after_a_call(false).iter().all(|&(_, warm)| !warm));
    }

    /// Each call starts unmarked and leaves the mark of the call around it as it was.
    #[test]
    fn each_call_has_its_own_mark() {
        assert!(!layer_call(|| PARALLEL.get()));
        let (outer_before, outer_after) = layer_call(|| {
            mark_parallel();
            let before = PARALLEL.get();
            assert!(!layer_call(|| PARALLEL.get()));
            layer_call(mark_parallel);
            (before, PARALLEL.get())
        });
        assert!(outer_before && outer_after);
        assert!(!PARALLEL.get());
    }
}
