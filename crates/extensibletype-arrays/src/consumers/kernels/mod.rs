//! The loops behind `sum`, `dot` and `axpy`, for float64, float32 and int64,
//! over an [`Nd`] iteration (any shape, any byte strides).
//!
//! - Contiguous runs: W independent lane accumulators (W = 32 for 64-bit
//!   types, 64 for float32) over blocks of 16·W elements, so LLVM emits
//!   vector adds/FMAs that hide their latency; block results are combined
//!   pairwise as whole lane vectors (a binary counter), and the lanes are
//!   reduced by halving at the end. Rounding error grows like NumPy's
//!   pairwise summation (16 sequential adds per lane, then log2 levels).
//! - Strided runs: 8 scalar accumulators over blocks of 128 elements
//!   (NumPy's pairwise scheme), block sums combined pairwise. Runs whose
//!   stride is 2-4 elements (e.g. `x[::2]`) for `sum`/`dot` are read as
//!   the contiguous span they cover, into lanes that map to one residue
//!   modulo the stride; the other lanes are discarded (the span lies inside
//!   the view's memory, and the cache lines would be fetched anyway).
//! - Every loop is compiled three times (x86-64 baseline, AVX2+FMA,
//!   AVX-512) and picked at run time (`is_x86_feature_detected!`); `dot`
//!   past the cache has its own streaming version (software prefetch;
//!   baseline and AVX2+FMA only), chosen per call by `par::dot`.
//!
//! Unaligned data or strides that are not a multiple of the item size
//! take the strided path with unaligned loads.

// Index loops over small fixed-size lane arrays are what LLVM vectorizes.
#![allow(clippy::needless_range_loop)]

use core::mem::MaybeUninit;

use crate::consumers::nd::Nd;

mod dispatch;
pub(crate) use dispatch::*;

/// An element type the kernels handle.
pub(crate) trait Elem: Copy + Default + PartialEq + Send + Sync + 'static {
    /// Additive identity.
    const ZERO: Self;
    /// `a + b` (wrapping for integers).
    fn add(self, b: Self) -> Self;
    /// `a * b + c` (fused when `F` and the type is a float).
    fn mul_add<const F: bool>(self, b: Self, c: Self) -> Self;
    /// Sum of a contiguous slice (type-specific lane count).
    fn contig_sum(x: &[Self]) -> Self;
    /// Sum of every `k`-th element of a contiguous span (k in 2..=4).
    fn span_sum(span: &[Self], k: usize) -> Self;
    /// Dot product of two contiguous slices of equal length (prefetching
    /// `PF` bytes ahead; 0: no prefetch).
    fn contig_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self]) -> Self;
    /// Dot of every `k`-th element of two equal spans (k in 2..=4).
    fn span_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self], k: usize) -> Self;
}

macro_rules! float_elem {
    ($t:ty, $w:literal) => {
        impl Elem for $t {
            const ZERO: Self = 0.0;
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                self + b
            }
            #[inline(always)]
            fn mul_add<const F: bool>(self, b: Self, c: Self) -> Self {
                if F {
                    <$t>::mul_add(self, b, c)
                } else {
                    self * b + c
                }
            }
            #[inline(always)]
            fn contig_sum(x: &[Self]) -> Self {
                reduce_lanes(lanes_sum::<Self, $w>(x))
            }
            #[inline(always)]
            fn span_sum(span: &[Self], k: usize) -> Self {
                // W must be a multiple of k: 3 uses W = 3 * W / 4.
                match k {
                    3 => every_kth(&lanes_sum::<Self, { $w * 3 / 4 }>(span), 3),
                    _ => every_kth(&lanes_sum::<Self, $w>(span), k),
                }
            }
            #[inline(always)]
            fn contig_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self]) -> Self {
                reduce_lanes(lanes_dot::<Self, $w, F, PF>(x, y))
            }
            #[inline(always)]
            fn span_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self], k: usize) -> Self {
                match k {
                    3 => every_kth(&lanes_dot::<Self, { $w * 3 / 4 }, F, PF>(x, y), 3),
                    _ => every_kth(&lanes_dot::<Self, $w, F, PF>(x, y), k),
                }
            }
        }
    };
}
float_elem!(f64, 32);
float_elem!(f32, 64);

impl Elem for i64 {
    const ZERO: Self = 0;
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.wrapping_add(b)
    }
    #[inline(always)]
    fn mul_add<const F: bool>(self, b: Self, c: Self) -> Self {
        self.wrapping_mul(b).wrapping_add(c)
    }
    #[inline(always)]
    fn contig_sum(x: &[Self]) -> Self {
        reduce_lanes(lanes_sum::<Self, 32>(x))
    }
    #[inline(always)]
    fn span_sum(span: &[Self], k: usize) -> Self {
        match k {
            3 => every_kth(&lanes_sum::<Self, 24>(span), 3),
            _ => every_kth(&lanes_sum::<Self, 32>(span), k),
        }
    }
    #[inline(always)]
    fn contig_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self]) -> Self {
        reduce_lanes(lanes_dot::<Self, 32, F, PF>(x, y))
    }
    #[inline(always)]
    fn span_dot<const F: bool, const PF: usize>(x: &[Self], y: &[Self], k: usize) -> Self {
        match k {
            3 => every_kth(&lanes_dot::<Self, 24, F, PF>(x, y), 3),
            _ => every_kth(&lanes_dot::<Self, 32, F, PF>(x, y), k),
        }
    }
}

/// Sequential adds per lane within one block (NumPy's pairwise base case
/// is 8 accumulators × 16 elements).
const PER_LANE: usize = 16;
/// Depth of the pairwise stacks (2^48 blocks: never exceeded).
const DEPTH: usize = 48;

/// Pairwise combination of partial results (a binary counter): `push`
/// merges equal-level neighbours, so every value takes part in about
/// log2(count) additions.
struct Pairwise<V: Copy, const N: usize> {
    stack: [MaybeUninit<V>; DEPTH],
    level: [u32; DEPTH],
    depth: usize,
}

impl<V: Copy, const N: usize> Pairwise<V, N> {
    #[inline(always)]
    fn new() -> Self {
        Pairwise { stack: [MaybeUninit::uninit(); DEPTH], level: [0; DEPTH], depth: 0 }
    }
    #[inline(always)]
    fn push(&mut self, v: V, merge: impl Fn(V, V) -> V) {
        let mut v = v;
        let mut lvl = 0;
        while self.depth > 0 && self.level[self.depth - 1] == lvl {
            self.depth -= 1;
            // SAFETY: entries below depth were written by push.
            v = merge(unsafe { self.stack[self.depth].assume_init() }, v);
            lvl += 1;
        }
        self.stack[self.depth] = MaybeUninit::new(v);
        self.level[self.depth] = lvl;
        self.depth += 1;
    }
    #[inline(always)]
    fn finish(mut self, zero: V, merge: impl Fn(V, V) -> V) -> V {
        let mut acc = zero;
        let mut first = true;
        while self.depth > 0 {
            self.depth -= 1;
            // SAFETY: as above.
            let v = unsafe { self.stack[self.depth].assume_init() };
            acc = if first { v } else { merge(v, acc) };
            first = false;
        }
        acc
    }
}

#[inline(always)]
fn add_lanes<T: Elem, const W: usize>(a: [T; W], b: [T; W]) -> [T; W] {
    let mut out = a;
    for j in 0..W {
        out[j] = a[j].add(b[j]);
    }
    out
}

/// Lane-wise pairwise sum of a contiguous slice: lane j holds the sum of
/// the elements whose index is j modulo W.
#[inline(always)]
fn lanes_sum<T: Elem, const W: usize>(x: &[T]) -> [T; W] {
    let block = W * PER_LANE;
    let mut pw: Pairwise<[T; W], W> = Pairwise::new();
    let mut chunks = x.chunks_exact(block);
    for b in &mut chunks {
        let mut acc = [T::ZERO; W];
        for c in b.chunks_exact(W) {
            let c: &[T; W] = c.try_into().expect("chunk of W");
            for j in 0..W {
                acc[j] = acc[j].add(c[j]);
            }
        }
        pw.push(acc, add_lanes);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut acc = [T::ZERO; W];
        let mut it = rest.chunks_exact(W);
        for c in &mut it {
            let c: &[T; W] = c.try_into().expect("chunk of W");
            for j in 0..W {
                acc[j] = acc[j].add(c[j]);
            }
        }
        for (j, &r) in it.remainder().iter().enumerate() {
            acc[j] = acc[j].add(r);
        }
        pw.push(acc, add_lanes);
    }
    pw.finish([T::ZERO; W], add_lanes)
}

/// As [`lanes_sum`] for the products `x[i] * y[i]`, asking for the cache
/// lines `PF` bytes ahead of each chunk of W (0: no prefetch). The
/// prefetch changes the timing only, never the order of the additions.
#[inline(always)]
fn lanes_dot<T: Elem, const W: usize, const F: bool, const PF: usize>(x: &[T], y: &[T]) -> [T; W] {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let block = W * PER_LANE;
    let mut pw: Pairwise<[T; W], W> = Pairwise::new();
    let mut xc = x.chunks_exact(block);
    let mut yc = y.chunks_exact(block);
    for (bx, by) in (&mut xc).zip(&mut yc) {
        let mut acc = [T::ZERO; W];
        for (cx, cy) in bx.chunks_exact(W).zip(by.chunks_exact(W)) {
            let cx: &[T; W] = cx.try_into().expect("chunk of W");
            let cy: &[T; W] = cy.try_into().expect("chunk of W");
            prefetch_ahead::<PF>(cx.as_ptr().cast(), core::mem::size_of::<[T; W]>());
            prefetch_ahead::<PF>(cy.as_ptr().cast(), core::mem::size_of::<[T; W]>());
            for j in 0..W {
                acc[j] = cx[j].mul_add::<F>(cy[j], acc[j]);
            }
        }
        pw.push(acc, add_lanes);
    }
    let (rx, ry) = (xc.remainder(), yc.remainder());
    if !rx.is_empty() {
        let mut acc = [T::ZERO; W];
        let mut ix = rx.chunks_exact(W);
        let mut iy = ry.chunks_exact(W);
        for (cx, cy) in (&mut ix).zip(&mut iy) {
            let cx: &[T; W] = cx.try_into().expect("chunk of W");
            let cy: &[T; W] = cy.try_into().expect("chunk of W");
            for j in 0..W {
                acc[j] = cx[j].mul_add::<F>(cy[j], acc[j]);
            }
        }
        for (j, (&a, &b)) in ix.remainder().iter().zip(iy.remainder()).enumerate() {
            acc[j] = a.mul_add::<F>(b, acc[j]);
        }
        pw.push(acc, add_lanes);
    }
    pw.finish([T::ZERO; W], add_lanes)
}

/// Ask for the cache lines of `[p + PF, p + PF + bytes)` (x86-64 `prefetcht0`;
/// nothing elsewhere or when `PF` is 0). A hint: the addresses may lie past
/// the end of the data, and are never dereferenced.
#[inline(always)]
fn prefetch_ahead<const PF: usize>(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    if PF != 0 {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut at = 0;
        while at < bytes {
            // SAFETY: PREFETCHT0 (SSE, part of every x86-64 CPU) never
            // faults, whatever the address; the pointer is only computed
            // (wrapping_add), never dereferenced.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PF + at).cast()) };
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// Sum of `acc[..n]` by halving (a balanced tree, like NumPy's pairwise sum).
#[inline(always)]
fn tree_sum<T: Elem, const W: usize>(mut acc: [T; W], mut n: usize) -> T {
    while n > 1 {
        let half = n / 2;
        for j in 0..half {
            acc[j] = acc[j].add(acc[j + half]);
        }
        if n % 2 == 1 {
            acc[0] = acc[0].add(acc[n - 1]);
        }
        n = half;
    }
    acc[0]
}

/// Sum of the lanes by halving (a balanced tree).
#[inline(always)]
fn reduce_lanes<T: Elem, const W: usize>(acc: [T; W]) -> T {
    tree_sum(acc, W)
}

/// Sum of the lanes whose index is a multiple of k (pairwise).
#[inline(always)]
fn every_kth<T: Elem, const W: usize>(acc: &[T; W], k: usize) -> T {
    let mut picked = [T::ZERO; W];
    let mut m = 0;
    for j in (0..W).step_by(k) {
        picked[m] = acc[j];
        m += 1;
    }
    tree_sum(picked, m)
}

#[inline(always)]
unsafe fn load<T: Copy>(p: *const u8) -> T {
    // SAFETY: the caller passes the address of an element of a live view.
    unsafe { p.cast::<T>().read_unaligned() }
}

/// Strided sum of n elements: 8 accumulators over blocks of 128, pushed
/// into `pw` (NumPy's pairwise base case).
#[inline(always)]
unsafe fn strided_sum<T: Elem>(p: *const u8, n: usize, s: isize, pw: &mut Pairwise<T, 1>) {
    let mut i = 0usize;
    while i < n {
        let m = (n - i).min(128);
        let base = p.wrapping_offset(i as isize * s);
        let mut a = [T::ZERO; 8];
        let mut j = 0usize;
        // SAFETY: every load is at j < m, an element of the run.
        unsafe {
            while j + 8 <= m {
                for l in 0..8 {
                    a[l] = a[l].add(load::<T>(base.wrapping_offset((j + l) as isize * s)));
                }
                j += 8;
            }
            while j < m {
                a[0] = a[0].add(load::<T>(base.wrapping_offset(j as isize * s)));
                j += 1;
            }
        }
        pw.push(reduce_lanes(a), T::add);
        i += m;
    }
}

/// Strided dot of n elements (as [`strided_sum`]).
#[inline(always)]
unsafe fn strided_dot<T: Elem, const F: bool>(
    px: *const u8,
    sx: isize,
    py: *const u8,
    sy: isize,
    n: usize,
    pw: &mut Pairwise<T, 1>,
) {
    let mut i = 0usize;
    while i < n {
        let m = (n - i).min(128);
        let bx = px.wrapping_offset(i as isize * sx);
        let by = py.wrapping_offset(i as isize * sy);
        let mut a = [T::ZERO; 8];
        let mut j = 0usize;
        // SAFETY: every load is at j < m, an element of the runs.
        unsafe {
            while j + 8 <= m {
                for l in 0..8 {
                    let o = (j + l) as isize;
                    a[l] =
                        load::<T>(bx.wrapping_offset(o * sx)).mul_add::<F>(load::<T>(by.wrapping_offset(o * sy)), a[l]);
                }
                j += 8;
            }
            while j < m {
                let o = j as isize;
                a[0] = load::<T>(bx.wrapping_offset(o * sx)).mul_add::<F>(load::<T>(by.wrapping_offset(o * sy)), a[0]);
                j += 1;
            }
        }
        pw.push(reduce_lanes(a), T::add);
        i += m;
    }
}

/// Is a run of `T` at `p` with byte stride `s` a plain slice (aligned,
/// stride == itemsize)?
#[inline(always)]
fn is_slice<T>(p: *const u8, s: isize) -> bool {
    s == core::mem::size_of::<T>() as isize && (p as usize) % core::mem::align_of::<T>() == 0
}

/// Element stride k in 2..=4 with aligned elements: read the covered span.
#[inline(always)]
fn span_k<T>(p: *const u8, s: isize) -> Option<usize> {
    let size = core::mem::size_of::<T>() as isize;
    if s > 0 && s % size == 0 && (p as usize) % core::mem::align_of::<T>() == 0 {
        let k = (s / size) as usize;
        if (2..=4).contains(&k) {
            return Some(k);
        }
    }
    None
}

/// Minimum run length for the span trick (short runs: not worth it).
const SPAN_MIN: usize = 64;

#[inline(always)]
unsafe fn sum_impl<T: Elem, const F: bool>(nd: &Nd<1>) -> T {
    let (len, [s]) = nd.inner();
    let mut pw: Pairwise<T, 1> = Pairwise::new();
    for [p] in nd.runs() {
        let p = p as *const u8;
        // SAFETY: p starts a run of len elements with stride s inside the view.
        unsafe {
            if is_slice::<T>(p, s) {
                pw.push(T::contig_sum(core::slice::from_raw_parts(p.cast::<T>(), len)), T::add);
            } else if let Some(k) = span_k::<T>(p, s).filter(|_| len >= SPAN_MIN) {
                let span = core::slice::from_raw_parts(p.cast::<T>(), (len - 1) * k + 1);
                pw.push(T::span_sum(span, k), T::add);
            } else {
                strided_sum::<T>(p, len, s, &mut pw);
            }
        }
    }
    pw.finish(T::ZERO, T::add)
}

/// How far ahead the streaming `dot` prefetches: 512 bytes (8 lines) ahead
/// of each chunk of lanes. On the one machine measured (an Intel Xeon
/// guest, docs/arrays.md, "Dot past the cache") 512 bytes was at least as
/// fast as 1 and 2 KiB.
pub(crate) const STREAM_PREFETCH: usize = 512;

/// `dot` for inputs that fit the caches (no prefetch).
///
/// # Safety
/// As [`dot`]: the Nd's pointers address live memory as described.
#[inline(always)]
unsafe fn dot_impl<T: Elem, const F: bool>(nd: &Nd<2>) -> T {
    // SAFETY: forwarded.
    unsafe { dot_loops::<T, F, 0>(nd) }
}

/// `dot` for inputs streamed from memory: prefetching [`STREAM_PREFETCH`]
/// bytes ahead on the contiguous and span paths. Same additions in the same
/// order as [`dot_impl`], so the same bits.
///
/// # Safety
/// As [`dot`].
#[inline(always)]
unsafe fn dot_stream_impl<T: Elem, const F: bool>(nd: &Nd<2>) -> T {
    // SAFETY: forwarded.
    unsafe { dot_loops::<T, F, STREAM_PREFETCH>(nd) }
}

/// The loops of `dot`: contiguous runs in W lanes, runs of stride 2–4
/// elements as their span, other runs element by element; `PF`: prefetch
/// distance in bytes of the lane loops (0: none).
///
/// # Safety
/// As [`dot`].
#[inline(always)]
unsafe fn dot_loops<T: Elem, const F: bool, const PF: usize>(nd: &Nd<2>) -> T {
    let (len, [sx, sy]) = nd.inner();
    let mut pw: Pairwise<T, 1> = Pairwise::new();
    for [px, py] in nd.runs() {
        let (px, py) = (px as *const u8, py as *const u8);
        // SAFETY: runs of len elements inside the two views.
        unsafe {
            if is_slice::<T>(px, sx) && is_slice::<T>(py, sy) {
                let x = core::slice::from_raw_parts(px.cast::<T>(), len);
                let y = core::slice::from_raw_parts(py.cast::<T>(), len);
                pw.push(T::contig_dot::<F, PF>(x, y), T::add);
            } else if let (Some(k), true) = (span_k::<T>(px, sx).filter(|_| len >= SPAN_MIN), sx == sy) {
                let n = (len - 1) * k + 1;
                if span_k::<T>(py, sy).is_some() {
                    let x = core::slice::from_raw_parts(px.cast::<T>(), n);
                    let y = core::slice::from_raw_parts(py.cast::<T>(), n);
                    pw.push(T::span_dot::<F, PF>(x, y, k), T::add);
                } else {
                    strided_dot::<T, F>(px, sx, py, sy, len, &mut pw);
                }
            } else {
                strided_dot::<T, F>(px, sx, py, sy, len, &mut pw);
            }
        }
    }
    pw.finish(T::ZERO, T::add)
}

/// `y += a * x` over Nd<2> with operand 0 = y, operand 1 = x. The caller
/// made sure x and y are either disjoint or the very same elements.
#[inline(always)]
unsafe fn axpy_impl<T: Elem, const F: bool>(nd: &Nd<2>, a: T) {
    let (len, [sy, sx]) = nd.inner();
    for [py, px] in nd.runs() {
        // SAFETY: runs of len elements inside the views; y writable.
        unsafe {
            if px == py && sx == sy && is_slice::<T>(py, sy) {
                let y = core::slice::from_raw_parts_mut(py.cast::<T>(), len);
                for v in y.iter_mut() {
                    *v = a.mul_add::<F>(*v, *v);
                }
            } else if px != py && is_slice::<T>(py, sy) && is_slice::<T>(px, sx) {
                let y = core::slice::from_raw_parts_mut(py.cast::<T>(), len);
                let x = core::slice::from_raw_parts(px.cast::<T>(), len);
                for (v, &u) in y.iter_mut().zip(x) {
                    *v = a.mul_add::<F>(u, *v);
                }
            } else {
                let mut i = 0usize;
                while i + 4 <= len {
                    for l in 0..4 {
                        let o = (i + l) as isize;
                        let q = py.wrapping_offset(o * sy);
                        let u = load::<T>(px.wrapping_offset(o * sx));
                        q.cast::<T>().write_unaligned(a.mul_add::<F>(u, load::<T>(q)));
                    }
                    i += 4;
                }
                while i < len {
                    let o = i as isize;
                    let q = py.wrapping_offset(o * sy);
                    let u = load::<T>(px.wrapping_offset(o * sx));
                    q.cast::<T>().write_unaligned(a.mul_add::<F>(u, load::<T>(q)));
                    i += 1;
                }
            }
        }
    }
}

/// Copy the elements of `nd` (one operand, logical C order when built
/// without reordering) into `out`.
#[inline(always)]
unsafe fn gather_impl<T: Elem, const F: bool>(nd: &Nd<1>, out: &mut Vec<T>) {
    let (len, [s]) = nd.inner();
    for [p] in nd.runs() {
        for i in 0..len {
            // SAFETY: elements of the run.
            out.push(unsafe { load::<T>(p.wrapping_offset(i as isize * s)) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{ArrayView, DLDataType};

    /// A 1-d float64 view of `n` elements at element `off` of `data`, byte
    /// stride `stride` (negative: the view starts at the end).
    fn view(data: &mut [f64], off: usize, shape: &mut [i64; 1], stride: &mut [i64; 1]) -> ArrayView {
        let mut v = ArrayView::new();
        v.data = data[off..].as_mut_ptr().cast();
        v.shape = shape.as_mut_ptr();
        v.strides = stride.as_mut_ptr();
        v.ndim = 1;
        v.dtype = DLDataType::F64;
        v
    }

    /// A compiled version of the loops: its name, `dot` and `sum`.
    type Version = (&'static str, unsafe fn(&Nd<2>) -> f64, unsafe fn(&Nd<1>) -> f64);

    /// Every compiled version of the loops, called directly (not through
    /// the global `set_isa`, which other tests' threads would see).
    fn versions() -> Vec<Version> {
        /// # Safety
        /// As [`dot`].
        unsafe fn dot_base(nd: &Nd<2>) -> f64 {
            // SAFETY: forwarded.
            unsafe { dot_impl::<f64, false>(nd) }
        }
        /// # Safety
        /// As [`sum`].
        unsafe fn sum_base(nd: &Nd<1>) -> f64 {
            // SAFETY: forwarded.
            unsafe { sum_impl::<f64, false>(nd) }
        }
        /// # Safety
        /// As [`dot`].
        unsafe fn dot_stream_base(nd: &Nd<2>) -> f64 {
            // SAFETY: forwarded.
            unsafe { dot_stream_impl::<f64, false>(nd) }
        }
        #[allow(unused_mut)]
        let mut v: Vec<Version> = vec![("base", dot_base, sum_base), ("base stream", dot_stream_base, sum_base)];
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// As [`dot`], on a CPU with AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn dot_v3(nd: &Nd<2>) -> f64 {
                // SAFETY: forwarded.
                unsafe { dot_impl::<f64, true>(nd) }
            }
            /// # Safety
            /// As [`sum`], on a CPU with AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn sum_v3(nd: &Nd<1>) -> f64 {
                // SAFETY: forwarded.
                unsafe { sum_impl::<f64, true>(nd) }
            }
            /// # Safety
            /// As [`dot`], on a CPU with AVX-512F/VL, AVX2 and FMA.
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn dot_v4(nd: &Nd<2>) -> f64 {
                // SAFETY: forwarded.
                unsafe { dot_impl::<f64, true>(nd) }
            }
            /// # Safety
            /// As [`sum`], on a CPU with AVX-512F/VL, AVX2 and FMA.
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn sum_v4(nd: &Nd<1>) -> f64 {
                // SAFETY: forwarded.
                unsafe { sum_impl::<f64, true>(nd) }
            }
            /// # Safety
            /// As [`dot`], on a CPU with AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn dot_stream_v3(nd: &Nd<2>) -> f64 {
                // SAFETY: forwarded.
                unsafe { dot_stream_impl::<f64, true>(nd) }
            }
            let level = detect() as u8;
            if level >= Isa::Avx2 as u8 {
                v.push(("avx2", dot_v3, sum_v3));
                v.push(("avx2 stream", dot_stream_v3, sum_v3));
            }
            if level >= Isa::Avx512 as u8 {
                v.push(("avx512", dot_v4, sum_v4));
            }
        }
        v
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Integer-valued in [-2^10, 2^10): products and sums of up to 2^30 of them are exact.
        fn int(&mut self) -> f64 {
            ((self.next() >> 53) as i64 - 1024) as f64
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// Σ x·y with error-free transformations (TwoProduct by FMA, TwoSum):
    /// the exact sum rounded once, up to a relative 2^-100 or so.
    fn accurate_dot(x: &[f64], y: &[f64]) -> f64 {
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for (&a, &b) in x.iter().zip(y) {
            let p = a * b;
            let pe = a.mul_add(b, -p); // exact: p + pe == a * b
            let t = s + p;
            let bp = t - s;
            c += (s - (t - bp)) + (p - bp) + pe;
            s = t;
        }
        s + c
    }

    /// Lengths that reach every tail of the loops: 0..=67 (the 32-lane
    /// chunks and the scalar rest, the span threshold 64), around one
    /// 512-element block, and several blocks (the pairwise stack).
    fn lengths() -> Vec<usize> {
        let mut v: Vec<usize> = (0..=67).collect();
        v.extend([95, 96, 97, 127, 128, 129, 255, 511, 512, 513, 1023, 1024, 1025, 1536, 4099, 10_007]);
        v
    }

    /// Operand layouts: (element stride, start offset in elements); a
    /// negative stride walks backwards from the offset. Stride 1 at offset 0
    /// is the contiguous path, 2..=4 the span path (from 64 elements),
    /// 5 and -1 the strided path; the byte-misaligned case is separate.
    const LAYOUTS: [(isize, usize); 6] = [(1, 0), (1, 3), (2, 1), (3, 0), (4, 2), (5, 0)];

    /// Run `check` on x and y of n elements in each layout pair.
    fn for_layouts(n: usize, rng: &mut Rng, int: bool, mut check: impl FnMut(&str, &Nd<2>, &Nd<1>, &[f64], &[f64])) {
        let mut layouts: Vec<(isize, usize)> = LAYOUTS.to_vec();
        layouts.push((-1, n.saturating_sub(1)));
        for &(sx, ox) in &layouts {
            for &(sy, oy) in &[(sx, ox), (1, 0), (-2, 2 * n.saturating_sub(1))] {
                let len = |s: isize, o: usize| o + s.unsigned_abs() * n + 1;
                let mut gen =
                    |m: usize| -> Vec<f64> { (0..m).map(|_| if int { rng.int() } else { rng.unit() }).collect() };
                let (mut bx, mut by) = (gen(len(sx, ox)), gen(len(sy, oy)));
                let pick = |b: &[f64], s: isize, o: usize| -> Vec<f64> {
                    (0..n).map(|i| b[(o as isize + i as isize * s) as usize]).collect()
                };
                let (x, y) = (pick(&bx, sx, ox), pick(&by, sy, oy));
                let (mut shx, mut stx) = ([n as i64], [8 * sx as i64]);
                let (mut shy, mut sty) = ([n as i64], [8 * sy as i64]);
                let vx = view(&mut bx, ox, &mut shx, &mut stx);
                let vy = view(&mut by, oy, &mut shy, &mut sty);
                let what = format!("n={n} x stride {sx} at {ox}, y stride {sy} at {oy}");
                check(&what, &Nd::new([&vx, &vy], true), &Nd::new([&vx], true), &x, &y);
            }
        }
    }

    /// Integer-valued data: every product and partial sum is exact, so
    /// every version must return exactly Σ x·y and Σ x, whatever the order
    /// of additions (a lost, repeated or misplaced element changes it).
    #[test]
    fn dot_and_sum_exact_on_integers_every_tail_every_version() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in lengths() {
            for_layouts(n, &mut rng, true, |what, nd2, nd1, x, y| {
                let want_dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
                let want_sum: f64 = x.iter().sum();
                for (isa, dot, sum) in versions() {
                    // SAFETY: the views describe live vectors of the test.
                    let (d, s) = unsafe { (dot(nd2), sum(nd1)) };
                    assert_eq!(d, want_dot, "{isa} dot {what}");
                    assert_eq!(s, want_sum, "{isa} sum {what}");
                }
            });
        }
    }

    /// Random data in [-1, 1): every version within a tight bound of the
    /// correctly rounded Σ x·y (relative to Σ |x·y|: 2^-44 covers the
    /// pairwise scheme's error at these sizes, a dropped or doubled term
    /// is ~2^-14 of it), and every version agrees with the base one to the
    /// same bound.
    #[test]
    fn dot_close_to_accurate_on_random_every_tail_every_version() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for n in lengths() {
            for_layouts(n, &mut rng, false, |what, nd2, _, x, y| {
                let want = accurate_dot(x, y);
                let mag: f64 = x.iter().zip(y).map(|(a, b)| (a * b).abs()).sum();
                let tol = mag * 2f64.powi(-44);
                for (isa, dot, _) in versions() {
                    // SAFETY: as above.
                    let d = unsafe { dot(nd2) };
                    assert!((d - want).abs() <= tol, "{isa} dot {what}: {d} vs {want} (tol {tol})");
                }
            });
        }
    }

    /// The streaming loop (prefetch) adds the same products in the same
    /// order as the cached loop of the same fusing, so the bits agree: base
    /// with base stream, and every fused version (AVX2, AVX-512) with the
    /// AVX2 stream that replaces them past the cache. Random data, so a
    /// different order of additions would show in the low bits.
    #[test]
    fn stream_loop_same_bits_as_cached_loop() {
        let mut rng = Rng(0x5151_2026_1203_0001);
        for n in lengths() {
            for_layouts(n, &mut rng, false, |what, nd2, _, _, _| {
                let got: Vec<(&str, u64)> = versions()
                    .into_iter()
                    // SAFETY: the views describe live vectors of the test.
                    .map(|(isa, dot, _)| (isa, unsafe { dot(nd2) }.to_bits()))
                    .collect();
                let bits = |name: &str| got.iter().find(|g| g.0 == name).map(|g| g.1);
                assert_eq!(bits("base stream"), bits("base"), "base {what}");
                // The dispatched pair, at the level this CPU runs.
                // SAFETY: as above.
                let (d, ds) = unsafe { (dot::<f64>(nd2), dot_stream::<f64>(nd2)) };
                assert_eq!(d.to_bits(), ds.to_bits(), "dot vs dot_stream at {:?}, {what}", isa());
                if let Some(stream) = bits("avx2 stream") {
                    for fused in ["avx2", "avx512"] {
                        if let Some(b) = bits(fused) {
                            assert_eq!(stream, b, "{fused} vs avx2 stream, {what}");
                        }
                    }
                }
            });
        }
    }

    /// Data not aligned to 8 bytes takes the strided path with unaligned
    /// loads: still exact on integers.
    #[test]
    fn dot_unaligned_bytes() {
        let mut rng = Rng(7);
        for n in [0usize, 1, 7, 64, 65, 600] {
            let vals: Vec<(f64, f64)> = (0..n).map(|_| (rng.int(), rng.int())).collect();
            // Byte buffers with the values at offset 1 (unaligned).
            let mut bx = vec![0u8; 8 * n + 9];
            let mut by = vec![0u8; 8 * n + 9];
            for (i, &(a, b)) in vals.iter().enumerate() {
                bx[1 + 8 * i..9 + 8 * i].copy_from_slice(&a.to_ne_bytes());
                by[1 + 8 * i..9 + 8 * i].copy_from_slice(&b.to_ne_bytes());
            }
            let want: f64 = vals.iter().map(|(a, b)| a * b).sum();
            let (mut sh, mut st) = ([n as i64], [8i64]);
            let (mut sh2, mut st2) = ([n as i64], [8i64]);
            let mut vx = ArrayView::new();
            vx.data = bx[1..].as_mut_ptr().cast();
            vx.shape = sh.as_mut_ptr();
            vx.strides = st.as_mut_ptr();
            vx.ndim = 1;
            vx.dtype = DLDataType::F64;
            let mut vy = ArrayView::new();
            vy.data = by[1..].as_mut_ptr().cast();
            vy.shape = sh2.as_mut_ptr();
            vy.strides = st2.as_mut_ptr();
            vy.ndim = 1;
            vy.dtype = DLDataType::F64;
            let nd = Nd::new([&vx, &vy], true);
            for (isa, dot, _) in versions() {
                // SAFETY: the views describe live buffers of the test (read unaligned).
                assert_eq!(unsafe { dot(&nd) }, want, "{isa} n={n}");
            }
        }
    }
}
