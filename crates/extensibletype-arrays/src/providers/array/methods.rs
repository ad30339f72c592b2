//! `Array`'s Python methods: indexing (`a[i]`, `a[i, j]`), `len`, `fill`,
//! `tolist`, `resize`, `repr`, and the attribute getters.

#[allow(unused_imports)]
use super::*;

// ---- element access --------------------------------------------------------

/// Flat element offset (in elements) of an int / tuple-of-ints index.
pub(super) unsafe fn element_index(a: &ArrayData, key: *mut PyObject) -> Result<usize, PyErrSet> {
    // SAFETY: GIL held; key live.
    unsafe {
        let shape = a.shape();
        let mut idx: Vec<i64> = Vec::with_capacity(shape.len());
        if PyTuple_Check(key) != 0 {
            for i in 0..PyTuple_Size(key) {
                idx.push(index_value(PyTuple_GetItem(key, i))?);
            }
        } else {
            idx.push(index_value(key)?);
        }
        if idx.len() != shape.len() {
            return raise(
                util::index_error(),
                &format!(
                    "Array index needs exactly {} integer(s) for a {}-d array, got {} (slicing is not supported)",
                    shape.len(),
                    shape.len(),
                    idx.len()
                ),
            );
        }
        let mut flat: usize = 0;
        for (axis, (&i, &n)) in idx.iter().zip(shape).enumerate() {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return raise(
                    util::index_error(),
                    &format!("index {i} is out of bounds for axis {axis} with size {n}"),
                );
            }
            flat = flat * n as usize + j as usize;
        }
        Ok(flat)
    }
}

pub(super) unsafe fn index_value(item: *mut PyObject) -> Result<i64, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        if PyLong_Check(item) == 0 && PyObject_HasAttrString(item, c"__index__".as_ptr()) == 0 {
            return raise(
                util::index_error(),
                &format!(
                    "Array indices must be integers or tuples of integers, not {} (slicing is not supported)",
                    util::type_name(item)
                ),
            );
        }
        let idx = Owned::new(PyNumber_Index(item))?;
        let v = PyLong_AsLongLong(idx.0);
        if v == -1 && !PyErr_Occurred().is_null() {
            PyErr_Clear();
            return raise(util::index_error(), "Array index out of range");
        }
        Ok(v)
    }
}

/// A Python scalar converted for `dtype`.
#[derive(Clone, Copy)]
pub(super) enum Scalar {
    F(f64),
    I(i64),
}

pub(super) unsafe fn to_scalar(dtype: DType, value: *mut PyObject) -> Result<Scalar, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        match dtype {
            DType::F64 | DType::F32 => {
                let v = PyFloat_AsDouble(value);
                if v == -1.0 && !PyErr_Occurred().is_null() {
                    return Err(PyErrSet);
                }
                Ok(Scalar::F(v))
            }
            DType::I64 => {
                if PyLong_Check(value) == 0 && PyObject_HasAttrString(value, c"__index__".as_ptr()) == 0 {
                    return raise(
                        util::type_error(),
                        &format!("an int64 Array element must be an integer, not {}", util::type_name(value)),
                    );
                }
                let idx = Owned::new(PyNumber_Index(value))?;
                let v = PyLong_AsLongLong(idx.0);
                if v == -1 && !PyErr_Occurred().is_null() {
                    return Err(PyErrSet);
                }
                Ok(Scalar::I(v))
            }
        }
    }
}

/// Read element `flat` (caller: inside `locked`, index in bounds).
pub(super) unsafe fn read(a: &ArrayData, flat: usize) -> Scalar {
    // SAFETY: flat < size; data is aligned for every dtype. Relaxed atomic
    // loads: other threads may write elements concurrently (free-threaded).
    unsafe {
        match a.dtype {
            DType::F64 => Scalar::F(f64::from_bits(
                (*a.data.cast::<core::sync::atomic::AtomicU64>().add(flat)).load(Ordering::Relaxed),
            )),
            DType::F32 => Scalar::F(f32::from_bits(
                (*a.data.cast::<core::sync::atomic::AtomicU32>().add(flat)).load(Ordering::Relaxed),
            ) as f64),
            DType::I64 => {
                Scalar::I((*a.data.cast::<core::sync::atomic::AtomicI64>().add(flat)).load(Ordering::Relaxed))
            }
        }
    }
}

pub(super) unsafe fn write(a: &ArrayData, flat: usize, v: Scalar) {
    // SAFETY: as read.
    unsafe {
        match (a.dtype, v) {
            (DType::F64, Scalar::F(x)) => {
                (*a.data.cast::<core::sync::atomic::AtomicU64>().add(flat)).store(x.to_bits(), Ordering::Relaxed)
            }
            (DType::F32, Scalar::F(x)) => (*a.data.cast::<core::sync::atomic::AtomicU32>().add(flat))
                .store((x as f32).to_bits(), Ordering::Relaxed),
            (DType::I64, Scalar::I(x)) => {
                (*a.data.cast::<core::sync::atomic::AtomicI64>().add(flat)).store(x, Ordering::Relaxed)
            }
            _ => unreachable!("to_scalar converts for the dtype"),
        }
    }
}

pub(super) unsafe fn scalar_to_py(v: Scalar) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        match v {
            Scalar::F(x) => PyFloat_FromDouble(x),
            Scalar::I(x) => PyLong_FromLongLong(x),
        }
    }
}

pub(super) unsafe extern "C" fn array_getitem(obj: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = data(obj);
            match locked(obj, || element_index(a, key).map(|i| read(a, i))) {
                Ok(v) => scalar_to_py(v),
                Err(PyErrSet) => ptr::null_mut(),
            }
        }
    })
}

pub(super) unsafe extern "C" fn array_setitem(obj: *mut PyObject, key: *mut PyObject, value: *mut PyObject) -> c_int {
    guard(-1, || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            if value.is_null() {
                return raise(util::type_error(), "Array elements cannot be deleted").unwrap_or(-1);
            }
            let a = data(obj);
            let Ok(v) = to_scalar(a.dtype, value) else { return -1 };
            match locked(obj, || element_index(a, key).map(|i| write(a, i, v))) {
                Ok(()) => 0,
                Err(PyErrSet) => -1,
            }
        }
    })
}

pub(super) unsafe extern "C" fn array_len(obj: *mut PyObject) -> Py_ssize_t {
    guard(-1, || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = data(obj);
            match locked(obj, || a.shape().first().copied()) {
                Some(n) => n as Py_ssize_t,
                None => raise(util::type_error(), "len() of a 0-d Array").unwrap_or(-1),
            }
        }
    })
}

// ---- methods -----------------------------------------------------------------

pub(super) unsafe extern "C" fn array_fill(obj: *mut PyObject, value: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = data(obj);
            let Ok(v) = to_scalar(a.dtype, value) else { return ptr::null_mut() };
            // Like any consumer: pin the memory with an export, then fill
            // outside the lock (and without the GIL when large: detaching
            // would suspend the critical section anyway).
            a.pin(obj);
            let (data, n) = (a.data, a.size);
            {
                let _nogil = util::NoGil::new(n >= 1 << 16);
                match (a.dtype, v) {
                    (DType::F64, Scalar::F(x)) => core::slice::from_raw_parts_mut(data.cast::<f64>(), n).fill(x),
                    (DType::F32, Scalar::F(x)) => core::slice::from_raw_parts_mut(data.cast::<f32>(), n).fill(x as f32),
                    (DType::I64, Scalar::I(x)) => core::slice::from_raw_parts_mut(data.cast::<i64>(), n).fill(x),
                    _ => unreachable!("to_scalar converts for the dtype"),
                }
            }
            a.unpin();
            Py_NewRef(Py_None())
        }
    })
}

pub(super) unsafe extern "C" fn array_tolist(obj: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array. The values are copied out under
        // the lock; the lists are built after it.
        unsafe {
            let a = data(obj);
            let (shape, values) =
                locked(obj, || (a.shape().to_vec(), (0..a.size).map(|i| read(a, i)).collect::<Vec<_>>()));
            ret(build_list(&shape, &values))
        }
    })
}

pub(super) fn build_list(shape: &[i64], values: &[Scalar]) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        let Some((&n, rest)) = shape.split_first() else {
            return Ok(Owned::new(scalar_to_py(values[0]))?.into_ptr());
        };
        let list = Owned::new(PyList_New(n as Py_ssize_t))?;
        let step = rest.iter().product::<i64>() as usize;
        for i in 0..n as usize {
            let item = build_list(rest, &values[i * step..(i + 1) * step])?;
            PyList_SetItem(list.0, i as Py_ssize_t, item); // steals item
        }
        Ok(list.into_ptr())
    }
}

pub(super) unsafe extern "C" fn array_resize(obj: *mut PyObject, shape: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        let Ok(new_shape) = parse_shape(shape, "Array.resize()") else { return ptr::null_mut() };
        // SAFETY: GIL held; obj is an Array (a method of its type); run in
        // obj's critical section.
        match locked(obj, || unsafe { resize_locked(obj, &new_shape) }) {
            // SAFETY: GIL held.
            Ok(()) => unsafe { Py_NewRef(Py_None()) },
            Err(PyErrSet) => ptr::null_mut(),
        }
    })
}

/// `Array.resize(shape)`: new memory and dims, the flat C-order contents kept.
///
/// # Safety
/// GIL held; `obj` is an Array; called inside `locked(obj, ..)`, so no
/// acquire or getbuffer runs meanwhile, and `exports == 0` means nobody
/// holds the memory.
unsafe fn resize_locked(obj: *mut PyObject, new_shape: &[i64]) -> Result<(), PyErrSet> {
    let a = data_ptr(obj);
    let refuse = |n: isize| {
        raise(
            util::buffer_error(),
            &format!("Array.resize(): cannot resize an Array while it has {n} exported view(s) or buffer(s)"),
        )
    };
    // SAFETY: obj is an Array: `a` is its live instance data.
    let (exported, itemsize) = unsafe { ((*a).exported(), (*a).dtype.itemsize()) };
    if exported != 0 {
        return refuse(exported);
    }
    let (dims, size) = make_dims(new_shape, itemsize, "Array.resize()")?;
    let (block, bytes) = match alloc_block(size * itemsize) {
        Ok(b) => b,
        Err(PyErrSet) => {
            free_dims(dims, new_shape.len() as i32);
            return Err(PyErrSet);
        }
    };
    // SAFETY: as above.
    if !unsafe { (*a).claim_for_resize() } {
        // An export started since the check (free-threaded).
        free_dims(dims, new_shape.len() as i32);
        free_block(block, bytes);
        // SAFETY: as above.
        return refuse(unsafe { (*a).exported() }.max(1));
    }
    // SAFETY: claimed, so nobody reads or holds the memory and dims until
    // end_resize; `block` holds size * itemsize bytes, the old data nbytes().
    let (old_data, old_bytes, old_dims, old_ndim) = unsafe {
        // Flat C-order contents are kept (as ndarray.resize): the common
        // prefix is copied, the rest stays zero.
        ptr::copy_nonoverlapping((*a).data, block, (*a).nbytes().min(size * itemsize));
        let old = ((*a).data, (*a).alloc_bytes, (*a).dims, (*a).ndim);
        (*a).data = block;
        (*a).alloc_bytes = bytes;
        (*a).dims = dims;
        (*a).ndim = new_shape.len() as i32;
        (*a).size = size;
        (*a).flags = view_flags(&*a);
        (*a).end_resize();
        old
    };
    free_block(old_data, old_bytes);
    free_dims(old_dims, old_ndim);
    Ok(())
}

pub(super) unsafe extern "C" fn array_repr(obj: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is an Array.
        unsafe {
            let a = data(obj);
            let (shape, dtype) = locked(obj, || (a.shape().to_vec(), a.dtype));
            let shape = match shape.len() {
                1 => format!("({},)", shape[0]),
                _ => format!("({})", shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
            };
            let s = format!("Array(shape={shape}, dtype='{}')", dtype.name());
            PyUnicode_FromStringAndSize(s.as_ptr().cast(), s.len() as Py_ssize_t)
        }
    })
}

// ---- attributes --------------------------------------------------------------

pub(super) unsafe fn tuple_of(values: &[i64]) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        let t = PyTuple_New(values.len() as Py_ssize_t);
        if t.is_null() {
            return t;
        }
        for (i, &v) in values.iter().enumerate() {
            let item = PyLong_FromLongLong(v);
            if item.is_null() {
                Py_DECREF(t);
                return ptr::null_mut();
            }
            PyTuple_SetItem(t, i as Py_ssize_t, item);
        }
        t
    }
}

macro_rules! getter {
    ($name:ident, |$obj:ident, $a:ident| $body:expr) => {
        pub(super) unsafe extern "C" fn $name($obj: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
            guard(ptr::null_mut(), || {
                // SAFETY: GIL held; the object is an Array; values are read under the lock.
                unsafe {
                    let $a = data($obj);
                    $body
                }
            })
        }
    };
}

getter!(get_shape, |obj, a| {
    let shape = locked(obj, || a.shape().to_vec());
    tuple_of(&shape)
});
getter!(get_strides, |obj, a| {
    let strides = locked(obj, || a.strides().to_vec());
    tuple_of(&strides)
});
getter!(get_ndim, |obj, a| PyLong_FromLong(locked(obj, || a.ndim) as _));
getter!(get_size, |obj, a| PyLong_FromSize_t(locked(obj, || a.size)));
getter!(get_nbytes, |obj, a| PyLong_FromSize_t(locked(obj, || a.nbytes())));
getter!(get_itemsize, |obj, a| PyLong_FromSize_t(a.dtype.itemsize()));
getter!(get_dtype, |obj, a| {
    let n = a.dtype.name();
    PyUnicode_FromStringAndSize(n.as_ptr().cast(), n.len() as Py_ssize_t)
});
getter!(get_exports, |obj, a| PyLong_FromSsize_t(a.exported()));
