//! `extensibletype.bind` without ctypes, for the signatures whose arguments
//! all travel in registers.
//!
//! `bind(obj, key)` looks the typed slot up on `type(obj)` (the lookup C
//! consumers do: a Python override masks it) and returns a `TypedMethod`: a
//! small vectorcall object holding `obj`, the function's address and the
//! parsed signature. Calling it converts the arguments, calls the C function
//! and converts the result, in about the time of a C method call.
//!
//! How a function of any supported signature is called without a compiler
//! or libffi: on x86-64 System V and AArch64 (AAPCS64) the arguments of a
//! non-variadic function are assigned to registers by class, independently
//! of each other's order: integer-class values (pointers, integers, `bool`)
//! to the next general register (`rdi rsi rdx rcx r8 r9` / `x0`–`x7`),
//! floating-point values to the next vector register (`xmm0`–`xmm7` /
//! `v0`–`v7`). So a function `R f(PyObject *, double, int64_t)` receives
//! exactly what a call through `R (*)(u64, u64, u64, u64, u64, u64, f64 ×
//! 8)` puts in those registers when its integer arguments go to the first
//! integer slots in order and its doubles to the first vector slots; the
//! callee never reads the slots it does not have. Narrow integers are
//! sign- or zero-extended to 64 bits by the caller (what clang expects of
//! callers), `float` travels in the low 32 bits of its vector register, and
//! results come back in `rax`/`x0` (integers, pointers) or `xmm0`/`v0`.
//! Signatures that would need the stack (more than 6 integer-class or 8
//! floating-point arguments), complex values (two registers) or pointer
//! arguments (which `bind` also accepts as ctypes objects) are not taken
//! here: `bind` hands them to the ctypes implementation,
//! `extensibletype._bind`, which also serves other platforms.
//!
//! The GIL stays held during every call (ctypes releases it for flagless
//! functions; a flagless function must work either way).

use core::ffi::{c_int, c_void};
use core::ptr;
use std::cell::RefCell;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3_ffi::*;

use extensibletype_core::signature::{parse_typed_key, Base, Flag, Scalar, Type};
use extensibletype_runtime as runtime;

/// Arguments after `self` that the register path takes at most.
const MAX_ARGS: usize = 7;
const INT_REGS: usize = 6;
const FLOAT_REGS: usize = 8;
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// How one argument or result value crosses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `O`: a borrowed object (arguments only).
    Object,
    /// An integer of `bytes` bytes.
    Int { bytes: u8, signed: bool },
    /// `b`: a one-byte C `bool`.
    Bool,
    F32,
    F64,
    /// `p` (results only): the address as an int.
    Address,
    /// `O+` (results only): a new reference.
    NewRef,
    /// `v` (results only).
    Void,
}

/// A signature the register path can call.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sig {
    ret: Kind,
    flag: Flag,
    nargs: usize,
    args: [Kind; MAX_ARGS],
}

impl Sig {
    /// `Some` when every value travels in one register (see the module doc).
    fn of(sig: &extensibletype_core::signature::Signature) -> Option<Sig> {
        fn value(t: Type) -> Option<Kind> {
            if t.depth != 0 {
                return None;
            }
            Some(match t.base {
                Base::Scalar(s) => match s {
                    Scalar::I8 => Kind::Int { bytes: 1, signed: true },
                    Scalar::I16 => Kind::Int { bytes: 2, signed: true },
                    Scalar::I32 => Kind::Int { bytes: 4, signed: true },
                    Scalar::I64 => Kind::Int { bytes: 8, signed: true },
                    Scalar::U8 => Kind::Int { bytes: 1, signed: false },
                    Scalar::U16 => Kind::Int { bytes: 2, signed: false },
                    Scalar::U32 => Kind::Int { bytes: 4, signed: false },
                    Scalar::U64 => Kind::Int { bytes: 8, signed: false },
                    Scalar::F32 => Kind::F32,
                    Scalar::F64 => Kind::F64,
                    Scalar::B => Kind::Bool,
                    Scalar::C64 | Scalar::C128 => return None,
                },
                Base::Object => Kind::Object,
                Base::VoidPtr => Kind::Address,
                Base::NewRef => Kind::NewRef,
                Base::Void => Kind::Void,
            })
        }
        let ret = value(sig.ret)?;
        let rest = sig.args.get(1..)?;
        if rest.len() > MAX_ARGS {
            return None;
        }
        let mut args = [Kind::Object; MAX_ARGS];
        let (mut ints, mut floats) = (1, 0); // self
        for (slot, &t) in args.iter_mut().zip(rest) {
            let k = value(t)?;
            match k {
                Kind::F32 | Kind::F64 => floats += 1,
                Kind::Object | Kind::Int { .. } | Kind::Bool => ints += 1,
                _ => return None, // `p` arguments: ctypes objects too (the ctypes path)
            }
            *slot = k;
        }
        if sig.flag == Flag::Raises && !matches!(ret, Kind::NewRef | Kind::Void) {
            ints += 1; // the out-pointer
        }
        (ints <= INT_REGS && floats <= FLOAT_REGS).then_some(Sig { ret, flag: sig.flag, nargs: rest.len(), args })
    }
}

/// A `TypedMethod` instance.
#[repr(C)]
struct TypedMethod {
    ob_base: PyObject,
    vectorcall: Option<VectorcallFn>,
    /// The bound object (strong).
    obj: *mut PyObject,
    /// The key (strong; for `repr`).
    key: *mut PyObject,
    func: usize,
    sig: Sig,
}

type VectorcallFn = unsafe extern "C" fn(*mut PyObject, *const *mut PyObject, usize, *mut PyObject) -> *mut PyObject;

extern "C" {
    /// CPython's `PyVectorcall_Call` (3.8+; stable ABI since 3.12), declared
    /// here because pyo3-ffi 0.28 declares it for 3.12+ only.
    #[link_name = "PyVectorcall_Call"]
    fn vectorcall_call(callable: *mut PyObject, tuple: *mut PyObject, dict: *mut PyObject) -> *mut PyObject;
}

/// The `TypedMethod` type: made once, kept for the process (like the
/// metaclass, it is shared by the interpreters of the process).
static TYPE: AtomicPtr<PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// # Safety
/// GIL held.
unsafe fn typed_method_type() -> *mut PyTypeObject {
    let tp = TYPE.load(Ordering::Acquire);
    if !tp.is_null() {
        return tp;
    }
    let members: &'static mut [PyMemberDef] = Box::leak(Box::new([
        PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: Py_T_PYSSIZET,
            offset: core::mem::offset_of!(TypedMethod, vectorcall) as Py_ssize_t,
            flags: Py_READONLY,
            doc: ptr::null(),
        },
        PyMemberDef {
            name: c"__self__".as_ptr(),
            type_code: Py_T_OBJECT_EX,
            offset: core::mem::offset_of!(TypedMethod, obj) as Py_ssize_t,
            flags: Py_READONLY,
            doc: c"The bound object.".as_ptr(),
        },
        // SAFETY: an all-zero PyMemberDef is the array's end marker.
        unsafe { core::mem::zeroed() },
    ]));
    let dealloc_fn: destructor = dealloc;
    let traverse_fn: traverseproc = traverse;
    let clear_fn: inquiry = clear;
    let repr_fn: reprfunc = repr;
    let slots: &'static mut [PyType_Slot] = Box::leak(Box::new([
        PyType_Slot { slot: Py_tp_dealloc, pfunc: dealloc_fn as *mut c_void },
        PyType_Slot { slot: Py_tp_traverse, pfunc: traverse_fn as *mut c_void },
        PyType_Slot { slot: Py_tp_clear, pfunc: clear_fn as *mut c_void },
        PyType_Slot { slot: Py_tp_repr, pfunc: repr_fn as *mut c_void },
        PyType_Slot { slot: Py_tp_call, pfunc: vectorcall_call as *mut c_void },
        PyType_Slot { slot: Py_tp_members, pfunc: members.as_mut_ptr().cast() },
        PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
    ]));
    let spec: &'static mut PyType_Spec = Box::leak(Box::new(PyType_Spec {
        name: c"extensibletype.TypedMethod".as_ptr(),
        basicsize: core::mem::size_of::<TypedMethod>() as c_int,
        itemsize: 0,
        flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL) as _,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: GIL held; the spec and its arrays are leaked (live forever).
    let made = unsafe { PyType_FromSpec(spec) }.cast::<PyTypeObject>();
    if made.is_null() {
        return made;
    }
    match TYPE.compare_exchange(ptr::null_mut(), made, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => made,
        Err(first) => {
            // SAFETY: another thread published its type first; ours is unused.
            unsafe { Py_DECREF(made.cast()) };
            first
        }
    }
}

unsafe extern "C" fn dealloc(me: *mut PyObject) {
    // SAFETY: CPython calls this once, with the GIL, for a TypedMethod.
    unsafe {
        PyObject_GC_UnTrack(me.cast());
        clear(me);
        let tp = Py_TYPE(me);
        let free: freefunc = core::mem::transmute(PyType_GetSlot(tp, Py_tp_free));
        free(me.cast());
        Py_DECREF(tp.cast()); // instances of heap types own a reference to it
    }
}

unsafe extern "C" fn traverse(me: *mut PyObject, visit: visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: `me` is a live TypedMethod (CPython's GC calls this).
    unsafe {
        let m = me.cast::<TypedMethod>();
        for o in [(*m).obj, (*m).key, Py_TYPE(me).cast()] {
            if !o.is_null() {
                let r = visit(o, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        0
    }
}

unsafe extern "C" fn clear(me: *mut PyObject) -> c_int {
    // SAFETY: `me` is a live TypedMethod; the GIL is held.
    unsafe {
        let m = me.cast::<TypedMethod>();
        for field in [&mut (*m).obj, &mut (*m).key] {
            let o = core::mem::replace(field, ptr::null_mut());
            if !o.is_null() {
                Py_DECREF(o);
            }
        }
        0
    }
}

unsafe extern "C" fn repr(me: *mut PyObject) -> *mut PyObject {
    // SAFETY: `me` is a live TypedMethod; the GIL is held.
    unsafe {
        let m = me.cast::<TypedMethod>();
        if (*m).obj.is_null() || (*m).key.is_null() {
            return PyUnicode_FromString(c"<typed method (cleared)>".as_ptr());
        }
        PyUnicode_FromFormat(c"<typed method %U of %R>".as_ptr(), (*m).key, (*m).obj)
    }
}

/// The parsed keys of this thread: `(key text, id, register-path signature)`.
/// Direct-mapped by the key object's address, confirmed by its text, so
/// nothing in it refers to a Python object.
type Memo = [Option<(Box<[u8]>, u64, Option<Sig>)>; 64];

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new([const { None }; 64]) };
}

/// Why a key's text is not a canonical typed key (the ValueError's message).
#[derive(Debug, PartialEq, Eq)]
enum KeyError {
    NotUtf8,
    Parse(String),
}

/// The id of a key and its register-path signature (`None`: the ctypes
/// path), parsed from the key's text without Python.
fn parse_key(bytes: &[u8]) -> Result<(u64, Option<Sig>), KeyError> {
    let text = core::str::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)?;
    let sig = match parse_typed_key(text) {
        Ok(k) => Sig::of(&k.signature),
        Err(e) => return Err(KeyError::Parse(e.message().to_owned())),
    };
    Ok((extensibletype_core::key::prehash_bytes(bytes), sig))
}

/// [`parse_key`] through this thread's memo (slot: the key object's
/// address, confirmed by the text).
fn memo_parse(addr: usize, bytes: &[u8]) -> Result<(u64, Option<Sig>), KeyError> {
    let slot = (addr >> 4) % 64;
    let memo = MEMO.with(|m| match &m.borrow()[slot] {
        Some((k, id, sig)) if &k[..] == bytes => Some((*id, *sig)),
        _ => None,
    });
    if let Some(hit) = memo {
        return Ok(hit);
    }
    let (id, sig) = parse_key(bytes)?;
    MEMO.with(|m| m.borrow_mut()[slot] = Some((bytes.into(), id, sig)));
    Ok((id, sig))
}

/// The UTF-8 text of `bind`'s key (TypeError for a non-str; `None` with an
/// exception set). Borrowed from `key`: valid while `key` lives.
///
/// # Safety
/// GIL held; `key` is live.
unsafe fn key_text<'a>(key: *mut PyObject) -> Option<&'a [u8]> {
    // SAFETY: GIL held; key is live (the caller's contract); the text is
    // the str's cached UTF-8, `len` bytes, alive as long as the str.
    unsafe {
        if PyUnicode_Check(key) == 0 {
            let msg = format!("bind() key must be str, not {}", runtime::pyutil::type_name(key));
            let text = PyUnicode_FromStringAndSize(msg.as_ptr().cast(), msg.len() as Py_ssize_t);
            if !text.is_null() {
                PyErr_SetObject(PyExc_TypeError, text);
                Py_DECREF(text);
            }
            return None;
        }
        let mut len: Py_ssize_t = 0;
        let text = PyUnicode_AsUTF8AndSize(key, &mut len);
        if text.is_null() {
            return None;
        }
        Some(core::slice::from_raw_parts(text.cast::<u8>(), len as usize))
    }
}

/// A new `TypedMethod` binding `obj` to the function at `func` (NULL with
/// an exception set).
///
/// # Safety
/// GIL held; `obj` and `key` are live; `func` is the address registered
/// for `key` on `type(obj)`, a function of signature `sig`.
unsafe fn new_typed_method(obj: *mut PyObject, key: *mut PyObject, func: usize, sig: Sig) -> *mut PyObject {
    // SAFETY: GIL held; `me` is a fresh TypedMethod (its type's basicsize);
    // the references stored are new.
    unsafe {
        let tp = typed_method_type();
        if tp.is_null() {
            return ptr::null_mut();
        }
        let me = PyType_GenericAlloc(tp, 0);
        if me.is_null() {
            return ptr::null_mut();
        }
        let m = me.cast::<TypedMethod>();
        (*m).vectorcall = Some(call);
        (*m).obj = Py_NewRef(obj);
        (*m).key = Py_NewRef(key);
        (*m).func = func;
        (*m).sig = sig;
        me
    }
}

/// `bind(obj, key)`: see the module doc. ValueError for a key that is not a
/// canonical typed key (the parser's message), TypeError for a non-str key.
///
/// # Safety
/// Called by CPython with the GIL held and `nargs` arguments.
pub(crate) unsafe extern "C" fn bind(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    if nargs != 2 {
        // SAFETY: GIL held.
        unsafe { PyErr_Format(PyExc_TypeError, c"bind() takes exactly 2 arguments (%zd given)".as_ptr(), nargs) };
        return ptr::null_mut();
    }
    // SAFETY: CPython passes nargs (2, checked) live arguments.
    let (obj, key) = unsafe { (*args, *args.add(1)) };
    // SAFETY: GIL held; key is live.
    let Some(bytes) = (unsafe { key_text(key) }) else { return ptr::null_mut() };
    let (id, sig) = match memo_parse(key as usize, bytes) {
        Ok(parsed) => parsed,
        Err(KeyError::NotUtf8) => {
            // SAFETY: GIL held.
            unsafe { PyErr_SetString(PyExc_ValueError, c"bind() key is not valid UTF-8".as_ptr()) };
            return ptr::null_mut();
        }
        // SAFETY: GIL held.
        Err(KeyError::Parse(message)) => return unsafe { crate::functions::value_error(&message) },
    };
    // SAFETY: GIL held; obj and key are live.
    let Some(sig) = sig else { return unsafe { ctypes_bind(obj, key) } };
    // SAFETY: GIL held; obj is live.
    let func = unsafe { runtime::find(obj, id) };
    if func.is_null() {
        // SAFETY: GIL held.
        return unsafe { Py_NewRef(Py_None()) };
    }
    // SAFETY: GIL held; func is what the lookup found for key's id on
    // type(obj), registered under the typed key whose signature is sig.
    unsafe { new_typed_method(obj, key, func as usize, sig) }
}

/// The ctypes implementation (`extensibletype._bind.bind`) for a signature
/// the register path does not take.
///
/// # Safety
/// GIL held; `obj` and `key` are live.
unsafe fn ctypes_bind(obj: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held; every new reference is released.
    unsafe {
        let module = PyImport_ImportModule(c"extensibletype._bind".as_ptr());
        if module.is_null() {
            return ptr::null_mut();
        }
        let f = PyObject_GetAttrString(module, c"bind".as_ptr());
        Py_DECREF(module);
        if f.is_null() {
            return ptr::null_mut();
        }
        let r = PyObject_CallFunctionObjArgs(f, obj, key, ptr::null_mut::<PyObject>());
        Py_DECREF(f);
        r
    }
}

/// A register's worth of integer, extended as the C caller would.
fn extend(raw: u64, bytes: u8, signed: bool) -> u64 {
    let shift = 64 - 8 * u32::from(bytes);
    if shift == 0 {
        raw
    } else if signed {
        (((raw << shift) as i64) >> shift) as u64
    } else {
        (raw << shift) >> shift
    }
}

/// Replace the pending exception of converting argument `index` (1-based,
/// counting `self` as ctypes does) by `ctypes.ArgumentError`, as the ctypes
/// path raises.
///
/// # Safety
/// GIL held, an exception set.
unsafe fn argument_error(index: usize) {
    // SAFETY: GIL held; every new reference is released.
    unsafe {
        let (mut t, mut v, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        #[allow(deprecated)]
        PyErr_Fetch(&mut t, &mut v, &mut tb);
        #[allow(deprecated)]
        PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        let ctypes = PyImport_ImportModule(c"ctypes".as_ptr());
        let cls = if ctypes.is_null() { ptr::null_mut() } else { PyObject_GetAttrString(ctypes, c"ArgumentError".as_ptr()) };
        if cls.is_null() {
            PyErr_Clear();
            #[allow(deprecated)]
            PyErr_Restore(t, v, tb);
        } else {
            let name = PyObject_GetAttrString(t, c"__name__".as_ptr());
            let msg = PyUnicode_FromFormat(c"argument %zu: %S: %S".as_ptr(), index, name, v);
            PyErr_SetObject(cls, msg);
            for o in [name, msg, cls, t, v, tb] {
                if !o.is_null() {
                    Py_DECREF(o);
                }
            }
        }
        if !ctypes.is_null() {
            Py_DECREF(ctypes);
        }
    }
}

type IntFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64) -> u64;
type F64Fn = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64) -> f64;
type F32Fn = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64) -> f32;
type VoidFn = unsafe extern "C" fn(u64, u64, u64, u64, u64, u64, f64, f64, f64, f64, f64, f64, f64, f64);

/// What a call returned: the integer register or the vector register.
enum Raw {
    Int(u64),
    F64(f64),
    F32(f32),
    None,
}

/// Call `func` with the registers `i` and `f`, reading the result register
/// `ret` (and `rc` for `!e`) says.
///
/// # Safety
/// `func` is the address of a C function whose parameters are, in class
/// order, a prefix of `i` (integer class) and of `f` (floating point), all
/// in registers on this target (see the module doc), returning per `ret`.
unsafe fn call_registers(func: usize, i: &[u64; INT_REGS], f: &[f64; FLOAT_REGS], ret: Kind, int_result: bool) -> Raw {
    // SAFETY: see the contract: on these targets the callee reads exactly
    // the registers of its own parameters, which the caller filled in class
    // order, and the result register this type reads.
    unsafe {
        if int_result {
            let g: IntFn = core::mem::transmute(func);
            return Raw::Int(g(i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]));
        }
        match ret {
            Kind::F64 => {
                let g: F64Fn = core::mem::transmute(func);
                Raw::F64(g(i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]))
            }
            Kind::F32 => {
                let g: F32Fn = core::mem::transmute(func);
                Raw::F32(g(i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]))
            }
            Kind::Void => {
                let g: VoidFn = core::mem::transmute(func);
                g(i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
                Raw::None
            }
            _ => {
                let g: IntFn = core::mem::transmute(func);
                Raw::Int(g(i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]))
            }
        }
    }
}

/// A result value as a Python object (new reference; NULL with an exception).
///
/// # Safety
/// GIL held.
unsafe fn box_result(kind: Kind, raw: Raw) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        match (kind, raw) {
            (Kind::F64, Raw::F64(x)) => PyFloat_FromDouble(x),
            (Kind::F32, Raw::F32(x)) => PyFloat_FromDouble(f64::from(x)),
            (Kind::Int { bytes, signed: true }, Raw::Int(r)) => PyLong_FromLongLong(extend(r, bytes, true) as i64),
            (Kind::Int { bytes, signed: false }, Raw::Int(r)) => PyLong_FromUnsignedLongLong(extend(r, bytes, false)),
            (Kind::Bool, Raw::Int(r)) => PyBool_FromLong(i64::from(r & 0xff != 0) as _),
            (Kind::Address, Raw::Int(r)) => PyLong_FromSize_t(r as usize),
            (Kind::NewRef, Raw::Int(r)) => {
                let o = r as usize as *mut PyObject;
                if o.is_null() && PyErr_Occurred().is_null() {
                    PyErr_SetString(PyExc_SystemError, c"a typed method returned NULL without setting an exception".as_ptr());
                }
                o
            }
            _ => Py_NewRef(Py_None()),
        }
    }
}

/// The out-pointer buffer of an `!e` method, read back per its result kind.
///
/// # Safety
/// `out` holds what the function wrote for `kind`.
unsafe fn read_out(kind: Kind, out: &[u64; 2]) -> Raw {
    match kind {
        Kind::F64 => Raw::F64(f64::from_bits(out[0])),
        Kind::F32 => Raw::F32(f32::from_bits(out[0] as u32)),
        Kind::Void => Raw::None,
        _ => Raw::Int(out[0]),
    }
}

/// The argument registers of a call, filled in class order (see the module
/// doc): `self` first, then each integer-class value to the next integer
/// register, each floating-point value to the next vector register.
struct Registers {
    ints: [u64; INT_REGS],
    floats: [f64; FLOAT_REGS],
    ni: usize,
    nf: usize,
}

impl Registers {
    /// Registers holding `self` (the bound object's address).
    #[inline(always)]
    fn new(obj: usize) -> Registers {
        let mut ints = [0u64; INT_REGS];
        ints[0] = obj as u64;
        Registers { ints, floats: [0f64; FLOAT_REGS], ni: 1, nf: 0 }
    }

    /// The next integer register (`Sig::of` bounds how many a signature uses).
    #[inline(always)]
    fn int(&mut self, v: u64) {
        self.ints[self.ni] = v;
        self.ni += 1;
    }

    /// The next vector register: `x` as a double, or for `f32` the float's
    /// bits in the low 32 bits.
    #[inline(always)]
    fn float(&mut self, kind: Kind, x: f64) {
        self.floats[self.nf] = if kind == Kind::F32 { f64::from_bits(u64::from((x as f32).to_bits())) } else { x };
        self.nf += 1;
    }
}

/// Convert the arguments into registers per `sig` (`None` with
/// `ctypes.ArgumentError` set).
///
/// # Safety
/// GIL held; `args` holds `sig.nargs` live objects; `obj` is live.
#[inline(always)]
unsafe fn load_arguments(sig: &Sig, obj: *mut PyObject, args: *const *mut PyObject) -> Option<Registers> {
    let mut regs = Registers::new(obj as usize);
    for k in 0..sig.nargs {
        // SAFETY: GIL held; args holds sig.nargs live objects (the caller's contract).
        unsafe {
            let a = *args.add(k);
            match sig.args[k] {
                kind @ (Kind::F64 | Kind::F32) => {
                    let x = PyFloat_AsDouble(a);
                    if x == -1.0 && !PyErr_Occurred().is_null() {
                        argument_error(k + 2);
                        return None;
                    }
                    regs.float(kind, x);
                }
                Kind::Int { bytes, signed } => {
                    let r = PyLong_AsUnsignedLongLongMask(a);
                    if r == u64::MAX && !PyErr_Occurred().is_null() {
                        argument_error(k + 2);
                        return None;
                    }
                    regs.int(extend(r, bytes, signed));
                }
                Kind::Bool => {
                    let t = PyObject_IsTrue(a);
                    if t < 0 {
                        argument_error(k + 2);
                        return None;
                    }
                    regs.int(t as u64);
                }
                _ => regs.int(a as usize as u64), // O: borrowed
            }
        }
    }
    Some(regs)
}

/// The TypeError for a call with `nargs` positional arguments to a method
/// taking `sig.nargs` (`false`: raised).
///
/// # Safety
/// GIL held; `kwnames` is NULL or a tuple.
#[inline(always)]
unsafe fn check_call(sig: &Sig, nargs: usize, kwnames: *mut PyObject) -> bool {
    // SAFETY: GIL held; kwnames NULL or a tuple (the caller's contract).
    unsafe {
        if !kwnames.is_null() && PyTuple_Size(kwnames) > 0 {
            PyErr_SetString(PyExc_TypeError, c"a typed method takes no keyword arguments".as_ptr());
            return false;
        }
        if nargs != sig.nargs {
            PyErr_Format(
                PyExc_TypeError,
                c"this function takes %zd argument%s (%zd given)".as_ptr(),
                sig.nargs as Py_ssize_t,
                if sig.nargs == 1 { c"".as_ptr() } else { c"s".as_ptr() },
                nargs as Py_ssize_t,
            );
            return false;
        }
    }
    true
}

/// Whether `sig` is called with an out-pointer and returns a status (`!e`
/// with a result other than `O+`).
#[inline(always)]
fn status_result(sig: &Sig) -> bool {
    sig.flag == Flag::Raises && !matches!(sig.ret, Kind::NewRef)
}

/// The result of an `!e` call: `rc` 0 boxes what the function wrote to
/// `out`; otherwise NULL with its exception (a SystemError if it set none).
///
/// # Safety
/// GIL held; `me` is live; `out` holds what the function wrote for `sig.ret`.
#[inline(always)]
unsafe fn status_return(me: *mut PyObject, sig: &Sig, rc: u64, out: &[u64; 2]) -> *mut PyObject {
    // SAFETY: GIL held; me is live (the caller's contract).
    unsafe {
        if rc as u32 != 0 {
            if PyErr_Occurred().is_null() {
                PyErr_Format(PyExc_SystemError, c"%R returned -1 without setting an exception".as_ptr(), me);
            }
            return ptr::null_mut();
        }
        box_result(sig.ret, read_out(sig.ret, out))
    }
}

unsafe extern "C" fn call(me: *mut PyObject, args: *const *mut PyObject, nargsf: usize, kwnames: *mut PyObject) -> *mut PyObject {
    // SAFETY: CPython calls this with the GIL for a live TypedMethod.
    let (sig, obj, func) = unsafe {
        let m = me.cast::<TypedMethod>();
        ((*m).sig, (*m).obj, (*m).func)
    };
    let nargs = nargsf & !ARGUMENTS_OFFSET;
    // SAFETY: GIL held; kwnames is NULL or a tuple (vectorcall).
    if !unsafe { check_call(&sig, nargs, kwnames) } {
        return ptr::null_mut();
    }
    if obj.is_null() {
        // SAFETY: GIL held.
        unsafe { PyErr_SetString(PyExc_ReferenceError, c"the typed method's object was cleared".as_ptr()) };
        return ptr::null_mut();
    }
    // SAFETY: GIL held; args holds nargs == sig.nargs live objects; obj is
    // live (the method holds a reference).
    let Some(mut regs) = (unsafe { load_arguments(&sig, obj, args) }) else { return ptr::null_mut() };
    let raises = status_result(&sig);
    let mut out = [0u64; 2];
    if raises && sig.ret != Kind::Void {
        regs.int(out.as_mut_ptr() as usize as u64);
    }
    // SAFETY: func is the function registered under a typed key of
    // signature sig, which `Sig::of` accepted for the register path, and
    // `regs` holds its arguments in class order (plus the out-pointer).
    let raw = unsafe { call_registers(func, &regs.ints, &regs.floats, sig.ret, raises) };
    if raises {
        let Raw::Int(rc) = raw else { unreachable!("an !e call reads the integer register") };
        // SAFETY: GIL held; me is live; out holds what the function wrote.
        return unsafe { status_return(me, &sig, rc, &out) };
    }
    // SAFETY: GIL held.
    unsafe { box_result(sig.ret, raw) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extensibletype_core::signature::parse_signature;

    fn sig(s: &str) -> Option<Sig> {
        Sig::of(&parse_signature(s).unwrap())
    }

    #[test]
    fn register_signatures() {
        assert!(sig("f64(O)").is_some());
        assert!(sig("v(O,f64,f64,f64,f64,f64,f64,f64)").is_some()); // 7 doubles
        assert!(sig("i64(O,i64,i64,i64,i64,i64)").is_some()); // 6 integer registers
        assert!(sig("i64(O,i64,i64,i64,i64,i64,i64)").is_none()); // a 7th: the stack
        assert!(sig("f64(O,i64,i64,i64,i64,i64)!e").is_none()); // + the out-pointer
        assert!(sig("c128(O,c128)").is_none());
        assert!(sig("b(O,p)").is_none());
        assert!(sig("i64(O,*f64,i64)").is_none());
        assert!(sig("p(O)!t").is_some());
        assert!(sig("O+(O)!t").is_some());
    }

    #[test]
    fn keys() {
        let (id, sig) = parse_key(b"test.v1:f#f64(O,i32)").unwrap();
        assert_eq!(id, extensibletype_core::key::prehash_bytes(b"test.v1:f#f64(O,i32)"));
        let sig = sig.expect("registers");
        assert_eq!((sig.ret, sig.nargs, sig.args[0]), (Kind::F64, 1, Kind::Int { bytes: 4, signed: true }));
        assert!(parse_key(b"test.v1:f#c128(O)").unwrap().1.is_none(), "complex: the ctypes path");
        assert_eq!(parse_key(b"test.v1:f#f64(O\xff)"), Err(KeyError::NotUtf8));
        assert!(matches!(parse_key(b"test.v1:f#f64(X)"), Err(KeyError::Parse(m)) if !m.is_empty()));
        assert!(matches!(parse_key(b"no signature"), Err(KeyError::Parse(_))));
        // The memo answers as the parser does, also for a reused address.
        assert_eq!(memo_parse(0x1000, b"test.v1:f#f64(O)"), parse_key(b"test.v1:f#f64(O)"));
        assert_eq!(memo_parse(0x1000, b"test.v1:f#f64(O)"), parse_key(b"test.v1:f#f64(O)"));
        assert_eq!(memo_parse(0x1000, b"test.v1:g#i64(O)"), parse_key(b"test.v1:g#i64(O)"));
        assert_eq!(memo_parse(0x1000, b"test.v1:f#f64(X)"), parse_key(b"test.v1:f#f64(X)"));
    }

    #[test]
    fn registers_in_class_order() {
        let mut r = Registers::new(0x10);
        r.float(Kind::F64, 1.5);
        r.int(7);
        r.float(Kind::F32, 2.5);
        r.int(9);
        assert_eq!((r.ni, r.nf), (3, 2));
        assert_eq!(r.ints[..3], [0x10, 7, 9]);
        assert_eq!(r.floats[0], 1.5);
        assert_eq!(r.floats[1].to_bits() as u32, 2.5f32.to_bits(), "f32 in the low 32 bits");
        let raises = sig("f64(O)!e").unwrap();
        assert!(status_result(&raises));
        assert!(!status_result(&sig("O+(O)!e").unwrap()), "O+ signals by NULL");
        assert!(!status_result(&sig("f64(O)").unwrap()));
    }

    #[test]
    fn extension() {
        assert_eq!(extend(0xff, 1, true), u64::MAX);
        assert_eq!(extend(0x1ff, 1, false), 0xff);
        assert_eq!(extend(0x8000_0000, 4, true) as i64, i64::from(i32::MIN));
        assert_eq!(extend(7, 8, true), 7);
    }
}
