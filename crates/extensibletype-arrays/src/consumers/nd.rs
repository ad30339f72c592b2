//! The strided n-d iteration shared by the kernels: K operands of one
//! shape, each with its own byte strides, reduced to as few and as long
//! runs as possible.
//!
//! `Nd::new` drops size-1 axes, flips axes whose strides are all negative
//! (when the kernel allows reordering), sorts axes by the first operand's
//! stride (largest outside, so the innermost run walks memory forwards),
//! and merges neighbouring axes that are contiguous in every operand. A
//! C- or F-contiguous array (or a reversed one) becomes a single run.

// Index loops over small fixed-size lane arrays are what LLVM vectorizes.
#![allow(clippy::needless_range_loop)]

use crate::abi::ArrayView;

/// Most axes the iteration handles (NumPy's limit).
pub(crate) const MAX: usize = 64;

/// K operands over a common (collapsed) shape.
pub(crate) struct Nd<const K: usize> {
    /// Number of axes after collapsing (>= 1 unless empty).
    pub ndim: usize,
    /// Extents, outermost first.
    pub shape: [usize; MAX],
    /// Byte strides per operand, per axis.
    pub strides: [[isize; MAX]; K],
    /// Base pointers (element [0, ..., 0] after flips).
    pub ptrs: [*mut u8; K],
    /// Total number of elements.
    pub size: usize,
}

impl<const K: usize> Nd<K> {
    /// Build from views of equal shape (the caller checked). `reorder`:
    /// the kernel does not care about element order (every kernel here:
    /// sums are order-independent up to rounding, axpy is elementwise).
    pub fn new(views: [&ArrayView; K], reorder: bool) -> Nd<K> {
        let shape0 = views[0].shape();
        let mut nd = Nd { ndim: 0, shape: [0; MAX], strides: [[0; MAX]; K], ptrs: [core::ptr::null_mut(); K], size: 1 };
        for k in 0..K {
            nd.ptrs[k] = views[k].data.cast();
        }
        // Drop size-1 axes; an empty array has nothing to iterate.
        for (axis, &n) in shape0.iter().enumerate() {
            if n == 0 {
                nd.size = 0;
                nd.ndim = 0;
                return nd;
            }
            if n == 1 {
                continue;
            }
            let i = nd.ndim;
            nd.shape[i] = n as usize;
            for k in 0..K {
                nd.strides[k][i] = views[k].strides()[axis] as isize;
            }
            nd.ndim += 1;
            nd.size *= n as usize;
        }
        if reorder {
            // Flip axes walked backwards by every operand.
            for i in 0..nd.ndim {
                if (0..K).all(|k| nd.strides[k][i] <= 0) && (0..K).any(|k| nd.strides[k][i] < 0) {
                    for k in 0..K {
                        let s = nd.strides[k][i];
                        // SAFETY of the later dereference: the last element
                        // along the axis is inside the view.
                        nd.ptrs[k] = nd.ptrs[k].wrapping_offset(s * (nd.shape[i] as isize - 1));
                        nd.strides[k][i] = -s;
                    }
                }
            }
            // Insertion sort by |stride| of operand 0, descending (stable).
            for i in 1..nd.ndim {
                let mut j = i;
                while j > 0 && nd.strides[0][j - 1].unsigned_abs() < nd.strides[0][j].unsigned_abs() {
                    nd.shape.swap(j - 1, j);
                    for k in 0..K {
                        nd.strides[k].swap(j - 1, j);
                    }
                    j -= 1;
                }
            }
        }
        // Merge axis i into i + 1 when contiguous for every operand.
        let mut out = 0usize;
        for i in 0..nd.ndim {
            if out > 0 && (0..K).all(|k| nd.strides[k][out - 1] == nd.strides[k][i] * nd.shape[i] as isize) {
                nd.shape[out - 1] *= nd.shape[i];
                for k in 0..K {
                    nd.strides[k][out - 1] = nd.strides[k][i];
                }
            } else {
                nd.shape[out] = nd.shape[i];
                for k in 0..K {
                    nd.strides[k][out] = nd.strides[k][i];
                }
                out += 1;
            }
        }
        nd.ndim = out;
        if nd.ndim == 0 {
            // A single element (0-d, or all axes of size 1).
            nd.ndim = 1;
            nd.shape[0] = 1;
            for k in 0..K {
                nd.strides[k][0] = 0;
            }
        }
        nd
    }

    /// Length and byte strides of the innermost run.
    #[inline(always)]
    pub fn inner(&self) -> (usize, [isize; K]) {
        if self.ndim == 0 {
            return (0, [0; K]); // empty: runs() yields nothing
        }
        let last = self.ndim - 1;
        (self.shape[last], core::array::from_fn(|k| self.strides[k][last]))
    }

    /// The start of every innermost run, in order (an iterator rather than
    /// a closure-taking method: the loop body then stays inside the
    /// caller, which the kernels compile several times with different
    /// target features; a closure would be compiled once, without them).
    #[inline(always)]
    pub fn runs(&self) -> Runs<'_, K> {
        Runs { nd: self, idx: [0; MAX], ptrs: self.ptrs, done: self.size == 0 }
    }
}

/// Iterator over the innermost runs of an [`Nd`].
pub(crate) struct Runs<'a, const K: usize> {
    nd: &'a Nd<K>,
    idx: [usize; MAX],
    ptrs: [*mut u8; K],
    done: bool,
}

impl<const K: usize> Iterator for Runs<'_, K> {
    type Item = [*mut u8; K];

    #[inline(always)]
    fn next(&mut self) -> Option<[*mut u8; K]> {
        if self.done {
            return None;
        }
        let out = self.ptrs;
        // Odometer increment over the outer axes ndim-2 .. 0.
        let nd = self.nd;
        let mut axis = nd.ndim - 1;
        loop {
            if axis == 0 {
                self.done = true;
                break;
            }
            axis -= 1;
            self.idx[axis] += 1;
            for k in 0..K {
                self.ptrs[k] = self.ptrs[k].wrapping_offset(nd.strides[k][axis]);
            }
            if self.idx[axis] < nd.shape[axis] {
                break;
            }
            for k in 0..K {
                self.ptrs[k] = self.ptrs[k].wrapping_offset(-nd.strides[k][axis] * nd.shape[axis] as isize);
            }
            self.idx[axis] = 0;
        }
        Some(out)
    }
}
