//! # extensibletype-arrays
//!
//! Duck-typed arrays (array.v1) on top of the runtime; re-exported as
//! `extensibletype::arrays` (feature `arrays`).
//!
//! - [`abi`]: the `array.v1` interface (`include/extensibletype_array.h`):
//!   `acquire`/`release` slots filling an [`abi::ArrayView`], and the
//!   consumer helpers [`abi::Provider`] / [`abi::with_view`].
//! - Without feature `python`: the view layout and the pure parts (kernels,
//!   n-d iteration, buffer-format parsing), testable with no Python.
//! - With feature `python`, the `extensibletype._core._arrays` submodule
//!   (re-exported as `extensibletype.arrays`), added by [`register`].
//!
//! Layout, by role:
//!
//! | folder | role |
//! |---|---|
//! | [`abi`] | the ABI, its own crate (`crates/extensibletype-array-abi`, re-exported): the view struct, keys, ids, flags, `Provider`, `with_view`; `dlpack.rs` DLPack 1.3 |
//! | `providers/` | types that hand out views: `array/` (the `Array` type: instance data, exports, methods, type object), `numpy.rs`, `buffer.rs`, `dlpack/` (export, its pure checks in `plan.rs`, exchange table, import) |
//! | `consumers/` | code that reads views: `nd.rs` (n-d iteration), `kernels/` (loops, ISA dispatch), `par.rs` (threads) |
//! | `python/` | every Python binding of `_arrays`: `consumers.rs` (`sum`, `dot`, `axpy`, `view_info`), `providers.rs` (`register_buffer_type`, ...), `dlpack.rs` (`to_dlpack`, `register_dlpack_type`, `_adopt`, ...), `hooks/` (test and bench hooks) |
//!
//! Feature `hooks` (off by default; the test and demo builds turn it on)
//! adds `_set_threads`, `_set_par_min`, `_set_stream_min`, `_bench_view_cost` and
//! `_bench_dlpack_cost`.
//!
//! This layer uses the runtime (find, set_slots, type_from_spec) and
//! nothing uses it back.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "python")]
use extensibletype_core::id;
#[cfg(feature = "python")]
use extensibletype_runtime as runtime;

#[doc(inline)]
pub use extensibletype_array_abi as abi;
/// The DLPack 1.3 C ABI (`dlpack.h`), Rust side: [`abi::dlpack`].
pub use abi::dlpack as dlpack_abi;

mod consumers;
mod providers;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
#[cfg_attr(all(Py_LIMITED_API, Py_GIL_DISABLED), allow(dead_code))] // parts serve only the Array type
mod util;

#[cfg(feature = "python")]
pub use python::register;

/// The pure parts, tested without Python (`cargo test` at the root).
#[cfg(test)]
mod tests {
    use super::abi::{ArrayView, DLDataType};
    use crate::consumers::{kernels, nd::Nd};
    use crate::providers::buffer;

    /// A view of `data` with `shape` and byte `strides` (no provider).
    fn view(data: &mut [f64], shape: &mut [i64], strides: &mut [i64]) -> ArrayView {
        let mut v = ArrayView::new();
        v.data = data.as_mut_ptr().cast();
        v.shape = shape.as_mut_ptr();
        v.strides = strides.as_mut_ptr();
        v.ndim = shape.len() as i32;
        v.dtype = DLDataType::F64;
        v
    }

    #[test]
    fn format_parsing() {
        assert_eq!(buffer::parse_format(b"d", 8), Some((DLDataType::F64, false)));
        assert_eq!(buffer::parse_format(b"<d", 8), Some((DLDataType::F64, cfg!(target_endian = "big"))));
        assert_eq!(buffer::parse_format(b"1d", 8), Some((DLDataType::F64, false)));
        assert_eq!(buffer::parse_format(b"d", 4), None, "itemsize disagrees");
        assert_eq!(buffer::parse_format(b"2d", 16), None, "not a single element");
        assert_eq!(buffer::parse_format(b"T{d:x:}", 8), None);
    }

    #[test]
    fn nd_runs_and_sum_over_a_transposed_view() {
        // 3 x 4 row-major data, viewed transposed (4 x 3, strides 8 and 32).
        let mut data: Vec<f64> = (0..12).map(f64::from).collect();
        let (mut shape, mut strides) = ([4i64, 3], [8i64, 32]);
        let v = view(&mut data, &mut shape, &mut strides);
        let nd = Nd::new([&v], false);
        assert_eq!(nd.size, 12);
        let (len, step) = nd.inner();
        assert_eq!((len, step), (3, [32]));
        // Each run starts one element further along the first axis.
        let starts: Vec<usize> = nd.runs().map(|[p]| (p as usize - data.as_ptr() as usize) / 8).collect();
        assert_eq!(starts, [0, 1, 2, 3]);
        // SAFETY: the view describes `data`, alive for the call.
        let total: f64 = unsafe { kernels::sum::<f64>(&Nd::new([&v], true)) };
        assert_eq!(total, 66.0);
    }

    #[test]
    fn empty_and_size_one_axes() {
        let mut data = [1.0f64; 4];
        let (mut shape, mut strides) = ([1i64, 4, 1], [32i64, 8, 8]);
        let v = view(&mut data, &mut shape, &mut strides);
        let nd = Nd::new([&v], false);
        assert_eq!((nd.ndim, nd.size), (1, 4));
        // SAFETY: as above.
        assert_eq!(unsafe { kernels::sum::<f64>(&nd) }, 4.0);
        let (mut shape, mut strides) = ([3i64, 0], [0i64, 8]);
        let v = view(&mut data, &mut shape, &mut strides);
        let nd = Nd::new([&v], false);
        assert_eq!(nd.size, 0);
        assert_eq!(nd.runs().count(), 0);
        // SAFETY: an empty view reads nothing.
        assert_eq!(unsafe { kernels::sum::<f64>(&nd) }, 0.0);
    }

    /// Several threads calling the threaded kernels at once (they race for
    /// the pool's one job slot) each get the result of a call made alone,
    /// around and far above the threshold, contiguous and every 3rd element.
    #[test]
    fn threaded_kernels_from_several_threads_at_once() {
        use crate::consumers::par;
        let sizes = [par::PAR_MIN - 1, par::PAR_MIN + 1, 2 * par::PAR_MIN + 7];
        let run = |n: usize, k: usize| -> (f64, f64) {
            let mut x: Vec<f64> = (0..n * k).map(|i| ((i * 7919) % 1000) as f64 / 7.0).collect();
            let mut y: Vec<f64> = (0..n * k).map(|i| ((i * 104729) % 997) as f64 / 3.0).collect();
            let (mut sx, mut tx) = ([n as i64], [8 * k as i64]);
            let (mut sy, mut ty) = ([n as i64], [8 * k as i64]);
            let vx = view(&mut x, &mut sx, &mut tx);
            let vy = view(&mut y, &mut sy, &mut ty);
            // SAFETY: the views describe x and y, alive for the calls.
            unsafe { (par::sum::<f64>(&Nd::new([&vx], true)), par::dot::<f64>(&Nd::new([&vx, &vy], true))) }
        };
        let want: Vec<((usize, usize), (f64, f64))> =
            sizes.iter().flat_map(|&n| [1, 3].map(|k| ((n, k), run(n, k)))).collect();
        for &((n, k), (s, _)) in &want {
            let exact: f64 = (0..n).map(|i| ((i * k * 7919) % 1000) as f64 / 7.0).sum();
            assert!((s - exact).abs() <= 1e-12 * exact.abs(), "n={n} k={k}: {s} vs {exact}");
        }
        std::thread::scope(|sc| {
            for t in 0..4 {
                let want = &want;
                sc.spawn(move || {
                    for round in 0..2 {
                        for &((n, k), r) in want.iter().skip(t % 2) {
                            assert_eq!(run(n, k), r, "thread {t} round {round} n={n} k={k}");
                        }
                    }
                });
            }
        });
    }
}
