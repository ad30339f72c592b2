//! Export: any array.v1 provider -> a DLPack managed tensor (legacy or
//! versioned capsule; `Array.__dlpack__`, `to_dlpack`).

#[allow(unused_imports)]
use super::*;

pub(crate) use super::plan::Request;
use super::plan::{c_strides, element_strides, plan_export, Plan};

/// One export: the managed tensor (versioned or legacy, one of the two is
/// handed out), the view it describes, and what keeps the memory alive.
pub(super) struct Export {
    versioned: DLManagedTensorVersioned,
    legacy: DLManagedTensor,
    /// The acquired view (when sharing memory) and its provider.
    view: ArrayView,
    provider: Option<Provider>,
    /// Strong reference to the exporter (when sharing memory).
    pub(super) obj: *mut PyObject,
    /// Element strides (inline up to [`INLINE_DIMS`]) ...
    strides: [i64; INLINE_DIMS],
    /// ... or on the heap above, with the shape of a copy.
    heap: Vec<i64>,
    /// The copied elements (`copy=True`, or strides that are not whole
    /// elements); u64 words: 8-byte alignment for every dtype.
    copy: Vec<u64>,
}

/// Does the interpreter still run? (Deleters may be called at exit.)
pub(super) fn interpreter_alive() -> bool {
    // SAFETY: callable at any time, with or without the GIL.
    unsafe { Py_IsInitialized() != 0 }
}

/// Does this thread hold the GIL? (Limited API: unknown, so no: callers
/// then take it with `PyGILState_Ensure`, which nests.)
pub(super) fn gil_held() -> bool {
    #[cfg(not(Py_LIMITED_API))]
    // SAFETY: callable at any time after initialisation (checked by callers).
    return unsafe { PyGILState_Check() != 0 };
    #[cfg(Py_LIMITED_API)]
    return false;
}

/// Free an [`Export`]: release the view, drop the reference. Takes the GIL.
///
/// # Safety
/// `ctx` came from [`export()`] and is freed once.
pub(super) unsafe fn free_export(ctx: *mut Export) {
    if ctx.is_null() || !interpreter_alive() {
        return;
    }
    // SAFETY: the GIL is held (checked) or taken before any Python API
    // call; ctx is ours.
    unsafe {
        // Most deleters run with the GIL (capsule destructors, array.v1
        // releases): skip the Ensure/Release pair then.
        let held = gil_held();
        let gil = if held { None } else { Some(PyGILState_Ensure()) };
        let mut e = Box::from_raw(ctx);
        if let Some(p) = e.provider.take() {
            (p.release)(e.obj, &mut e.view);
        }
        if !e.obj.is_null() {
            Py_DECREF(e.obj);
        }
        drop(e);
        if let Some(g) = gil {
            PyGILState_Release(g);
        }
    }
}

pub(super) unsafe extern "C" fn deleter_versioned(mt: *mut DLManagedTensorVersioned) {
    // SAFETY: mt is the `versioned` field of an Export (manager_ctx), as
    // handed out by export(); DLPack calls a deleter once.
    guard((), || unsafe {
        if !mt.is_null() {
            free_export((*mt).manager_ctx.cast());
        }
    })
}

pub(super) unsafe extern "C" fn deleter_legacy(mt: *mut DLManagedTensor) {
    // SAFETY: as deleter_versioned, for the `legacy` field.
    guard((), || unsafe {
        if !mt.is_null() {
            free_export((*mt).manager_ctx.cast());
        }
    })
}

/// Copy the elements of `src` in C order into `dst` (`nbytes` long).
///
/// # Safety
/// `src` is a live CPU view; `dst` holds `src.size() * itemsize` bytes.
pub(super) unsafe fn copy_c_order(src: &ArrayView, dst: *mut u8) {
    let itemsize = src.itemsize();
    let nd = Nd::<1>::new([src], false);
    let (len, [s]) = nd.inner();
    let mut out = dst;
    // SAFETY: every run lies inside the view; out advances within dst.
    unsafe {
        for [p] in nd.runs() {
            if s == itemsize as isize {
                ptr::copy_nonoverlapping(p, out, len * itemsize);
                out = out.add(len * itemsize);
            } else {
                for i in 0..len {
                    ptr::copy_nonoverlapping(p.wrapping_offset(i as isize * s), out, itemsize);
                    out = out.add(itemsize);
                }
            }
        }
    }
}

/// Export `obj` (any array.v1 provider) as a managed tensor. Returns the
/// tensor (`*mut DLManagedTensorVersioned` or `*mut DLManagedTensor`, by
/// `req.max_version`) and whether it is versioned.
///
/// # Safety
/// GIL held; `obj` alive; [`runtime::import`] done.
pub(crate) unsafe fn export(obj: *mut PyObject, req: Request) -> Result<(*mut c_void, bool), PyErrSet> {
    // SAFETY: GIL held and obj alive (this function's contract).
    let provider = unsafe { Provider::of_or_raise(obj)? };
    let mut e = Box::new(Export {
        versioned: DLManagedTensorVersioned {
            version: DLPackVersion { major: MAJOR, minor: MINOR },
            manager_ctx: ptr::null_mut(),
            deleter: Some(deleter_versioned),
            flags: 0,
            dl_tensor: DLTensor::zeroed(),
        },
        legacy: DLManagedTensor { dl_tensor: DLTensor::zeroed(), manager_ctx: ptr::null_mut(), deleter: Some(deleter_legacy) },
        view: ArrayView::new(),
        provider: None,
        obj: ptr::null_mut(),
        strides: [0; INLINE_DIMS],
        heap: Vec::new(),
        copy: Vec::new(),
    });
    // SAFETY: GIL held, obj alive; the view stays in the boxed Export (a
    // fixed address) from acquire until free_export releases it.
    unsafe { abi::acquire_with(provider, obj, 0, &mut e.view)? };
    e.provider = Some(provider);
    // SAFETY: GIL held, obj alive; the reference is dropped by free_export.
    e.obj = unsafe { Py_NewRef(obj) };
    // From here on, dropping `undo` releases the view and the reference.
    struct Undo(Option<Box<Export>>);
    impl Drop for Undo {
        fn drop(&mut self) {
            if let Some(e) = self.0.take() {
                // SAFETY: a fully initialised, not yet handed out Export.
                unsafe { free_export(Box::into_raw(e)) }
            }
        }
    }
    let mut undo = Undo(Some(e));
    let e = undo.0.as_mut().expect("set above");
    let plan = match plan_export(&e.view, &req) {
        Ok(plan) => plan,
        Err(err) => {
            // SAFETY: GIL held; obj alive.
            let name = unsafe { util::type_name(obj) };
            let exc = if err.is_value_error() { util::value_error() } else { util::buffer_error() };
            return raise(exc, &err.message(&name));
        }
    };
    let t = if plan.copy {
        // SAFETY: GIL held; the view is acquired and the reference held.
        unsafe { e.take_copy(&plan) }
    } else {
        e.share(&plan)
    };
    let ctx: *mut Export = &mut **e;
    let out: *mut c_void = if plan.versioned {
        e.versioned.flags = plan.flags;
        e.versioned.dl_tensor = t;
        e.versioned.manager_ctx = ctx.cast();
        ptr::addr_of_mut!(e.versioned).cast()
    } else {
        e.legacy.dl_tensor = t;
        e.legacy.manager_ctx = ctx.cast();
        ptr::addr_of_mut!(e.legacy).cast()
    };
    // Handed out: the deleter frees it from now on.
    let _ = Box::into_raw(undo.0.take().expect("set above"));
    Ok((out, plan.versioned))
}

impl Export {
    /// The tensor over the view's own memory (`plan.copy` false): element
    /// strides inline up to [`INLINE_DIMS`] dimensions, else on the heap.
    fn share(&mut self, plan: &Plan) -> DLTensor {
        let v = &self.view;
        let n = v.ndim.max(0) as usize;
        let strides = element_strides(v.strides(), plan.itemsize);
        let strides_ptr = if n == 0 {
            ptr::null_mut()
        } else if n <= INLINE_DIMS {
            for (slot, s) in self.strides.iter_mut().zip(strides) {
                *slot = s;
            }
            self.strides.as_mut_ptr()
        } else {
            self.heap = strides.collect();
            self.heap.as_mut_ptr()
        };
        DLTensor {
            data: v.data,
            device: v.device,
            ndim: n as i32,
            dtype: v.dtype,
            shape: if n == 0 { ptr::null_mut() } else { v.shape },
            strides: strides_ptr,
            byte_offset: 0,
        }
    }

    /// Copy the view's elements in C order into `self.copy`, then release
    /// the view and the reference (the memory is the export's own now);
    /// the tensor over the copy, shape and strides in `self.heap`.
    ///
    /// # Safety
    /// GIL held; `self.view` acquired from `self.provider` on `self.obj`,
    /// whose reference is held; a CPU view (`plan_export` checked).
    unsafe fn take_copy(&mut self, plan: &Plan) -> DLTensor {
        let (n, device, dtype) = (self.view.ndim.max(0) as usize, self.view.device, self.view.dtype);
        let bytes = self.view.size() as usize * plan.itemsize as usize;
        self.copy = vec![0u64; bytes.div_ceil(8).max(1)];
        // SAFETY: a live CPU view; `copy` holds `size * itemsize` bytes.
        unsafe { copy_c_order(&self.view, self.copy.as_mut_ptr().cast()) };
        // Shape then C strides (elements), owned by the export.
        self.heap = self.view.shape().to_vec();
        let strides = c_strides(&self.heap);
        self.heap.extend(strides);
        if let Some(p) = self.provider.take() {
            // SAFETY: the view was acquired from p on obj and is released once.
            unsafe { (p.release)(self.obj, &mut self.view) };
        }
        // SAFETY: GIL held; the reference taken by export().
        unsafe { Py_DECREF(self.obj) };
        self.obj = ptr::null_mut();
        let base = self.heap.as_mut_ptr();
        let (shape, strides) = if n > 0 { (base, base.wrapping_add(n)) } else { (ptr::null_mut(), ptr::null_mut()) };
        DLTensor {
            data: self.copy.as_mut_ptr().cast(),
            device,
            ndim: n as i32,
            dtype,
            shape,
            strides,
            byte_offset: 0,
        }
    }
}

pub(super) unsafe extern "C" fn capsule_destructor(cap: *mut PyObject) {
    // SAFETY: CPython calls this with the GIL on the capsule's last
    // reference. A consumed capsule has been renamed "used_..." and its
    // tensor belongs to the consumer: nothing to do then. The deleter runs
    // with no exception set (a pending one is put back after it).
    guard((), || unsafe {
        if PyCapsule_IsValid(cap, NAME_VERSIONED.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
            delete_versioned(mt);
        } else if PyCapsule_IsValid(cap, NAME_LEGACY.as_ptr()) != 0 {
            let mt = PyCapsule_GetPointer(cap, NAME_LEGACY.as_ptr()).cast::<DLManagedTensor>();
            if let Some(d) = (*mt).deleter {
                run_deleter(|| d(mt));
            }
        }
    })
}

/// [`export()`] wrapped in a capsule (`"dltensor"` / `"dltensor_versioned"`).
///
/// # Safety
/// As [`export()`].
pub(crate) unsafe fn export_capsule(obj: *mut PyObject, req: Request) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: forwarded; on capsule failure the tensor is deleted here.
    unsafe {
        let (mt, versioned) = export(obj, req)?;
        let name = if versioned { NAME_VERSIONED } else { NAME_LEGACY };
        let cap = PyCapsule_New(mt, name.as_ptr(), Some(capsule_destructor));
        if cap.is_null() {
            if versioned {
                deleter_versioned(mt.cast());
            } else {
                deleter_legacy(mt.cast());
            }
            return Err(PyErrSet);
        }
        Ok(cap)
    }
}

/// Parse `stream=None, max_version=None, dl_device=None, copy=None` from
/// fastcall keywords (`skip` positional arguments are the caller's).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn parse_request(
    func: &str,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<Request, PyErrSet> {
    // SAFETY: GIL held; fastcall arguments as CPython passes them.
    unsafe {
        let mut req = Request { max_version: None, dl_device: None, copy: None, stream_given: false };
        if kwnames.is_null() {
            return Ok(req);
        }
        for i in 0..PyTuple_Size(kwnames) {
            let key = util::str_of(PyTuple_GetItem(kwnames, i)).unwrap_or_default();
            let v = *args.offset(nargs + i);
            let none = v == Py_None();
            match key.as_str() {
                "stream" => req.stream_given = !none,
                "max_version" if !none => {
                    let Some(pair) = int_pair(v) else {
                        return raise(util::type_error(), &format!("{func}: max_version must be a (major, minor) tuple of ints"));
                    };
                    if pair.0 < 0 || pair.1 < 0 {
                        return raise(util::value_error(), &format!("{func}: negative max_version"));
                    }
                    req.max_version = Some((pair.0.min(u32::MAX as i64) as u32, pair.1.min(u32::MAX as i64) as u32));
                }
                "dl_device" if !none => {
                    let Some(pair) = int_pair(v) else {
                        return raise(util::type_error(), &format!("{func}: dl_device must be a (device_type, device_id) tuple of ints"));
                    };
                    req.dl_device = Some(DLDevice { device_type: pair.0 as i32, device_id: pair.1 as i32 });
                }
                "copy" if !none => {
                    if PyBool_Check(v) == 0 {
                        return raise(util::type_error(), &format!("{func}: copy must be True, False or None"));
                    }
                    req.copy = Some(v == Py_True());
                }
                "max_version" | "dl_device" | "copy" => {}
                _ => return raise(util::type_error(), &format!("{func} got an unexpected keyword argument '{key}'")),
            }
        }
        Ok(req)
    }
}

/// A 2-tuple of ints fitting i32/i64 (None: not one; errors cleared).
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn int_pair(v: *mut PyObject) -> Option<(i64, i64)> {
    // SAFETY: GIL held.
    unsafe {
        if PyTuple_Check(v) == 0 || PyTuple_Size(v) != 2 {
            return None;
        }
        let a = PyTuple_GetItem(v, 0);
        let b = PyTuple_GetItem(v, 1);
        if PyLong_Check(a) == 0 || PyLong_Check(b) == 0 {
            return None;
        }
        let (x, y) = (PyLong_AsLongLong(a), PyLong_AsLongLong(b));
        if !PyErr_Occurred().is_null() {
            PyErr_Clear();
            return None;
        }
        Some((x, y))
    }
}

/// `Array.__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None)`.
pub(crate) unsafe extern "C" fn array_dlpack(
    obj: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe {
            if nargs != 0 {
                raise(util::type_error(), "__dlpack__() takes no positional arguments")
            } else {
                parse_request("__dlpack__()", args, nargs, kwnames).and_then(|req| export_capsule(obj, req))
            }
        })
    })
}

/// `Array.__dlpack_device__()`: `(kDLCPU, 0)`.
pub(crate) unsafe extern "C" fn array_dlpack_device(_obj: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held.
    guard(ptr::null_mut(), || unsafe { Py_BuildValue(c"(ii)".as_ptr(), KDL_CPU, 0 as c_int) })
}

/// `to_dlpack(obj, *, stream=None, max_version=None, dl_device=None, copy=None)`.
pub(crate) unsafe extern "C" fn py_to_dlpack(
    _m: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe {
            if nargs != 1 {
                raise(util::type_error(), &format!("to_dlpack() takes exactly 1 positional argument ({nargs} given)"))
            } else {
                parse_request("to_dlpack()", args, nargs, kwnames).and_then(|req| export_capsule(*args, req))
            }
        })
    })
}
