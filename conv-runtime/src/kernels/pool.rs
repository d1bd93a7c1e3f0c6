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
//! layer's) they take at once.
//!
//! The looking is done in short stretches ([`STRETCH`]), each a rayon job that queues the
//! next on its thread. A job runs on top of whatever its thread was doing: a thread waiting
//! for the other half of a `join` (a backward pass joins its input and weight gradients, a
//! user may call layers from parallel code) takes queued jobs while it waits, and cannot
//! return to the join before the job ends. One job looking for the whole period held such
//! continuations up to 200 µs: two-thread backward passes ran as slowly as one thread's
//! (sr-x3 0.68 -> 0.96 ms, fastest of six alternated runs, Intel Xeon). A stretch holds them
//! at most [`STRETCH`], and a thread inside a layer call of its own hands a looking job on
//! at once. In stretches, against rayon's parking (twelve alternated runs of the whole
//! `suite --quick --json --backward`, the same Xeon in a slow and noisy hour, medians at two
//! threads): sr-x3 backward 0.668 -> 0.611 ms, down-s2 backward 1.685 -> 1.554, context-d4
//! forward 0.827 -> 0.788, sr-x3 forward 0.290 -> 0.276; one thread level.
//!
//! `CONVGEN_KEEP_WARM_US` sets the period in microseconds (0: park at once, as rayon does).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the pool's threads look for work after a parallel layer call before parking,
/// unless `CONVGEN_KEEP_WARM_US` says otherwise.
const KEEP_WARM: Duration = Duration::from_micros(200);

/// The longest one looking job runs before it hands over to the next: what it may hold up a
/// continuation below it on its thread.
const STRETCH: Duration = Duration::from_micros(10);

/// The end of the looking, in nanoseconds from [`epoch`]: each parallel call, and each job
/// a looking thread runs, moves it to [`keep_warm_period`] from then.
static LOOK_UNTIL: AtomicU64 = AtomicU64::new(0);

/// One thread's chain of looking jobs.
struct Chain {
    /// Cleared when the chain ends.
    alive: AtomicBool,
    /// The count of live chains of the thread whose layer call started this one
    /// ([`STARTED_HERE`] there).
    started_by: Arc<AtomicUsize>,
}

impl Chain {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn end(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.started_by.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// Whether the layer call running on this thread has gone parallel.
    static PARALLEL: Cell<bool> = const { Cell::new(false) };
    /// How many layer calls are running on this thread (one, or none, unless a call is
    /// made inside another).
    static CALLS_HERE: Cell<usize> = const { Cell::new(0) };
    /// Whether a looking job is running on this thread: another one reaching it (taken while
    /// it looks) ends its chain at once rather than nesting.
    static LOOKING_HERE: Cell<bool> = const { Cell::new(false) };
    /// The chain of looking jobs this thread started last; while it is alive the thread
    /// starts no other.
    static CHAIN: RefCell<Option<Arc<Chain>>> = const { RefCell::new(None) };
    /// How many chains, on other threads, this thread's layer calls have started that are
    /// alive.
    static STARTED_HERE: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// Marks the layer call running on this thread as parallel.
pub(crate) fn mark_parallel() {
    PARALLEL.set(true);
}

/// Runs one layer call, `call`, on this thread; if it went parallel ([`mark_parallel`]),
/// keeps the pool's other threads looking for work afterwards. A call made inside another
/// (none is today) answers for itself: the mark of the one around it is kept aside.
pub(crate) fn layer_call<R>(call: impl FnOnce() -> R) -> R {
    layer_call_keeping_warm(keep_warm_period(), call)
}

/// [`layer_call`] with the looking's `period` given.
fn layer_call_keeping_warm<R>(period: Duration, call: impl FnOnce() -> R) -> R {
    /// Counts the call out of [`CALLS_HERE`] however it ends.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            CALLS_HERE.set(CALLS_HERE.get() - 1);
        }
    }
    let outer = PARALLEL.replace(false);
    CALLS_HERE.set(CALLS_HERE.get() + 1);
    let running = Running;
    let result = call();
    drop(running);
    if PARALLEL.replace(outer) {
        keep_warm(period);
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

/// The instant [`LOOK_UNTIL`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now, in nanoseconds from [`epoch`].
fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Moves the end of the looking to `period` from now, unless it is later already.
fn look_until(period: Duration) {
    let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    LOOK_UNTIL.fetch_max(now_ns().saturating_add(period), Ordering::Relaxed);
}

/// Has the current pool's threads other than the caller look for work until none has come
/// for `period`. Returns at once: the looking is jobs of those threads'.
fn keep_warm(period: Duration) {
    if period.is_zero() || rayon::current_num_threads() < 2 {
        return;
    }
    look_until(period);
    let caller = rayon::current_thread_index();
    // Every other thread still looking since this thread's last call (the common case, a
    // network's layers one after another): the new end of the looking is all it takes.
    // Asking each thread again cost seed-upconv's two-thread forward pass (8 µs) 7%.
    let others = rayon::current_num_threads() - usize::from(caller.is_some());
    let started_here = STARTED_HERE.with(Arc::clone);
    if started_here.load(Ordering::Relaxed) >= others {
        return;
    }
    rayon::spawn_broadcast(move |context| {
        if Some(context.index()) == caller {
            return;
        }
        let started = CHAIN.with_borrow_mut(|chain| {
            if chain.as_ref().is_some_and(|chain| chain.is_alive()) {
                return None;
            }
            started_here.fetch_add(1, Ordering::Relaxed);
            let started = Arc::new(Chain {
                alive: AtomicBool::new(true),
                started_by: Arc::clone(&started_here),
            });
            *chain = Some(Arc::clone(&started));
            Some(started)
        });
        if let Some(chain) = started {
            look(chain, period);
        }
    });
}

/// One stretch of looking for work, then the next stretch queued on this thread, until
/// [`LOOK_UNTIL`] passes.
fn look(chain: Arc<Chain>, period: Duration) {
    if LOOKING_HERE.get() {
        chain.end();
        return;
    }
    // A thread inside a layer call has taken this job while it waits for part of the call
    // that another thread runs: queued again at once, the job lets it go back to the call
    // as soon as that part is done, and another thread that is idle may take it. Until the
    // looking's end: past it, the waiting thread would take the job again and again for as
    // long as it waits rather than park.
    if CALLS_HERE.get() > 0 {
        if now_ns() >= LOOK_UNTIL.load(Ordering::Relaxed) {
            chain.end();
        } else {
            queue(chain, period);
        }
        return;
    }
    LOOKING_HERE.set(true);
    let stretch_end = Instant::now() + STRETCH;
    let mut done = false;
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => look_until(period),
            // Nothing pending: give the core to whatever else wants it (the caller's own
            // code between layers, where it shares this core) before looking again.
            _ => std::thread::yield_now(),
        }
        if now_ns() >= LOOK_UNTIL.load(Ordering::Relaxed) {
            done = true;
            break;
        }
        if Instant::now() >= stretch_end {
            break;
        }
    }
    LOOKING_HERE.set(false);
    if done {
        chain.end();
    } else {
        queue(chain, period);
    }
}

/// Queues the chain's next looking job on this thread's own deque: taken next when the
/// thread is idle (or by another thread of the pool that is).
fn queue(chain: Arc<Chain>, period: Duration) {
    rayon::spawn(move || look(chain, period));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough that a loaded machine does not end the looking before the tests look.
    const PERIOD: Duration = Duration::from_millis(100);

    fn two_threads() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    /// Whether a chain of looking jobs this thread started is alive.
    fn looking() -> bool {
        CHAIN.with_borrow(|chain| chain.as_ref().is_some_and(|chain| chain.is_alive()))
    }

    /// Keeps the calling thread busy for `time`.
    fn spin(time: Duration) {
        let start = Instant::now();
        while start.elapsed() < time {
            std::hint::spin_loop();
        }
    }

    /// What each thread of a two-thread pool is doing right after a layer call on one of
    /// them (`parallel`: whether the call went parallel): whether it is the caller, and
    /// whether it is looking for work.
    fn threads_after_a_call(parallel: bool) -> Vec<(bool, bool)> {
        two_threads().install(|| {
            let value = layer_call_keeping_warm(PERIOD, || {
                if parallel {
                    mark_parallel();
                }
                (0..1000).sum::<usize>()
            });
            assert_eq!(value, 499_500, "the call's own result");
            let caller = rayon::current_thread_index();
            rayon::broadcast(|context| (Some(context.index()) == caller, looking()))
        })
    }

    /// After a parallel call the other thread is looking for work (it runs the next job,
    /// this broadcast, from there), the caller is not; after a serial call neither is.
    #[test]
    fn only_a_parallel_call_keeps_the_other_threads_warm() {
        let mut after_parallel = threads_after_a_call(true);
        after_parallel.sort();
        assert_eq!(after_parallel, [(false, true), (true, false)]);
        assert!(
            threads_after_a_call(false)
                .iter()
                .all(|&(_, looking)| !looking)
        );
    }

    /// A thread that waits in a `join` for work another thread took, and looks for work
    /// meanwhile, goes back to the join within a stretch of looking once that work is done,
    /// not at the end of the looking period: a backward pass joins its two gradients so.
    /// Here one thread runs a parallel layer call (5 ms) while the other runs a join of two
    /// halves (8 ms each): the first thread takes the second half when its call is done, and
    /// the other, done with the first half, is asked to look while it waits for it. With a
    /// single job looking for the whole period this failed in four runs of five (in the
    /// fifth the host had not woken the second thread in time to take part).
    #[test]
    fn looking_does_not_hold_up_a_join_for_the_period() {
        let elapsed = two_threads().install(|| {
            let start = Instant::now();
            rayon::join(
                || {
                    layer_call_keeping_warm(PERIOD, || {
                        mark_parallel();
                        spin(Duration::from_millis(1));
                    })
                },
                || {
                    rayon::join(
                        || spin(Duration::from_millis(2)),
                        || spin(Duration::from_millis(2)),
                    )
                },
            );
            start.elapsed()
        });
        assert!(elapsed < PERIOD / 2, "the join took {elapsed:?}");
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
