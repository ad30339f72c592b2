//! The `Array` type object: `tp_new` (`Array(shape, dtype)`), dealloc, and
//! the type's creation through `runtime::type_from_spec` (metaclass
//! `ExtensibleType`, slots acquire/release) with its method/getset tables.

#[allow(unused_imports)]
use super::*;

pub(super) unsafe extern "C" fn array_new(subtype: *mut PyTypeObject, args: *mut PyObject, kwds: *mut PyObject) -> *mut PyObject {
    // SAFETY: tp_new contract: GIL held, subtype is Array or a subclass.
    guard(ptr::null_mut(), || ret(unsafe { new_impl(subtype, args, kwds) }))
}

/// `Array(shape, dtype="float64")`.
///
/// # Safety
/// GIL held; `subtype` is `Array` or a subclass; `args` a tuple and `kwds`
/// a dict or NULL (the `tp_new` contract).
pub(super) unsafe fn new_impl(subtype: *mut PyTypeObject, args: *mut PyObject, kwds: *mut PyObject) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: GIL held; a tuple and a dict or NULL (this function's contract).
    let (shape_arg, dtype_arg) = unsafe { new_args(args, kwds)? };
    let shape = parse_shape(shape_arg, "Array()")?;
    // SAFETY: GIL held; NULL or a live object from args or kwds.
    let dtype = unsafe { parse_dtype(dtype_arg)? };
    let (dims, size) = make_dims(&shape, dtype.itemsize(), "Array()")?;
    let block = match alloc_block(size * dtype.itemsize()) {
        Ok(b) => b,
        Err(PyErrSet) => {
            free_dims(dims, shape.len() as i32);
            return Err(PyErrSet);
        }
    };
    // SAFETY: GIL held; subtype is Array or a subclass (its tp_alloc).
    let obj = unsafe {
        let alloc: allocfunc = core::mem::transmute(PyType_GetSlot(subtype, Py_tp_alloc));
        alloc(subtype, 0)
    };
    if obj.is_null() {
        free_dims(dims, shape.len() as i32);
        free_block(block.0, block.1);
        return Err(PyErrSet);
    }
    // SAFETY: obj is a new, zeroed instance of Array or a subclass: its
    // ArrayData is allocated and written here once, before anyone sees it.
    unsafe {
        let a = data_ptr(obj);
        #[cfg(Py_3_12)]
        debug_assert_eq!(PyObject_GetTypeData(obj, array_type()), a.cast(), "data_ptr is PEP 697's address");
        ptr::addr_of_mut!((*a).data).write(block.0);
        ptr::addr_of_mut!((*a).alloc_bytes).write(block.1);
        ptr::addr_of_mut!((*a).dims).write(dims);
        ptr::addr_of_mut!((*a).ndim).write(shape.len() as i32);
        ptr::addr_of_mut!((*a).dtype).write(dtype);
        ptr::addr_of_mut!((*a).size).write(size);
        ptr::addr_of_mut!((*a).exports).write(AtomicIsize::new(0));
        let flags = view_flags(&*a);
        ptr::addr_of_mut!((*a).flags).write(flags);
    }
    Ok(obj)
}

/// `Array()`'s `shape` and `dtype` arguments (borrowed; `dtype` NULL when
/// not given): at most 2 positional, the rest by keyword, `shape` required.
///
/// # Safety
/// GIL held; `args` a tuple, `kwds` a dict or NULL.
unsafe fn new_args(args: *mut PyObject, kwds: *mut PyObject) -> Result<(*mut PyObject, *mut PyObject), PyErrSet> {
    // SAFETY: GIL held; args is a tuple (this function's contract).
    let nargs = unsafe { PyTuple_Size(args) };
    // SAFETY: as above; indices below nargs.
    let item = |i| if nargs > i { unsafe { PyTuple_GetItem(args, i) } } else { ptr::null_mut() };
    let (mut shape_arg, mut dtype_arg) = (item(0), item(1));
    if nargs > 2 {
        return raise(util::type_error(), &format!("Array() takes at most 2 positional arguments ({nargs} given)"));
    }
    let (mut pos, mut k, mut v): (Py_ssize_t, _, _) = (0, ptr::null_mut(), ptr::null_mut());
    // SAFETY: GIL held; kwds a dict (checked non-NULL), not changed while iterated.
    while !kwds.is_null() && unsafe { PyDict_Next(kwds, &mut pos, &mut k, &mut v) } != 0 {
        let name = util::str_of(k).unwrap_or_default();
        let slot = match name.as_str() {
            "shape" => &mut shape_arg,
            "dtype" => &mut dtype_arg,
            _ => return raise(util::type_error(), &format!("Array() got an unexpected keyword argument '{name}'")),
        };
        if !slot.is_null() {
            return raise(util::type_error(), &format!("Array() got multiple values for argument '{name}'"));
        }
        *slot = v;
    }
    if shape_arg.is_null() {
        return raise(util::type_error(), "Array() missing required argument 'shape'");
    }
    Ok((shape_arg, dtype_arg))
}

/// `Array()`'s dtype: float64 for NULL or None, else by name (a str, a
/// type's `__name__` or `str()` of the object, e.g. a numpy dtype).
///
/// # Safety
/// GIL held; `dtype_arg` NULL or a live object.
unsafe fn parse_dtype(dtype_arg: *mut PyObject) -> Result<DType, PyErrSet> {
    // SAFETY: GIL held; dtype_arg NULL (checked first) or live.
    if dtype_arg.is_null() || dtype_arg == unsafe { Py_None() } {
        return Ok(DType::F64);
    }
    // SAFETY: GIL held; dtype_arg live; the new reference is owned.
    let name = unsafe {
        if PyUnicode_Check(dtype_arg) != 0 {
            util::str_of(dtype_arg)
        } else {
            // numpy dtypes and type objects: use str() / __name__.
            let s = if PyType_Check(dtype_arg) != 0 {
                PyObject_GetAttrString(dtype_arg, c"__name__".as_ptr())
            } else {
                PyObject_Str(dtype_arg)
            };
            Owned::new(s).ok().and_then(|s| util::str_of(s.0))
        }
    };
    match name.as_deref().and_then(DType::parse) {
        Some(d) => Ok(d),
        None => {
            // SAFETY: GIL held.
            unsafe { PyErr_Clear() };
            raise(
                util::type_error(),
                &format!("Array(): unsupported dtype {:?} (supported: float64, float32, int64)", name.unwrap_or_default()),
            )
        }
    }
}

pub(super) unsafe extern "C" fn array_dealloc(obj: *mut PyObject) {
    // SAFETY: called by CPython once, on the last reference. Exports hold
    // references (memoryview) or are bracketed by a caller's reference, so
    // none is outstanding here.
    unsafe {
        let a = data_ptr(obj);
        free_block((*a).data, (*a).alloc_bytes);
        free_dims((*a).dims, (*a).ndim);
        let tp = Py_TYPE(obj);
        let free: freefunc = core::mem::transmute(PyType_GetSlot(tp, Py_tp_free));
        free(obj.cast());
        Py_DECREF(tp.cast());
    }
}

// ---- the type ----------------------------------------------------------------

/// Create the `Array` type (metaclass `ExtensibleType`, slots
/// acquire/release) and add it to `module`.
pub(crate) fn create_type(module: *mut PyObject) -> Result<(), PyErrSet> {
    macro_rules! g {
        ($name:literal, $f:expr, $doc:literal) => {
            PyGetSetDef { name: $name.as_ptr(), get: Some($f), set: None, doc: $doc.as_ptr(), closure: ptr::null_mut() }
        };
    }
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        py_method!(c"fill", PyCFunction, array_fill, METH_O, c"fill(value)\n--\n\nSet every element to value."),
        py_method!(
            c"tolist",
            PyCFunction,
            array_tolist,
            METH_NOARGS,
            c"tolist()\n--\n\nThe elements as nested lists of Python scalars."
        ),
        py_method!(c"__dlpack__", PyCFunctionFastWithKeywords, crate::providers::dlpack::array_dlpack, METH_FASTCALL | METH_KEYWORDS,
            c"__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, copy=None)\n--\n\n\
              A DLPack capsule sharing this array's memory (copy=True: a copy); resize refuses until it is deleted."),
        py_method!(c"__dlpack_device__", PyCFunction, crate::providers::dlpack::array_dlpack_device, METH_NOARGS,
            c"__dlpack_device__($self, /)\n--\n\n(1, 0): host memory (kDLCPU)."),
        py_method!(c"resize", PyCFunction, array_resize, METH_O,
            c"resize(shape)\n--\n\nChange the shape in place, keeping the flat C-order contents (new elements are 0).\n\
              Raises BufferError while a view (array.v1 or buffer protocol) is exported."),
        PyMethodDef::zeroed(),
    ]));
    let getset: &'static mut [PyGetSetDef] = Box::leak(Box::new([
        g!(c"shape", get_shape, c"Tuple of extents."),
        g!(c"strides", get_strides, c"Tuple of byte strides (C order)."),
        g!(c"ndim", get_ndim, c"Number of dimensions."),
        g!(c"size", get_size, c"Number of elements."),
        g!(c"nbytes", get_nbytes, c"Bytes of element data."),
        g!(c"itemsize", get_itemsize, c"Bytes per element."),
        g!(c"dtype", get_dtype, c"Element type name: 'float64', 'float32' or 'int64'."),
        g!(c"_exports", get_exports, c"Number of views and buffers currently exported (for tests)."),
        PyGetSetDef { name: ptr::null(), get: None, set: None, doc: ptr::null(), closure: ptr::null_mut() },
    ]));
    let slots: &'static mut [PyType_Slot] = keep_forever(Box::new([
        PyType_Slot { slot: Py_tp_new, pfunc: array_new as *mut c_void },
        PyType_Slot { slot: Py_tp_dealloc, pfunc: array_dealloc as *mut c_void },
        PyType_Slot { slot: Py_tp_repr, pfunc: array_repr as *mut c_void },
        PyType_Slot { slot: Py_tp_methods, pfunc: methods.as_mut_ptr().cast() },
        PyType_Slot { slot: Py_tp_getset, pfunc: getset.as_mut_ptr().cast() },
        PyType_Slot { slot: Py_mp_length, pfunc: array_len as *mut c_void },
        PyType_Slot { slot: Py_mp_subscript, pfunc: array_getitem as *mut c_void },
        PyType_Slot { slot: Py_mp_ass_subscript, pfunc: array_setitem as *mut c_void },
        PyType_Slot { slot: Py_bf_getbuffer, pfunc: array_getbuffer as *mut c_void },
        PyType_Slot { slot: Py_bf_releasebuffer, pfunc: array_releasebuffer as *mut c_void },
        PyType_Slot {
            slot: Py_tp_doc,
            pfunc: c"Array(shape, dtype='float64')\n--\n\n\
                A zero-filled, C-contiguous n-d array (float64, float32 or int64) owned by Rust.\n\
                Provides extensibletype.array.v1 (acquire/release slots) and the buffer protocol\n\
                (numpy.asarray(a) shares its memory). Indexing: a[i] (1-d) or a[i, j, ...] (scalars)."
                .as_ptr() as *mut c_void,
        },
        PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
    ]));
    let spec: &'static mut PyType_Spec = keep_forever(Box::new(PyType_Spec {
        name: c"extensibletype.arrays.Array".as_ptr(),
        basicsize: SPEC_BASICSIZE,
        itemsize: 0,
        flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE) as _,
        slots: slots.as_mut_ptr(),
    }));
    let defs = [
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: array_acquire as *const c_void },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: array_release as *const c_void },
    ];
    // SAFETY: GIL held (module init); the spec and its tables are leaked.
    unsafe {
        let tp = Owned::new(runtime::type_from_spec(module, spec, ptr::null_mut(), &defs)?)?;
        #[cfg(Py_3_12)]
        settle_data_offset(tp.0)?;
        let tp = tp.into_ptr();
        ARRAY_TYPE.store(Py_NewRef(tp), Ordering::Release);
        util::add(module, c"Array", tp)
    }
}
