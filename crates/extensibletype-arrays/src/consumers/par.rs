//! Multi-threaded `sum`, `dot` and `axpy` for large inputs.
//!
//! Below [`PAR_MIN`] elements ([`DOT_PAR_MIN`] for `dot`), or with one
//! thread, these call the single-threaded kernels directly, so small inputs
//! give bit-for-bit the results they always had. From there on, the
//! iteration is cut into parts of about [`PART`] elements, or [`PARTS`]
//! parts of a smaller input (along the one run of a contiguous array, on
//! multiples of 512 elements, or along the outermost axis); the
//! cut depends on the shape only, and part results are added in part
//! order, so a result never depends on the thread count or on timing.
//!
//! Parts are claimed by the calling thread and by the workers of a small
//! persistent pool (threads - 1 workers): each thread first takes the parts
//! of its own contiguous stretch of the input (the same stretch on every
//! call, as OpenBLAS splits), then those left at the ends of the others'
//! (see [`Job::lanes`]). Hand-off never
//! depends on the OS scheduling a spinning thread: an idle worker spins
//! with `spin_loop` for at most [`SPIN`] (20 µs, no `yield_now`), then
//! sleeps on a condition variable (a futex), which the caller signals when
//! it publishes a job and a worker sleeps. The caller never waits for a
//! worker to wake up: if none shows up (a busy machine), it computes every
//! part itself; it only waits for parts a worker has already claimed —
//! a spin as long as two of its own parts (a worker finishing the part it
//! holds), then a condition variable the last worker signals. A longer
//! wait means a worker was descheduled mid-part (an oversubscribed
//! machine), so calls run alone for the next [`ALONE_FACTOR`] times that
//! wait (the same parts: the result does not change). The callers have
//! released the GIL; workers never touch Python. A panic in a worker's part (no kernel panics today) is
//! re-raised in the caller, never turned into a zero part.
//!
//! [`PAR_MIN`] and [`DOT_PAR_MIN`] were measured, not guessed: `python benches/kernels.py
//! --sweep` times each kernel with one thread and with the automatic count
//! at n = 2^12 … 3·2^20 (threshold forced to 1 through `_set_par_min`) and
//! prints the smallest n where the threaded time is lower and stays lower
//! at ≥ 3/4 of the larger sizes (docs/arrays.md, "Threads in the kernels").

use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use crate::consumers::kernels::{self, Elem};
use crate::consumers::nd::Nd;

/// Element count from which the kernels use several threads: the
/// crossover measured by `benches/kernels.py --sweep` on the 2-vCPU build
/// VM with other builds running (sum 786,432; dot and axpy 1,048,576; one
/// threshold for all three, the largest, so no kernel is slowed by threads
/// below its crossover). It was 2^17, a guess.
pub(crate) const PAR_MIN: usize = 1 << 20;
/// Element count from which `dot` uses several threads: NumPy's `x @ y`
/// (OpenBLAS `ddot`) threads from 10,001 elements, so a single-threaded
/// `dot` loses to it at 10^5–10^6. `benches/kernels.py --sweep` (best of
/// 21, load average 6–7.6) found threaded `dot` faster than one thread at
/// every n from 49,152 on; this is the next power of two (docs/arrays.md).
pub(crate) const DOT_PAR_MIN: usize = 1 << 16;
/// Bytes of memory (see [`streamed_bytes`]) from which `dot` takes the
/// streaming loop ([`kernels::dot_stream`]). Measured on one machine, an
/// Intel Xeon guest (`benches/kernels.py --stream`; docs/arrays.md, "Dot
/// past the cache"): from 10^6 elements (16 MB contiguous) on the streaming
/// loop was ahead of the AVX-512 cached loop in every cell, and of the AVX2
/// one by 9–10% at 10^7 (within the noise at 10^6); from 2·10^5 to 6·10^5
/// elements (3–19 MB) no loop was consistently ahead. 8 MiB lies in that
/// band.
pub(crate) const STREAM_MIN: usize = 8 << 20;
/// Forced streaming threshold in bytes (default [`STREAM_MIN`]); tests and
/// `benches/kernels.py --stream` (`_set_stream_min`, feature `hooks`).
pub(crate) static STREAM_MIN_FORCED: Forced = Forced::new();
/// Largest part size in elements.
const PART: usize = 1 << 16;
/// Inputs below `PARTS * PART` elements are cut into about this many parts
/// (of whole grains), so a worker that arrives late finds parts left, and
/// one that is descheduled holds a small share.
const PARTS: usize = 8;
/// Forced threading threshold (default [`PAR_MIN`] / [`DOT_PAR_MIN`]); the
/// sweep in `benches/kernels.py` (`_set_par_min`, feature `hooks`).
pub(crate) static PAR_MIN_FORCED: Forced = Forced::new();

/// A threshold that tests and benches may force; 0 (the start) means the
/// built-in default.
pub(crate) struct Forced(AtomicUsize);

impl Forced {
    const fn new() -> Forced {
        Forced(AtomicUsize::new(0))
    }

    /// The forced value, or `default` when none is.
    #[inline]
    fn or(&self, default: usize) -> usize {
        match self.0.load(Ordering::Relaxed) {
            0 => default,
            n => n,
        }
    }

    /// Force `n` (0: back to the default); returns the previous forced value.
    #[cfg_attr(not(any(feature = "hooks", test)), allow(dead_code))]
    pub(crate) fn set(&self, n: usize) -> usize {
        self.0.swap(n, Ordering::Relaxed)
    }
}
/// Cut points along a run are multiples of this many elements.
const GRAIN: usize = 512;

/// Forced thread count (0: the machine's available parallelism).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads the kernels use for large inputs (caller included).
pub(crate) fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            static AUTO: OnceLock<usize> = OnceLock::new();
            *AUTO.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(64))
        }
        n => n,
    }
}

/// Force the thread count (0: automatic). For tests and benchmarks
/// (`_set_threads`, feature `hooks`).
#[cfg_attr(not(feature = "hooks"), allow(dead_code))]
pub(crate) fn set_threads(n: usize) {
    THREADS.store(n.min(64), Ordering::Relaxed);
}

/// An [`Nd`] part, shared with the pool's workers.
struct Part<const K: usize>(Nd<K>);

// SAFETY: a part addresses memory the calling thread holds views of until
// every claimed part is done (see `run`); parts of axpy's y are disjoint, so
// no two threads write one element, and other operands are only read.
unsafe impl<const K: usize> Sync for Part<K> {}
// SAFETY: as for Sync: the memory outlives every worker that touches a part.
unsafe impl<const K: usize> Send for Part<K> {}

/// Cut `nd` into parts (None: below `min` elements, or too small to cut).
fn split<const K: usize>(nd: &Nd<K>, min: usize) -> Option<Vec<Part<K>>> {
    if nd.size < PAR_MIN_FORCED.or(min) || nd.ndim == 0 {
        return None;
    }
    let n = nd.shape[0];
    let inner = nd.size / n; // elements per index of axis 0
    // Along the run itself (ndim 1): whole grains; along an outer axis: rows.
    // Parts of PART elements, or PARTS parts of a smaller input (the cut
    // depends on the shape only; from PARTS * PART on it is always PART).
    let unit = if nd.ndim == 1 { GRAIN } else { 1 };
    let part = PART.min(nd.size.div_ceil(PARTS));
    let per = (part / inner.max(1)).div_ceil(unit).max(1) * unit;
    let count = n.div_ceil(per);
    // (Part indices live in 32 bits: see `Lane`.)
    if count < 2 || count > u32::MAX as usize {
        return None;
    }
    let parts = (0..count)
        .map(|i| {
            let (start, end) = (i * per, ((i + 1) * per).min(n));
            let mut p = Nd::<K> { ndim: nd.ndim, shape: nd.shape, strides: nd.strides, ptrs: nd.ptrs, size: 0 };
            p.shape[0] = end - start;
            for k in 0..K {
                p.ptrs[k] = nd.ptrs[k].wrapping_offset(start as isize * nd.strides[k][0]);
            }
            p.size = inner * (end - start);
            Part(p)
        })
        .collect();
    Some(parts)
}

/// One thread's share of a job's parts, `[front, back)` packed in one word
/// (front in the low 32 bits): its owner takes parts from the front, a
/// thread that has run out of its own takes them from the back.
struct Lane(core::sync::atomic::AtomicU64);

impl Lane {
    fn new(front: usize, back: usize) -> Lane {
        Lane(core::sync::atomic::AtomicU64::new(front as u64 | (back as u64) << 32))
    }

    /// Take the first part left (`from_back`: the last), if any.
    #[inline]
    fn take(&self, from_back: bool) -> Option<usize> {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (cur & 0xffff_ffff, cur >> 32);
            if front >= back {
                return None;
            }
            let (new, i) = if from_back { (cur - (1 << 32), back - 1) } else { (cur + 1, front) };
            match self.0.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(i as usize),
                Err(c) => cur = c,
            }
        }
    }
}

/// A job in the pool: `active` workers inside, parts claimed from `lanes`.
struct Job {
    /// Lane r (r = 0: the caller, r = i + 1: worker i) holds parts
    /// `[r·count/t, (r+1)·count/t)` for t lanes: each thread streams through
    /// one contiguous stretch of the input, the same on every call, as
    /// OpenBLAS's static split does (a part's data can stay in the cache of
    /// the core that read it on the last call; with one shared counter the
    /// parts changed threads from call to call), and takes other lanes' parts
    /// from their ends once its own are done (a late or descheduled worker
    /// delays nothing). Which thread computes a part never changes its
    /// result, nor the order in which results are added.
    lanes: Vec<Lane>,
    /// Threads the job was published for (caller included): worker i
    /// joins if i + 1 < threads.
    threads: usize,
    /// Workers inside; changed under `Pool::done` when leaving.
    active: AtomicUsize,
    /// The caller sleeps on `Pool::done_cv` (set and read under `Pool::done`).
    waiting: core::sync::atomic::AtomicBool,
    /// A worker's part panicked (its result is missing): the caller panics.
    panicked: core::sync::atomic::AtomicBool,
    /// `work(i)` computes part i (borrowed from the caller's frame).
    work: *const (dyn Fn(usize) + Sync),
}

impl Job {
    /// Claim and compute parts, from lane `me` first, until none is left;
    /// returns how many.
    fn drain(&self, me: usize) -> usize {
        let t = self.lanes.len();
        let mut done = 0;
        for k in 0..t {
            let lane = &self.lanes[(me + k) % t];
            while let Some(i) = lane.take(k != 0) {
                done += 1;
                // SAFETY: `work` lives until the caller has seen active == 0
                // after unpublishing the job (see `run`).
                unsafe { (*self.work)(i) };
            }
        }
        done
    }
}

/// The published job, and the workers' and callers' wake-ups.
struct Pool {
    /// The process that started the workers: a forked child has none (and
    /// its copy of the locks may be held), so it computes every part itself.
    pid: u32,
    /// The published job's address (0: none), its generation, and how many
    /// workers sleep on `wake`.
    slot: Mutex<Slot>,
    wake: Condvar,
    /// Workers leaving a job take this lock; a caller waiting for them
    /// sleeps on `done_cv`.
    done: Mutex<()>,
    done_cv: Condvar,
    /// The workers started so far (their pthreads, for [`place`]).
    workers: Mutex<Vec<Pthread>>,
}

/// A worker's pthread handle (unused off Linux).
#[cfg(unix)]
type Pthread = std::os::unix::thread::RawPthread;
#[cfg(not(unix))]
type Pthread = ();

/// What `Pool::slot` guards.
struct Slot {
    job: usize,
    generation: u64,
    sleepers: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        pid: std::process::id(),
        slot: Mutex::new(Slot { job: 0, generation: 0, sleepers: 0 }),
        wake: Condvar::new(),
        done: Mutex::new(()),
        done_cv: Condvar::new(),
        workers: Mutex::new(Vec::new()),
    })
}

/// Parts computed by pool workers so far (diagnostics: `_threads_info`).
pub(crate) static WORKER_PARTS: AtomicUsize = AtomicUsize::new(0);

/// Generation of the latest published job (read without the lock by
/// workers that spin after a job).
static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// How long an idle worker (or a caller waiting for a worker's last part)
/// spins before it sleeps on a condition variable: enough for back-to-back
/// calls to find the worker awake, too short to matter when the machine is
/// busy. Bounded by time, not by a count of `spin_loop`s: a `pause` takes
/// ~10–140 cycles on bare metal but ~110 ns in this project's KVM guest
/// (pause-loop exiting), where 2^11 of them took 230 µs.
const SPIN: std::time::Duration = std::time::Duration::from_micros(20);

/// Spin until `done()` or `limit` has passed; returns `done()`.
#[inline]
fn spin_until(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    loop {
        for _ in 0..16 {
            if done() {
                return true;
            }
            core::hint::spin_loop();
        }
        if t0.elapsed() >= limit {
            return done();
        }
    }
}

/// Worker `index` (0-based) of the pool: joins jobs published for more than
/// `index + 1` threads (so lowering the thread count takes effect: workers
/// started for a higher count stay idle).
fn worker(pool: &'static Pool, index: usize) {
    let mut seen = 0u64;
    loop {
        spin_until(SPIN, || GENERATION.load(Ordering::Acquire) != seen);
        let job = {
            let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
            while g.generation == seen {
                g.sleepers += 1;
                g = pool.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                g.sleepers -= 1;
            }
            seen = g.generation;
            let job = g.job as *const Job;
            // SAFETY: published jobs stay alive while published (we hold
            // the lock that unpublishing takes).
            if job.is_null() || index + 1 >= unsafe { (*job).threads } {
                // Woke too late (that job is done), or not needed at the
                // job's thread count. Spin for the next one.
                continue;
            }
            // SAFETY: published jobs stay alive while published; entering
            // under the lock makes the caller wait for our exit.
            unsafe { (*job).active.fetch_add(1, Ordering::AcqRel) };
            job
        };
        // SAFETY: as above (active > 0 keeps the job alive).
        unsafe {
            let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let n = (*job).drain(index + 1);
                WORKER_PARTS.fetch_add(n, Ordering::Relaxed);
            }));
            if drained.is_err() {
                // Released by the AcqRel decrement below, acquired by the
                // caller's load of `active`.
                (*job).panicked.store(true, Ordering::Relaxed);
            }
        }
        // Leave under `done`: once `active` drops, the job may be gone, so
        // `waiting` is read first (the caller sets it under the same lock).
        let wake_caller = {
            let _g = pool.done.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: as above; the job stays alive until active reaches 0.
            unsafe {
                let w = (*job).waiting.load(Ordering::Relaxed);
                (*job).active.fetch_sub(1, Ordering::AcqRel);
                w
            }
        };
        if wake_caller {
            pool.done_cv.notify_all();
        }
    }
}

/// Make sure `n` workers exist (never fewer than asked once started).
fn ensure_workers(pool: &'static Pool, n: usize) {
    let mut w = pool.workers.lock().unwrap_or_else(|e| e.into_inner());
    while w.len() < n {
        let spawned = std::thread::Builder::new().name("extensibletype-kernels".into()).spawn({
            let index = w.len();
            move || worker(pool, index)
        });
        let Ok(handle) = spawned else { break };
        #[cfg(unix)]
        let id = std::os::unix::thread::JoinHandleExt::as_pthread_t(&handle);
        #[cfg(not(unix))]
        let id = ();
        // Detached: workers never exit, so the pthread stays valid.
        drop(handle);
        w.push(id);
        #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
        place::forget();
    }
}

/// Keeping sleeping workers off the caller's CPU (Linux).
///
/// A worker woken from its condition variable is placed by the scheduler,
/// which prefers the waker's CPU (wake-affine) when the machine does not
/// present the CPUs as sharing a cache level it balances over (this KVM
/// guest): the worker then queues behind the caller, or preempts it, on
/// one CPU while the other idles, and the call takes one thread's time.
/// Measured: 10^6-element `dot` 394–408 µs with the two on different
/// CPUs, 470–580 µs (the worker computing 0 or all 16 parts) on the same
/// one. Before publishing, the caller therefore limits the workers to its
/// own allowed CPUs minus the one it runs on (one `pthread_setaffinity_np`
/// per worker, only when that CPU changed since the last call).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
mod place {
    use core::ffi::c_int;
    use core::sync::atomic::{AtomicI64, Ordering};

    use super::Pthread;

    /// `cpu_set_t`: a bit per CPU, 1024 CPUs.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub(super) struct CpuSet(pub(super) [u64; 16]);

    extern "C" {
        fn sched_getcpu() -> c_int;
        fn sched_getaffinity(pid: c_int, size: usize, mask: *mut CpuSet) -> c_int;
        fn pthread_setaffinity_np(thread: Pthread, size: usize, mask: *const CpuSet) -> c_int;
    }

    /// The CPU the workers were last kept off (-1: none yet).
    static OFF: AtomicI64 = AtomicI64::new(-1);

    /// A worker was added: limit them all again on the next call.
    pub(super) fn forget() {
        OFF.store(-1, Ordering::Relaxed);
    }

    /// The CPU this thread runs on, if known.
    pub(super) fn cpu() -> Option<usize> {
        // SAFETY: no arguments; returns -1 on failure.
        let c = unsafe { sched_getcpu() };
        usize::try_from(c).ok().filter(|&c| c < 1024)
    }

    /// This thread's allowed CPUs.
    pub(super) fn allowed() -> Option<CpuSet> {
        let mut set = CpuSet([0; 16]);
        // SAFETY: `set` is a writable cpu_set_t of the size passed; pid 0
        // is the calling thread.
        let r = unsafe { sched_getaffinity(0, core::mem::size_of::<CpuSet>(), &mut set) };
        (r == 0).then_some(set)
    }

    /// Limit `workers` to the caller's allowed CPUs minus its current one
    /// (nothing if that leaves none, or it is already done).
    pub(super) fn keep_off_my_cpu(workers: &[Pthread]) {
        let Some(me) = cpu() else { return };
        if OFF.load(Ordering::Relaxed) != me as i64 && limit(workers, me) {
            OFF.store(me as i64, Ordering::Relaxed);
        }
    }

    /// Limit `workers` to this thread's allowed CPUs minus `cpu`; false if
    /// that leaves none (then nothing changes) or the mask is unknown.
    pub(super) fn limit(workers: &[Pthread], cpu: usize) -> bool {
        let Some(mut set) = allowed() else { return false };
        set.0[cpu / 64] &= !(1u64 << (cpu % 64));
        if set.0.iter().all(|&b| b == 0) {
            return false;
        }
        for &w in workers {
            // SAFETY: `w` is a live thread (a detached, never exiting
            // worker, or a test's thread); `set` is a cpu_set_t of the size
            // passed. A failure (EINVAL: no allowed CPU online) leaves its
            // mask unchanged.
            unsafe { pthread_setaffinity_np(w, core::mem::size_of::<CpuSet>(), &set) };
        }
        true
    }
}

/// Until when (ns on [`now_ns`]'s clock) callers run alone after one had to
/// sleep for a late worker; 0: never.
static ALONE_UNTIL: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// Callers run alone for this many times the wait, by the clock: a late
/// worker then costs at most about 1/ALONE_FACTOR of the time that follows
/// on a machine that stays oversubscribed, and the same for small and large
/// jobs (a count of jobs, the first rule, kept a 10^7-element `dot` alone
/// for half a second after one 3 ms wait). A budget that only the jobs run
/// alone used up (the second rule) outlived the load that caused it: after
/// one late wake-up, calls seconds later still ran alone.
const ALONE_FACTOR: u32 = 8;
/// Longest the caller spins for a worker's claimed part before it sleeps.
const WAIT_SPIN_MAX: std::time::Duration = std::time::Duration::from_millis(1);

/// Nanoseconds since the first call (a monotonic clock for [`ALONE_UNTIL`]).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let e = *EPOCH.get_or_init(std::time::Instant::now);
    (e.elapsed().as_nanos().min(u64::MAX as u128) as u64).max(1)
}

/// Compute `f` on every part (caller and pool); results in part order.
fn run<const K: usize, R: Send + Copy + Default>(parts: Vec<Part<K>>, f: impl Fn(&Nd<K>) -> R + Sync) -> Vec<R> {
    let results: Vec<Mutex<R>> = (0..parts.len()).map(|_| Mutex::new(R::default())).collect();
    let work = |i: usize| {
        let r = f(&parts[i].0);
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = r;
    };
    let pool = pool();
    let mut t = if pool.pid == std::process::id() { threads() } else { 1 };
    // A worker recently made a caller wait long (see below): run alone.
    if t > 1 && now_ns() < ALONE_UNTIL.load(Ordering::Relaxed) {
        t = 1;
    }
    let work_ref: &(dyn Fn(usize) + Sync) = &work;
    // SAFETY: lifetime erasure only; the job is unpublished and every worker
    // has left it before this frame (and `work`) ends.
    let work_ptr: *const (dyn Fn(usize) + Sync + 'static) = unsafe { core::mem::transmute(work_ref) };
    let count = parts.len();
    let job = Job {
        lanes: (0..t).map(|r| Lane::new(r * count / t, (r + 1) * count / t)).collect(),
        threads: t,
        active: AtomicUsize::new(0),
        waiting: core::sync::atomic::AtomicBool::new(false),
        panicked: core::sync::atomic::AtomicBool::new(false),
        work: work_ptr,
    };
    let me = &job as *const Job as usize;
    if t > 1 {
        ensure_workers(pool, t - 1);
        #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
        place::keep_off_my_cpu(&pool.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
        g.job = me;
        g.generation = g.generation.wrapping_add(1).max(1);
        GENERATION.store(g.generation, Ordering::Release);
        let sleepers = g.sleepers;
        drop(g);
        // Spinning workers see GENERATION; only sleeping ones need the
        // futex wake (a system call).
        if sleepers > 0 {
            pool.wake.notify_all();
        }
    }
    let t0 = std::time::Instant::now();
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.drain(0)));
    // The caller's own time per part: the yardstick for "a worker is late".
    let my_part = t0.elapsed() / (*mine.as_ref().unwrap_or(&1)).max(1) as u32;
    if t > 1 {
        let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
        // Another caller may have replaced our job in the slot (then no
        // worker can enter ours any more); leave theirs published.
        if g.job == me {
            g.job = 0;
        }
        drop(g);
        // Wait for parts workers have claimed. A worker that holds one
        // finishes it within about one of our parts: spin that long (plus
        // SPIN, at most WAIT_SPIN_MAX), then sleep until the last worker
        // leaves. (A fixed SPIN, before, was shorter than one part from
        // 10^7 elements on: the caller slept, and was woken, in about half
        // of those calls.)
        let w0 = std::time::Instant::now();
        let patience = (2 * my_part + SPIN).min(WAIT_SPIN_MAX);
        let spun = spin_until(patience, || job.active.load(Ordering::Acquire) == 0);
        if !spun {
            let mut d = pool.done.lock().unwrap_or_else(|e| e.into_inner());
            job.waiting.store(true, Ordering::Relaxed);
            while job.active.load(Ordering::Acquire) != 0 {
                d = pool.done_cv.wait(d).unwrap_or_else(|e| e.into_inner());
            }
            drop(d);
            // Waiting up to about one part is a worker finishing the part
            // it holds. Longer than two of our own parts: on an
            // oversubscribed machine it was descheduled mid-part and we
            // waited for the OS to run it again. Run the calls of the next
            // ALONE_FACTOR times that wait alone (same parts, same result;
            // only the timing changes).
            let waited = w0.elapsed();
            if waited > 2 * my_part + SPIN {
                let span = (waited * ALONE_FACTOR).as_nanos().min(u64::MAX as u128) as u64;
                ALONE_UNTIL.store(now_ns().saturating_add(span), Ordering::Relaxed);
            }
        }
    }
    if let Err(e) = mine {
        std::panic::resume_unwind(e);
    }
    // A worker's part panicked: its result is missing, so there is no sum.
    assert!(!job.panicked.load(Ordering::Relaxed), "a kernel part panicked on a pool worker");
    results.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect()
}

/// Pairwise sum of the part results (in order).
fn pairwise<T: Elem>(v: &[T]) -> T {
    match v.len() {
        0 => T::ZERO,
        1 => v[0],
        n => pairwise(&v[..n / 2]).add(pairwise(&v[n / 2..])),
    }
}

/// [`kernels::sum`], on several threads for large inputs.
///
/// # Safety
/// As [`kernels::sum`]; the memory stays valid for the call.
pub(crate) unsafe fn sum<T: Elem>(nd: &Nd<1>) -> T {
    match split(nd, PAR_MIN) {
        // SAFETY: forwarded (each part lies inside nd's views).
        Some(parts) => pairwise(&run(parts, |p| unsafe { kernels::sum::<T>(p) })),
        // SAFETY: forwarded.
        None => unsafe { kernels::sum::<T>(nd) },
    }
}

/// [`kernels::dot`], on several threads for large inputs.
///
/// # Safety
/// As [`kernels::dot`].
pub(crate) unsafe fn dot<T: Elem>(nd: &Nd<2>) -> T {
    // Chosen once for the whole input: a part alone cannot tell a cached
    // input from a streamed one. Both loops give the same bits.
    let kernel: unsafe fn(&Nd<2>) -> T =
        if streams::<T>(nd, STREAM_MIN_FORCED.or(STREAM_MIN)) { kernels::dot_stream::<T> } else { kernels::dot::<T> };
    match split(nd, DOT_PAR_MIN) {
        // SAFETY: forwarded.
        Some(parts) => pairwise(&run(parts, |p| unsafe { kernel(p) })),
        // SAFETY: forwarded.
        None => unsafe { kernel(nd) },
    }
}

/// Does `dot` take the streaming loop for `nd` at threshold `min` bytes?
fn streams<T>(nd: &Nd<2>, min: usize) -> bool {
    streamed_bytes::<T, 2>(nd) >= min
}

/// Bytes of memory one pass over `nd` brings in, estimated per operand:
/// each innermost run of `len` elements with byte stride `s` touches
/// `len · clamp(|s|, item, 64)` bytes in whole 64-byte lines (a stride of a
/// line or more costs a line per element), and no operand touches more
/// than its extent, the span from its lowest to its highest element, in
/// whole lines (a broadcast or transposed operand counts its memory once).
/// Operands that share memory (`dot(x, x)`) count it once each.
fn streamed_bytes<T, const K: usize>(nd: &Nd<K>) -> usize {
    if nd.size == 0 {
        return 0; // (then ndim is 0; otherwise every extent is >= 1)
    }
    let lines = |bytes: usize| bytes.div_ceil(64).saturating_mul(64);
    let (len, strides) = nd.inner();
    let runs = nd.size / len;
    let item = core::mem::size_of::<T>();
    (0..K)
        .map(|k| {
            let per_run = lines(len.saturating_mul(strides[k].unsigned_abs().clamp(item, 64)));
            let extent = (0..nd.ndim)
                .map(|a| (nd.shape[a] - 1).saturating_mul(nd.strides[k][a].unsigned_abs()))
                .fold(item, usize::saturating_add);
            runs.saturating_mul(per_run).min(lines(extent))
        })
        .fold(0, usize::saturating_add)
}

/// [`kernels::axpy`] (operand 0 = y), on several threads for large inputs:
/// the parts of y are disjoint.
///
/// # Safety
/// As [`kernels::axpy`].
pub(crate) unsafe fn axpy<T: Elem>(nd: &Nd<2>, a: T) {
    match split(nd, PAR_MIN) {
        Some(parts) => {
            // SAFETY: forwarded; disjoint parts of y.
            run(parts, |p| unsafe { kernels::axpy::<T>(p, a) });
        }
        // SAFETY: forwarded.
        None => unsafe { kernels::axpy::<T>(nd, a) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{ArrayView, DLDataType};

    /// A 1-d float64 view of `data` with byte stride `stride`.
    fn view(data: &mut [f64], shape: &mut [i64; 1], stride: &mut [i64; 1]) -> ArrayView {
        let mut v = ArrayView::new();
        v.data = data.as_mut_ptr().cast();
        v.shape = shape.as_mut_ptr();
        v.strides = stride.as_mut_ptr();
        v.ndim = 1;
        v.dtype = DLDataType::F64;
        v
    }

    /// The split covers the run exactly once, in order, on whole grains:
    /// PARTS parts below PARTS * PART elements, parts of PART above; dot
    /// is cut from DOT_PAR_MIN, sum only from PAR_MIN.
    #[test]
    fn split_covers_the_run_in_order() {
        for n in [DOT_PAR_MIN - 1, DOT_PAR_MIN, 100_000, PARTS * PART - 1, PARTS * PART + 1, PAR_MIN + 511] {
            let mut x = vec![0.0f64; n];
            let (mut s, mut t) = ([n as i64], [8i64]);
            let v = view(&mut x, &mut s, &mut t);
            let nd = Nd::new([&v], true);
            let Some(parts) = split(&nd, DOT_PAR_MIN) else {
                assert!(n < DOT_PAR_MIN, "n={n} not cut");
                continue;
            };
            assert!(n >= DOT_PAR_MIN);
            assert_eq!(split(&nd, PAR_MIN).is_some(), n >= PAR_MIN, "n={n}");
            let mut at = x.as_ptr() as usize;
            for p in &parts {
                assert_eq!(p.0.ptrs[0] as usize, at, "n={n}: parts in order, no gap");
                at += 8 * p.0.size;
            }
            assert_eq!(at, x.as_ptr() as usize + 8 * n, "n={n}: every element once");
            let want = if n < PARTS * PART { PARTS } else { n.div_ceil(PART) };
            assert!(parts.len().abs_diff(want) <= 1, "n={n}: {} parts", parts.len());
            assert!(parts[..parts.len() - 1].iter().all(|p| p.0.size % GRAIN == 0));
        }
    }

    /// dot of n integer-valued elements every k-th of x and y: the exact
    /// sum of the products, the same bits on 1 and 2 threads. `check` sees
    /// the Nd first.
    fn dot_exact_on_any_thread_count(n: usize, k: usize, check: impl Fn(&Nd<2>)) {
        let mut x: Vec<f64> = (0..n * k).map(|i| ((i * 7919) % 1000) as f64).collect();
        let mut y: Vec<f64> = (0..n * k).map(|i| ((i * 104_729) % 997) as f64).collect();
        let exact: f64 = (0..n).map(|i| x[i * k] * y[i * k]).sum(); // integers < 2^53: exact
        let (mut sx, mut tx) = ([n as i64], [8 * k as i64]);
        let (mut sy, mut ty) = ([n as i64], [8 * k as i64]);
        let vx = view(&mut x, &mut sx, &mut tx);
        let vy = view(&mut y, &mut sy, &mut ty);
        let nd = Nd::new([&vx, &vy], true);
        check(&nd);
        let mut got = Vec::new();
        for t in [1, 2] {
            set_threads(t);
            // SAFETY: the views describe x and y, alive for the call.
            got.push(unsafe { dot::<f64>(&nd) });
        }
        set_threads(0);
        assert_eq!(got[0].to_bits(), got[1].to_bits(), "n={n} k={k}");
        assert_eq!(got[0], exact, "n={n} k={k}");
    }

    /// dot around DOT_PAR_MIN, contiguous and every 3rd element.
    #[test]
    fn dot_threshold_same_bits_on_any_thread_count() {
        for n in [DOT_PAR_MIN - 1, DOT_PAR_MIN, 3 * DOT_PAR_MIN + 17] {
            for k in [1usize, 3] {
                dot_exact_on_any_thread_count(n, k, |_| {});
            }
        }
    }

    /// What `dot` measures to pick its loop, for 1-d operands: the item
    /// size to a cache line per element and operand, in whole lines;
    /// contiguous float64 crosses STREAM_MIN one line below STREAM_MIN / 16
    /// elements' worth.
    #[test]
    fn streamed_bytes_per_stride() {
        let n = 1000usize;
        let mut x = vec![0.0f64; 200 * n];
        let mut y = vec![0.0f64; 200 * n];
        let mut bytes = |sx: i64, sy: i64| {
            let (mut shx, mut stx) = ([n as i64], [sx]);
            let (mut shy, mut sty) = ([n as i64], [sy]);
            let vx = view(&mut x, &mut shx, &mut stx);
            let vy = view(&mut y, &mut shy, &mut sty);
            streamed_bytes::<f64, 2>(&Nd::new([&vx, &vy], false))
        };
        assert_eq!(bytes(8, 8), 16 * n);
        assert_eq!(bytes(16, 24), 40 * n);
        assert_eq!(bytes(800, 64), 128 * n, "a line per element at most");
        assert_eq!(bytes(0, 8), 64 + 8 * n, "a broadcast operand: one line");
        // Backwards from the end of x: the same bytes as forwards.
        let (mut shx, mut stx) = ([n as i64], [-16i64]);
        let (mut shy, mut sty) = ([n as i64], [8i64]);
        let vx = view(&mut x[2 * n..], &mut shx, &mut stx);
        let vy = view(&mut y, &mut shy, &mut sty);
        assert_eq!(streamed_bytes::<f64, 2>(&Nd::new([&vx, &vy], true)), 24 * n);
        let mut x = vec![0.0f64; STREAM_MIN / 16];
        let mut y = x.clone();
        for (m, over) in [(STREAM_MIN / 16 - 8, false), (STREAM_MIN / 16 - 7, true), (0, false)] {
            let (mut shx, mut stx) = ([m as i64], [8i64]);
            let (mut shy, mut sty) = ([m as i64], [8i64]);
            let vx = view(&mut x, &mut shx, &mut stx);
            let vy = view(&mut y, &mut shy, &mut sty);
            let nd = Nd::new([&vx, &vy], true);
            assert_eq!(streamed_bytes::<f64, 2>(&nd) >= STREAM_MIN, over, "m={m}");
            assert_eq!(streams::<f64>(&nd, STREAM_MIN), over, "m={m}");
        }
    }

    /// The forced threshold replaces STREAM_MIN until reset with 0 (the
    /// only test that forces it: the others pass their threshold to
    /// `streams`; a dot running meanwhile may take the other loop, for the
    /// same bits).
    #[test]
    fn forced_stream_min() {
        let forced = &STREAM_MIN_FORCED;
        assert_eq!(forced.set(1), 0);
        assert_eq!(forced.or(STREAM_MIN), 1);
        assert_eq!(forced.set(1 << 62), 1);
        assert_eq!(forced.or(STREAM_MIN), 1 << 62);
        assert_eq!(forced.set(0), 1 << 62);
        assert_eq!(forced.or(STREAM_MIN), STREAM_MIN);
    }

    /// 2-d operands: short rows count whole lines, and an operand walked
    /// across its rows (transposed) or broadcast counts its extent once.
    #[test]
    fn streamed_bytes_2d() {
        let mut x = vec![0.0f64; 1000 * 1000];
        let mut y = vec![0.0f64; 1000 * 1000];
        let mut bytes = |shape: [i64; 2], sx: [i64; 2], sy: [i64; 2]| {
            let (mut shx, mut stx, mut shy, mut sty) = (shape, sx, shape, sy);
            let mut vx = ArrayView::new();
            vx.data = x.as_mut_ptr().cast();
            (vx.shape, vx.strides, vx.ndim, vx.dtype) = (shx.as_mut_ptr(), stx.as_mut_ptr(), 2, DLDataType::F64);
            let mut vy = ArrayView::new();
            vy.data = y.as_mut_ptr().cast();
            (vy.shape, vy.strides, vy.ndim, vy.dtype) = (shy.as_mut_ptr(), sty.as_mut_ptr(), 2, DLDataType::F64);
            streamed_bytes::<f64, 2>(&Nd::new([&vx, &vy], true))
        };
        // a[:, :2] of a 1000 x 1000 array: a line per row and operand.
        assert_eq!(bytes([1000, 2], [8000, 8], [8000, 8]), 2 * 1000 * 64);
        // C order and Fortran order: 8 MB each, whichever is walked across.
        let full = 1000 * 1000 * 8;
        assert_eq!(bytes([1000, 1000], [8000, 8], [8, 8000]), 2 * full);
        // a row broadcast down the rows: one row's 8000 bytes.
        assert_eq!(bytes([1000, 1000], [8000, 8], [0, 8]), full + 8000);
    }

    /// dot on either side of STREAM_MIN (the cached loop and the streaming
    /// one), contiguous and every 2nd element.
    #[test]
    fn dot_exact_across_the_streaming_threshold() {
        for k in [1usize, 2] {
            let at = STREAM_MIN / (16 * k);
            for n in [at - 8, at + 513] {
                dot_exact_on_any_thread_count(n, k, |nd| {
                    assert_eq!(streamed_bytes::<f64, 2>(nd) >= STREAM_MIN, n > at, "n={n} k={k}");
                });
            }
        }
    }

    /// A lane hands out each of its parts exactly once: from the front in
    /// ascending order, from the back in descending order, and while its
    /// owner takes from the front and two other threads from the back.
    #[test]
    fn lane_gives_every_part_once() {
        let lane = Lane::new(3, 9);
        assert_eq!(core::iter::from_fn(|| lane.take(false)).collect::<Vec<_>>(), (3..9).collect::<Vec<_>>());
        let lane = Lane::new(3, 9);
        assert_eq!(core::iter::from_fn(|| lane.take(true)).collect::<Vec<_>>(), (3..9).rev().collect::<Vec<_>>());
        assert_eq!(Lane::new(4, 4).take(true), None);
        for (lo, hi) in [(0usize, 0usize), (5, 6), (3, 20_003)] {
            let lane = Lane::new(lo, hi);
            let start = std::sync::Barrier::new(3);
            let got: Vec<Vec<usize>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..3)
                    .map(|k| {
                        let (lane, start) = (&lane, &start);
                        sc.spawn(move || {
                            start.wait();
                            let mut v = Vec::new();
                            while let Some(i) = lane.take(k != 0) {
                                v.push(i);
                                for _ in 0..20 {
                                    core::hint::spin_loop(); // a part's work
                                }
                            }
                            v
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(got[0].windows(2).all(|w| w[0] < w[1]));
            assert!(got[1..].iter().all(|v| v.windows(2).all(|w| w[0] > w[1])));
            let mut all: Vec<usize> = got.concat();
            all.sort_unstable();
            assert_eq!(all, (lo..hi).collect::<Vec<_>>(), "lane {lo}..{hi}");
        }
    }

    /// `place::limit` takes the given CPU out of a thread's mask and keeps
    /// it within the caller's allowed CPUs (Linux).
    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    #[test]
    fn place_limit_keeps_a_thread_off_one_cpu() {
        extern "C" {
            fn pthread_getaffinity_np(t: Pthread, size: usize, mask: *mut place::CpuSet) -> core::ffi::c_int;
        }
        let Some(before) = place::allowed() else { return };
        let cpus: Vec<usize> = (0..1024).filter(|&c| before.0[c / 64] >> (c % 64) & 1 == 1).collect();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || rx.recv().ok());
        let id = std::os::unix::thread::JoinHandleExt::as_pthread_t(&h);
        let off = cpus[0];
        assert_eq!(place::limit(&[id], off), cpus.len() > 1);
        let mut got = place::CpuSet([0; 16]);
        // SAFETY: `id` is a live thread (it waits on rx); `got` is writable.
        assert_eq!(unsafe { pthread_getaffinity_np(id, core::mem::size_of::<place::CpuSet>(), &mut got) }, 0);
        for c in 0..1024 {
            let bit = got.0[c / 64] >> (c % 64) & 1 == 1;
            let want = before.0[c / 64] >> (c % 64) & 1 == 1 && (c != off || cpus.len() == 1);
            assert_eq!(bit, want, "cpu {c}");
        }
        drop(tx);
        h.join().unwrap();
    }

    /// `run` computes every part exactly once and returns the results in
    /// part order, for 1 to 4 threads (lanes of unequal length included).
    #[test]
    fn run_covers_every_part_once_in_order() {
        let n = 37 * GRAIN + 5;
        let mut x = vec![1.0f64; n];
        let (mut s, mut t) = ([n as i64], [8i64]);
        let v = view(&mut x, &mut s, &mut t);
        let nd = Nd::new([&v], true);
        // (A threshold of 1, not a forced one: other tests run meanwhile.)
        let parts = split(&nd, 1).expect("cut");
        let want: Vec<(usize, usize)> = parts.iter().map(|p| (p.0.ptrs[0] as usize, p.0.size)).collect();
        assert!(want.len() >= 5);
        for threads in 1..=4 {
            set_threads(threads);
            let calls = AtomicUsize::new(0);
            let got = run(split(&nd, 1).expect("cut"), |p| {
                calls.fetch_add(1, Ordering::Relaxed);
                (p.ptrs[0] as usize, p.size)
            });
            assert_eq!(got, want, "{threads} threads");
            assert_eq!(calls.load(Ordering::Relaxed), want.len(), "{threads} threads");
        }
        set_threads(0);
    }
}
