//! Run-time dispatch of the kernels: the instruction-set level ([`Isa`],
//! detected once, forced by tests) and the `sum`/`dot`/`axpy`/`gather`
//! entry points, each compiled for x86-64 baseline, AVX2+FMA and AVX-512
//! (`dot_stream`: baseline and AVX2+FMA).

use core::sync::atomic::{AtomicU8, Ordering};

use super::*;

/// Instruction-set level of the compiled loop versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Isa {
    /// x86-64 baseline (SSE2) or a non-x86 target.
    Base = 1,
    /// AVX2 + FMA.
    Avx2 = 2,
    /// AVX-512F/VL + AVX2 + FMA.
    Avx512 = 3,
}

static ISA: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports.
pub(crate) fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Base
}

/// The level in use (detected once).
#[inline]
pub(crate) fn isa() -> Isa {
    match ISA.load(Ordering::Relaxed) {
        1 => Isa::Base,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let d = detect();
            ISA.store(d as u8, Ordering::Relaxed);
            d
        }
    }
}

/// Force a level (tests); refuses one the CPU lacks.
pub(crate) fn set_isa(level: Isa) -> bool {
    if (level as u8) > (detect() as u8) {
        return false;
    }
    ISA.store(level as u8, Ordering::Relaxed);
    true
}

macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident<T>($($arg:ident: $ty:ty),*) -> $ret:ty = $imp:ident) => {
        $(#[$doc])*
        /// # Safety
        /// The Nd's pointers address live memory as described (writable
        /// for axpy's operand 0).
        pub(crate) unsafe fn $name<T: Elem>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4<T: Elem>($($arg: $ty),*) -> $ret {
                    // SAFETY: forwarded.
                    unsafe { $imp::<T, true>($($arg),*) }
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<T: Elem>($($arg: $ty),*) -> $ret {
                    // SAFETY: forwarded.
                    unsafe { $imp::<T, true>($($arg),*) }
                }
                match isa() {
                    // SAFETY: isa() only reports levels the CPU supports.
                    Isa::Avx512 => return unsafe { v4::<T>($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { v3::<T>($($arg),*) },
                    Isa::Base => {}
                }
            }
            // SAFETY: forwarded.
            unsafe { $imp::<T, false>($($arg),*) }
        }
    };
}

multiversion!(
    /// Sum of all elements.
    fn sum<T>(nd: &Nd<1>) -> T = sum_impl
);
multiversion!(
    /// Sum of the elementwise products.
    fn dot<T>(nd: &Nd<2>) -> T = dot_impl
);
/// [`dot`] for inputs streamed from memory ([`dot_stream_impl`]: software
/// prefetch), in the AVX2+FMA version even where AVX-512 is available: on
/// the one machine measured (an Intel Xeon guest, docs/arrays.md, "Dot past
/// the cache"), once the loop waited on memory the 256-bit loop was faster
/// than the 512-bit one. The AVX2 and AVX-512 versions both fuse the
/// multiply-add in the same lane order (the baseline versions neither), so
/// the result has the same bits as [`dot`] at every level.
///
/// # Safety
/// As [`dot`].
pub(crate) unsafe fn dot_stream<T: Elem>(nd: &Nd<2>) -> T {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// As [`dot`], on a CPU with AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3<T: Elem>(nd: &Nd<2>) -> T {
            // SAFETY: forwarded.
            unsafe { dot_stream_impl::<T, true>(nd) }
        }
        if matches!(isa(), Isa::Avx2 | Isa::Avx512) {
            // SAFETY: isa() only reports levels the CPU supports, and both
            // levels above Base include AVX2 and FMA.
            return unsafe { v3::<T>(nd) };
        }
    }
    // SAFETY: forwarded.
    unsafe { dot_stream_impl::<T, false>(nd) }
}

multiversion!(
    /// `y += a * x` (operand 0 = y).
    fn axpy<T>(nd: &Nd<2>, a: T) -> () = axpy_impl
);
multiversion!(
    /// Gather into a Vec (C order when the Nd was not reordered).
    fn gather<T>(nd: &Nd<1>, out: &mut Vec<T>) -> () = gather_impl
);
