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
pub(super) unsafe fn new_impl(subtype: *mut PyTypeObject, args: *mut PyObject, kwds: *mut PyObject) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: GIL held; CPython passes a tuple and a dict or NULL.
    unsafe {
        let nargs = PyTuple_Size(args);
        let mut shape_arg = if nargs >= 1 { PyTuple_GetItem(args, 0) } else { ptr::null_mut() };
        let mut dtype_arg = if nargs >= 2 { PyTuple_GetItem(args, 1) } else { ptr::null_mut() };
        if nargs > 2 {
            return raise(util::type_error(), &format!("Array() takes at most 2 positional arguments ({nargs} given)"));
        }
        if !kwds.is_null() {
            let mut pos: Py_ssize_t = 0;
            let (mut k, mut v) = (ptr::null_mut(), ptr::null_mut());
            while PyDict_Next(kwds, &mut pos, &mut k, &mut v) != 0 {
                let name = util::str_of(k).unwrap_or_default();
                let slot = match name.as_str() {
                    "shape" => &mut shape_arg,
                    "dtype" => &mut dtype_arg,
                    _ => {
                        return raise(
                            util::type_error(),
                            &format!("Array() got an unexpected keyword argument '{name}'"),
                        )
                    }
                };
                if !slot.is_null() {
                    return raise(util::type_error(), &format!("Array() got multiple values for argument '{name}'"));
                }
                *slot = v;
            }
        }
        if shape_arg.is_null() {
            return raise(util::type_error(), "Array() missing required argument 'shape'");
        }
        let shape = parse_shape(shape_arg, "Array()")?;
        let dtype = if dtype_arg.is_null() || dtype_arg == Py_None() {
            DType::F64
        } else {
            let name = if PyUnicode_Check(dtype_arg) != 0 {
                util::str_of(dtype_arg)
            } else {
                // numpy dtypes and type objects: use str() / __name__.
                let s = if PyType_Check(dtype_arg) != 0 {
                    PyObject_GetAttrString(dtype_arg, c"__name__".as_ptr())
                } else {
                    PyObject_Str(dtype_arg)
                };
                Owned::new(s).ok().and_then(|s| util::str_of(s.0))
            };
            match name.as_deref().and_then(DType::parse) {
                Some(d) => d,
                None => {
                    PyErr_Clear();
                    return raise(
                        util::type_error(),
                        &format!(
                            "Array(): unsupported dtype {:?} (supported: float64, float32, int64)",
                            name.unwrap_or_default()
                        ),
                    );
                }
            }
        };
        let (dims, size) = make_dims(&shape, dtype.itemsize(), "Array()")?;
        let block = match alloc_block(size * dtype.itemsize()) {
            Ok(b) => b,
            Err(PyErrSet) => {
                free_dims(dims, shape.len() as i32);
                return Err(PyErrSet);
            }
        };
        let alloc: allocfunc = core::mem::transmute(PyType_GetSlot(subtype, Py_tp_alloc));
        let obj = alloc(subtype, 0);
        if obj.is_null() {
            free_dims(dims, shape.len() as i32);
            free_block(block.0, block.1);
            return Err(PyErrSet);
        }
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
        Ok(obj)
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
