//! Export: any array.v1 provider -> a DLPack managed tensor (legacy or
//! versioned capsule; `Array.__dlpack__`, `to_dlpack`).

#[allow(unused_imports)]
use super::*;

/// What `__dlpack__` / `to_dlpack` were asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// `None`: legacy capsule; `Some`: the consumer's max version.
    pub max_version: Option<(u32, u32)>,
    /// Requested device (`None`: the array's own).
    pub dl_device: Option<DLDevice>,
    /// `Some(true)`: must copy; `Some(false)`: must not; `None`: if needed.
    pub copy: Option<bool>,
    /// The consumer passed a stream other than None.
    pub stream_given: bool,
}

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
pub(crate) unsafe fn export(obj: *mut PyObject, req: Request) -> Result<(*mut c_void, bool), ()> {
    // SAFETY: GIL held; the view stays in the boxed Export (fixed address)
    // from acquire to release.
    unsafe {
        let provider = Provider::of_or_raise(obj)?;
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
        abi::acquire_with(provider, obj, 0, &mut e.view)?;
        e.provider = Some(provider);
        e.obj = Py_NewRef(obj);
        // From here on, dropping `guard` releases the view and the reference.
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
        let v = &e.view;
        let name = util::type_name(obj);
        if req.stream_given && v.device.device_type == KDL_CPU {
            return raise(util::value_error(), "__dlpack__: stream must be None for CPU arrays");
        }
        if req.stream_given {
            return raise(
                util::buffer_error(),
                &format!("{name}: cannot synchronise streams for DLPack device {}", v.device.device_type),
            );
        }
        if let Some(dev) = req.dl_device {
            if dev != v.device {
                return raise(
                    util::buffer_error(),
                    &format!(
                        "{name}: cannot export to DLPack device ({}, {}); the array is on ({}, {})",
                        dev.device_type, dev.device_id, v.device.device_type, v.device.device_id
                    ),
                );
            }
        }
        if v.flags & abi::BYTESWAPPED != 0 {
            return raise(util::buffer_error(), &format!("{name}: DLPack has no non-native byte order"));
        }
        let itemsize = v.itemsize() as i64;
        if itemsize == 0 || v.dtype.bits % 8 != 0 {
            return raise(util::buffer_error(), &format!("{name}: dtype {} has no whole-byte elements", v.dtype.name()));
        }
        let whole = v.strides().iter().all(|s| s % itemsize == 0);
        let must_copy = match req.copy {
            Some(true) => true,
            Some(false) if !whole => {
                return raise(
                    util::buffer_error(),
                    &format!("{name}: strides are not whole elements; DLPack needs a copy (copy=False)"),
                )
            }
            _ => !whole,
        };
        if must_copy && v.device.device_type != KDL_CPU {
            return raise(util::buffer_error(), &format!("{name}: copies are made of CPU arrays only"));
        }
        let versioned = match req.max_version {
            Some((major, _)) => major >= MAJOR,
            None => false,
        };
        if !versioned && !must_copy && v.flags & abi::READONLY != 0 {
            return raise(
                util::buffer_error(),
                &format!("{name}: a read-only array cannot be exported as a legacy \"dltensor\" (pass max_version)"),
            );
        }
        let n = v.ndim.max(0) as usize;
        let mut t = DLTensor {
            data: v.data,
            device: v.device,
            ndim: n as i32,
            dtype: v.dtype,
            shape: v.shape,
            strides: ptr::null_mut(),
            byte_offset: 0,
        };
        let mut flags = 0;
        if must_copy {
            let size = v.size() as usize;
            let bytes = size * itemsize as usize;
            e.copy = vec![0u64; bytes.div_ceil(8).max(1)];
            copy_c_order(&e.view, e.copy.as_mut_ptr().cast());
            // Shape then C strides (elements), owned by the export.
            e.heap = e.view.shape().to_vec();
            let mut s = 1i64;
            let mut strides = vec![0i64; n];
            for k in (0..n).rev() {
                strides[k] = s;
                s *= e.heap[k].max(1);
            }
            e.heap.extend(strides);
            // The memory is ours now: release the view and the reference.
            if let Some(p) = e.provider.take() {
                (p.release)(e.obj, &mut e.view);
            }
            Py_DECREF(e.obj);
            e.obj = ptr::null_mut();
            t.data = e.copy.as_mut_ptr().cast();
            if n > 0 {
                t.shape = e.heap.as_mut_ptr();
                t.strides = e.heap.as_mut_ptr().add(n);
            } else {
                t.shape = ptr::null_mut();
            }
            flags |= FLAG_IS_COPIED;
        } else {
            if e.view.flags & abi::READONLY != 0 {
                flags |= FLAG_READ_ONLY;
            }
            let strides = e.view.strides().iter().map(|s| s / itemsize);
            if n <= INLINE_DIMS {
                for (slot, s) in e.strides.iter_mut().zip(strides) {
                    *slot = s;
                }
                if n > 0 {
                    t.strides = e.strides.as_mut_ptr();
                }
            } else {
                e.heap = strides.collect();
                t.strides = e.heap.as_mut_ptr();
            }
            if n == 0 {
                t.shape = ptr::null_mut();
            }
        }
        let ctx: *mut Export = &mut **e;
        let out: *mut c_void = if versioned {
            e.versioned.flags = flags;
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
        Ok((out, versioned))
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
pub(crate) unsafe fn export_capsule(obj: *mut PyObject, req: Request) -> Result<*mut PyObject, ()> {
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
            return Err(());
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
) -> Result<Request, ()> {
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
                    let pair = int_pair(v).ok_or(()).or_else(|()| {
                        raise(util::type_error(), &format!("{func}: max_version must be a (major, minor) tuple of ints"))
                    })?;
                    if pair.0 < 0 || pair.1 < 0 {
                        return raise(util::value_error(), &format!("{func}: negative max_version"));
                    }
                    req.max_version = Some((pair.0.min(u32::MAX as i64) as u32, pair.1.min(u32::MAX as i64) as u32));
                }
                "dl_device" if !none => {
                    let pair = int_pair(v).ok_or(()).or_else(|()| {
                        raise(util::type_error(), &format!("{func}: dl_device must be a (device_type, device_id) tuple of ints"))
                    })?;
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
