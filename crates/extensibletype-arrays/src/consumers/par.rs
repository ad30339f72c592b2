//! Multi-threaded `sum`, `dot` and `axpy` for large inputs.
//!
//! Below [`PAR_MIN`] elements (or with one thread) these call the
//! single-threaded kernels directly, so small inputs give bit-for-bit the
//! results they always had. From [`PAR_MIN`] on, the iteration is cut into
//! parts of about [`PART`] elements (along the one run of a contiguous
//! array, on multiples of 512 elements, or along the outermost axis); the
//! cut depends on the shape only, and part results are added in part
//! order, so a result never depends on the thread count or on timing.
//!
//! Parts are claimed from a shared counter by the calling thread and by the
//! workers of a small persistent pool (threads - 1 workers, parked on a
//! condition variable between jobs). The caller never waits for a worker
//! to wake up: if none shows up (a busy machine), it computes every part
//! itself; it only waits for parts a worker has already claimed. The
//! callers have released the GIL; workers never touch Python.

use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use crate::consumers::kernels::{self, Elem};
use crate::consumers::nd::Nd;

/// Element count from which the kernels use several threads.
pub(crate) const PAR_MIN: usize = 1 << 17;
/// Target part size in elements.
const PART: usize = 1 << 16;
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

/// Cut `nd` into parts (None: too small to be worth it).
fn split<const K: usize>(nd: &Nd<K>) -> Option<Vec<Part<K>>> {
    if nd.size < PAR_MIN || nd.ndim == 0 {
        return None;
    }
    let n = nd.shape[0];
    let inner = nd.size / n; // elements per index of axis 0
    // Along the run itself (ndim 1): whole grains; along an outer axis: rows.
    let unit = if nd.ndim == 1 { GRAIN } else { 1 };
    let per = (PART / inner.max(1)).div_ceil(unit).max(1) * unit;
    let count = n.div_ceil(per);
    if count < 2 {
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

/// A job in the pool: parts claimed from `next`, `active` workers inside.
struct Job {
    next: AtomicUsize,
    count: usize,
    active: AtomicUsize,
    /// `work(i)` computes part i (borrowed from the caller's frame).
    work: *const (dyn Fn(usize) + Sync),
}

impl Job {
    /// Claim and compute parts until none is left; returns how many.
    fn drain(&self) -> usize {
        let mut done = 0;
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.count {
                return done;
            }
            done += 1;
            // SAFETY: `work` lives until the caller has seen active == 0
            // after unpublishing the job (see `run`).
            unsafe { (*self.work)(i) };
        }
    }
}

/// The published job (pointer + generation), and the workers' wake-up.
struct Pool {
    /// The process that started the workers: a forked child has none (and
    /// its copy of the locks may be held), so it computes every part itself.
    pid: u32,
    slot: Mutex<(usize, u64)>,
    wake: Condvar,
    workers: Mutex<usize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool { pid: std::process::id(), slot: Mutex::new((0, 0)), wake: Condvar::new(), workers: Mutex::new(0) })
}

/// Parts computed by pool workers so far (diagnostics: `_threads_info`).
pub(crate) static WORKER_PARTS: AtomicUsize = AtomicUsize::new(0);

/// Generation of the latest published job (read without the lock by
/// workers that spin after a job).
static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// How long a worker spins for the next job before it parks (as BLAS
/// libraries do: back-to-back calls then find it awake).
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

fn worker(pool: &'static Pool) {
    let mut seen = 0u64;
    loop {
        let t0 = std::time::Instant::now();
        let mut spins = 0u32;
        while GENERATION.load(Ordering::Acquire) == seen {
            core::hint::spin_loop();
            spins += 1;
            if spins % 256 == 0 {
                if t0.elapsed() > SPIN {
                    break;
                }
                // Give way to other runnable threads (a busy machine).
                std::thread::yield_now();
            }
        }
        let job = {
            let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
            while g.1 == seen {
                g = pool.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            seen = g.1;
            if g.0 == 0 {
                // Woke too late: that job is done. Spin for the next one.
                continue;
            }
            let job = g.0 as *const Job;
            // SAFETY: published jobs stay alive while published; entering
            // under the lock makes the caller wait for our exit.
            unsafe { (*job).active.fetch_add(1, Ordering::AcqRel) };
            job
        };
        // SAFETY: as above (active > 0 keeps the job alive).
        unsafe {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let n = (*job).drain();
                WORKER_PARTS.fetch_add(n, Ordering::Relaxed);
            }));
            (*job).active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Make sure `n` workers exist (never fewer than asked once started).
fn ensure_workers(pool: &'static Pool, n: usize) {
    let mut w = pool.workers.lock().unwrap_or_else(|e| e.into_inner());
    while *w < n {
        let spawned = std::thread::Builder::new()
            .name("extensibletype-kernels".into())
            .spawn(move || worker(pool))
            .is_ok();
        if !spawned {
            break;
        }
        *w += 1;
    }
}

/// Compute `f` on every part (caller and pool); results in part order.
fn run<const K: usize, R: Send + Copy + Default>(parts: Vec<Part<K>>, f: impl Fn(&Nd<K>) -> R + Sync) -> Vec<R> {
    let results: Vec<Mutex<R>> = (0..parts.len()).map(|_| Mutex::new(R::default())).collect();
    let work = |i: usize| {
        let r = f(&parts[i].0);
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = r;
    };
    let pool = pool();
    let t = if pool.pid == std::process::id() { threads() } else { 1 };
    let work_ref: &(dyn Fn(usize) + Sync) = &work;
    // SAFETY: lifetime erasure only; the job is unpublished and every worker
    // has left it before this frame (and `work`) ends.
    let work_ptr: *const (dyn Fn(usize) + Sync + 'static) = unsafe { core::mem::transmute(work_ref) };
    let job = Job { next: AtomicUsize::new(0), count: parts.len(), active: AtomicUsize::new(0), work: work_ptr };
    if t > 1 {
        ensure_workers(pool, t - 1);
        let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = &job as *const Job as usize;
        g.1 = g.1.wrapping_add(1).max(1);
        GENERATION.store(g.1, Ordering::Release);
        drop(g);
        pool.wake.notify_all();
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.drain()));
    if t > 1 {
        let mut g = pool.slot.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = 0;
        drop(g);
        while job.active.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
    }
    if let Err(e) = mine {
        std::panic::resume_unwind(e);
    }
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
    match split(nd) {
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
    match split(nd) {
        // SAFETY: forwarded.
        Some(parts) => pairwise(&run(parts, |p| unsafe { kernels::dot::<T>(p) })),
        // SAFETY: forwarded.
        None => unsafe { kernels::dot::<T>(nd) },
    }
}

/// [`kernels::axpy`] (operand 0 = y), on several threads for large inputs:
/// the parts of y are disjoint.
///
/// # Safety
/// As [`kernels::axpy`].
pub(crate) unsafe fn axpy<T: Elem>(nd: &Nd<2>, a: T) {
    match split(nd) {
        Some(parts) => {
            // SAFETY: forwarded; disjoint parts of y.
            run(parts, |p| unsafe { kernels::axpy::<T>(p, a) });
        }
        // SAFETY: forwarded.
        None => unsafe { kernels::axpy::<T>(nd, a) },
    }
}
