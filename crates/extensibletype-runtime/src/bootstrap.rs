//! Loading (or creating) the process's runtime: one metaclass per process
//! (docs/spec.md §7), whatever the order in which copies of this crate are
//! imported, in whichever interpreter, and whatever happened to
//! `sys.modules`.
//!
//! **The process-wide rendezvous.** Every copy exports one small static,
//! [`extensibletype_rendezvous_v1`], holding the owner's [`Api`] address
//! once a runtime exists. A copy finds the others through the dynamic
//! loader (Linux: `dl_iterate_phdr` lists the loaded objects, `dlopen` with
//! `RTLD_NOLOAD` + `dlsym` finds the symbol in each, even in libraries
//! loaded `RTLD_LOCAL` as CPython loads extensions). The rendezvous of the
//! *first loaded* copy is the process's ballot box (load order never
//! changes: extension modules are never unloaded); the first copy that
//! claims it creates the runtime and publishes it there. Why this is safe:
//! - nothing is dereferenced unless the loader names it: a symbol of that
//!   exact (versioned) name, in a library mapped now, whose `magic`, `abi`
//!   and `size` match; its `state` is written only by this code, with a
//!   leaked, immutable API struct (whose own `abi_version`/`struct_size` are
//!   checked like a capsule's);
//! - `exec` starts a fresh process: the statics are zero again, no address
//!   survives in the environment or on disk;
//! - `fork` copies the memory: the API struct and the metaclass exist in the
//!   child at the same addresses. A claim in progress in the parent (state
//!   `busy` with the parent's pid) is taken over by the child.
//!
//! Elsewhere (no `dl_iterate_phdr`) only this copy's own rendezvous is seen,
//! and copies meet in `sys.modules` as before.
//!
//! **Per interpreter.** `sys.modules` is per interpreter: the runtime is
//! republished there (`sys.modules["_extensibletype"]`, attributes `api_v1`
//! and `ExtensibleType_v1`) the first time [`import`] runs in each
//! interpreter, for copies of older versions that only look there, and an
//! entry an older copy left there is adopted when no rendezvous holds a
//! runtime yet.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3_ffi::*;

use crate::cpython::{interpreters, layout};
use crate::table::RawTable;
use crate::write::registry;
use crate::{cache, capi, guard, metaclass, pyutil, Api, CacheEntry, PyErrSet, SlotDef};
use extensibletype_core::abi::{ABI_VERSION, API_MIN_SIZE, CAPSULE_NAME};

/// This copy's view of the process's runtime: what matters in every copy,
/// the non-owning ones included (`crate::owner` lists the rest).
pub(crate) struct ThisCopy {
    /// This copy's runtime (the process's), once [`import`] succeeded.
    api: AtomicPtr<Api>,
    /// Serialises this copy's first imports.
    init: Mutex<()>,
    /// Did this copy create the process's runtime (and so own the type
    /// cache and `crate::owner::OWNER`)?
    owner: AtomicBool,
    /// The interpreter of the last [`import`] (only compared).
    last_interpreter: AtomicPtr<PyInterpreterState>,
}

/// This copy's view (see [`ThisCopy`]).
static THIS_COPY: ThisCopy = ThisCopy {
    api: AtomicPtr::new(ptr::null_mut()),
    init: Mutex::new(()),
    owner: AtomicBool::new(false),
    last_interpreter: AtomicPtr::new(ptr::null_mut()),
};

/// The runtime's API struct; [`import`] must have succeeded.
#[inline]
pub(crate) fn api() -> &'static Api {
    // SAFETY: set once by import() and never changed; callers have imported.
    unsafe { THIS_COPY.api.load(Ordering::Acquire).as_ref().expect("extensibletype::runtime::import() not called") }
}

// ABI v1 layout: asserted field by field once, in core
// (`extensibletype_core::abi`, on its opaque pointer types; the same numbers
// as tests/abi/abi_layout.c). CPython's pointer types are thin pointers too,
// so this crate's instantiations have that layout: checked here.
const _: () = {
    use core::mem::{align_of, size_of};
    use extensibletype_core::abi as core_abi;
    assert!(size_of::<Api>() == size_of::<core_abi::Api>() && align_of::<Api>() == align_of::<core_abi::Api>());
    assert!(size_of::<CacheEntry>() == size_of::<core_abi::CacheEntry>());
    assert!(align_of::<CacheEntry>() == align_of::<core_abi::CacheEntry>());
};

/// The field types of [`Api`], pinned to the C signatures of docs/spec.md
/// section 8 (a changed Rust type fails to compile here).
#[allow(dead_code)]
fn api_field_types(a: &Api) {
    let _: u32 = a.abi_version;
    let _: u32 = a.struct_size;
    let _: *mut PyTypeObject = a.metaclass;
    let _: isize = a.table_offset; // Py_ssize_t
    let _: unsafe extern "C" fn(*mut PyTypeObject, u64) -> *const c_void = a.find_slow;
    let _: unsafe extern "C" fn(*const c_char, usize) -> u64 = a.prehash;
    let _: unsafe extern "C" fn(*mut PyObject, *const SlotDef, isize) -> c_int = a.set_slots;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyType_Spec, *mut PyObject, *const SlotDef, isize) -> *mut PyObject =
        a.from_spec;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> c_int = a.py_set_slots;
    let _: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject = a.py_get_slots;
    let _: unsafe extern "C" fn(*mut PyObject) -> *mut PyObject = a.py_table_info;
    let _: unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> *mut PyObject = a.py_lookup;
    let _: unsafe extern "C" fn(*const c_char, u64) -> c_int = a.bind_key;
    let _: *const AtomicPtr<RawTable> = a.foreign_registry; // ExtType_Table **
    let _: isize = a.ob_type_offset; // Py_ssize_t
    let _: *const CacheEntry = a.type_cache; // ExtType_TypeCacheEntry *
    let _: u32 = a.type_cache_bits;
    let _: i32 = a.version_tag_offset;
}

/// `b"ExtTypeR"`, little-endian: marks a rendezvous.
const MAGIC: u64 = u64::from_le_bytes(*b"ExtTypeR");
/// How long a claim may wait for another copy that is creating the runtime.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);

/// One copy's rendezvous (`#[repr(C)]`, layout fixed for this symbol name).
#[repr(C)]
pub struct Rendezvous {
    magic: u64,
    abi_version: u32,
    size: u32,
    /// 0: no runtime yet; odd: `(pid << 1) | 1`, a copy in process `pid` is
    /// creating it; otherwise the address of the runtime's [`Api`].
    state: AtomicUsize,
}

/// This copy's rendezvous, found by other copies through the dynamic loader
/// (module doc). Not an API: the name carries the layout version.
#[no_mangle]
#[used]
#[allow(non_upper_case_globals)]
#[doc(hidden)]
pub static extensibletype_rendezvous_v1: Rendezvous = Rendezvous {
    magic: MAGIC,
    abi_version: ABI_VERSION,
    size: core::mem::size_of::<Rendezvous>() as u32,
    state: AtomicUsize::new(0),
};

impl Rendezvous {
    /// Is this a rendezvous of our layout (read only through a validated
    /// symbol address)?
    fn valid(&self) -> bool {
        self.magic == MAGIC && self.abi_version == ABI_VERSION && self.size as usize == core::mem::size_of::<Self>()
    }
}

/// The symbol's name, for the loader.
#[cfg(target_os = "linux")]
const SYMBOL: &CStr = c"extensibletype_rendezvous_v1";

#[cfg(target_os = "linux")]
mod loader {
    use super::*;
    use core::ffi::{c_char, c_int};

    /// The leading fields of glibc's/musl's `struct dl_phdr_info`.
    #[repr(C)]
    struct DlPhdrInfo {
        addr: usize,
        name: *const c_char,
    }

    extern "C" {
        fn dl_iterate_phdr(
            callback: Option<unsafe extern "C" fn(*mut DlPhdrInfo, usize, *mut c_void) -> c_int>,
            data: *mut c_void,
        ) -> c_int;
        fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlclose(handle: *mut c_void) -> c_int;
    }

    const RTLD_LAZY: c_int = 1;
    const RTLD_NOLOAD: c_int = 4;

    /// `dl_iterate_phdr` callback: collect the names of loaded objects.
    ///
    /// # Safety
    /// Called by the loader with a valid `info` of `size` bytes and our
    /// `data` (a `Vec<CString>`).
    unsafe extern "C" fn collect(info: *mut DlPhdrInfo, size: usize, data: *mut c_void) -> c_int {
        // SAFETY: see the contract; `name` is NUL-terminated or NULL.
        unsafe {
            if size >= core::mem::size_of::<DlPhdrInfo>() {
                let name = (*info).name;
                if !name.is_null() && *name != 0 {
                    (*data.cast::<Vec<std::ffi::CString>>()).push(CStr::from_ptr(name).to_owned());
                }
            }
        }
        0
    }

    /// The rendezvous of every loaded copy, in load order (each library
    /// that holds one stays pinned: its handle is never closed).
    pub(super) fn all() -> Vec<&'static Rendezvous> {
        let mut names: Vec<std::ffi::CString> = Vec::new();
        // SAFETY: `collect` matches the callback's signature; `names` lives
        // across the call. No loader function is called inside the callback.
        unsafe { dl_iterate_phdr(Some(collect), (&mut names as *mut Vec<std::ffi::CString>).cast()) };
        let mut found: Vec<&'static Rendezvous> = Vec::new();
        for name in names {
            // SAFETY: `name` is NUL-terminated; RTLD_NOLOAD never loads a
            // library, it only returns a handle to one already mapped.
            let handle = unsafe { dlopen(name.as_ptr(), RTLD_LAZY | RTLD_NOLOAD) };
            if handle.is_null() {
                continue;
            }
            // SAFETY: a live handle and a NUL-terminated name.
            let sym = unsafe { dlsym(handle, SYMBOL.as_ptr()) }.cast::<Rendezvous>();
            let mut usable = !sym.is_null() && sym.is_aligned() && !found.iter().any(|r| ptr::eq(*r, sym));
            if usable {
                // SAFETY: the loader names a symbol of this exact name in a
                // mapped library (kept mapped by `handle`): our static.
                usable = unsafe { (*sym).valid() };
            }
            if usable {
                // SAFETY: validated above; the handle is kept open, so the
                // library (and the static) stays mapped for the process.
                found.push(unsafe { &*sym });
            } else {
                // SAFETY: the handle came from dlopen above.
                unsafe { dlclose(handle) };
            }
        }
        found
    }
}

/// The process's ballot box: the rendezvous of the first loaded copy (this
/// copy's own where the loader cannot be asked).
fn ballot_box() -> &'static Rendezvous {
    #[cfg(target_os = "linux")]
    if let Some(first) = loader::all().into_iter().next() {
        return first;
    }
    &extensibletype_rendezvous_v1
}

/// Load (or create) the process's runtime. Needs the GIL; on failure returns
/// [`PyErrSet`]: a Python exception is set (`ImportError` on an ABI
/// mismatch).
///
/// Cheap after the first call; the first call in each interpreter also
/// republishes the runtime in that interpreter's `sys.modules`.
pub fn import() -> Result<&'static Api, PyErrSet> {
    let api = THIS_COPY.api.load(Ordering::Acquire);
    if !api.is_null() {
        // SAFETY: the caller holds the GIL, so its interpreter is live.
        let here = unsafe { PyInterpreterState_Get() };
        if here == THIS_COPY.last_interpreter.load(Ordering::Relaxed) {
            // SAFETY: published APIs are leaked, immutable and live forever.
            return Ok(unsafe { &*api });
        }
    }
    // SAFETY: GIL held (the caller's contract).
    guard(Err(PyErrSet), || unsafe { import_slow() })
}

/// The first [`import`] of this copy, or the first in an interpreter.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state).
unsafe fn import_slow() -> Result<&'static Api, PyErrSet> {
    let _init = registry::lock_detached(&THIS_COPY.init);
    // SAFETY: the caller holds the GIL; the import lock serialises this copy's imports.
    unsafe {
        // SAFETY: published APIs are leaked, immutable and live forever.
        let api: &'static Api = match THIS_COPY.api.load(Ordering::Acquire).as_ref() {
            Some(api) => api,
            None => {
                let api = find_or_create()?;
                THIS_COPY.api.store((api as *const Api).cast_mut(), Ordering::Release);
                api
            }
        };
        publish_here(api)?;
        note_interpreters(api);
        THIS_COPY.last_interpreter.store(PyInterpreterState_Get(), Ordering::Relaxed);
        Ok(api)
    }
}

/// Tell the runtime that owns the type cache to look at the interpreters
/// (docs/spec.md §11): it stops caching per-interpreter tags once a second
/// interpreter exists. Another copy's runtime is asked through its slow path,
/// which looks every time.
///
/// # Safety
/// GIL held; `api` is the process's runtime.
unsafe fn note_interpreters(api: &'static Api) {
    if THIS_COPY.owner.load(Ordering::Acquire) {
        cache::note_interpreters();
    } else if interpreters::another_exists() {
        // SAFETY: find_slow accepts any live type (`type` is static).
        unsafe { (api.find_slow)(ptr::addr_of_mut!(PyType_Type), 1) };
    }
}

/// What a claim on the ballot box found.
enum Claim {
    /// A runtime exists (validated).
    Found(&'static Api),
    /// Ours to create: publish or release.
    Won,
    /// Another copy is creating it.
    Busy,
}

/// Try to claim `ballot` for this process.
fn claim(ballot: &'static Rendezvous) -> Result<Claim, AbiMismatch> {
    let mine = ((std::process::id() as usize) << 1) | 1;
    let mut seen = ballot.state.load(Ordering::Acquire);
    loop {
        if seen == 0 || ((seen & 1) == 1 && seen != mine) {
            // Free, or claimed in a parent process before fork: take it.
            match ballot.state.compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Claim::Won),
                Err(now) => {
                    seen = now;
                    continue;
                }
            }
        }
        if (seen & 1) == 1 {
            return Ok(Claim::Busy);
        }
        // SAFETY: only this code stores an even non-zero state: the address
        // of a leaked, immutable API struct.
        return Ok(Claim::Found(unsafe { check_abi(seen as *const Api) }?));
    }
}

/// Find the process's runtime (ballot box, then this interpreter's
/// `sys.modules` for older copies) or create it, and publish it in the
/// ballot box.
///
/// # Safety
/// GIL held; this copy's import lock held.
unsafe fn find_or_create() -> Result<&'static Api, PyErrSet> {
    let ballot = ballot_box();
    let start = Instant::now();
    loop {
        // SAFETY: GIL held (the caller's contract).
        match claim(ballot).map_err(|e| unsafe { e.raise() })? {
            Claim::Found(api) => {
                // SAFETY: GIL held; `api` is a validated runtime.
                unsafe { adopt(api) };
                return Ok(api);
            }
            Claim::Busy => {
                if start.elapsed() > CLAIM_TIMEOUT {
                    // SAFETY: GIL held (the caller's contract).
                    return Err(unsafe {
                        PyErrSet::raise(
                            PyExc_ImportError,
                            "extensibletype: timed out waiting for another copy of the runtime to finish creating it",
                        )
                    });
                }
                // SAFETY: GIL held; detached while sleeping so that the
                // creating copy (another thread) can run.
                unsafe {
                    let ts = PyEval_SaveThread();
                    std::thread::sleep(Duration::from_millis(1));
                    PyEval_RestoreThread(ts);
                }
            }
            Claim::Won => {
                // SAFETY: GIL held; on error the claim is released.
                let made = unsafe { from_sys_modules() }.and_then(|found| match found {
                    Some(api) => Ok(api),
                    // SAFETY: GIL held.
                    None => unsafe { create() },
                });
                match made {
                    Ok(api) => {
                        // The owner's struct, not a view of it (`published`).
                        let owner = published(api) as usize;
                        ballot.state.store(owner, Ordering::Release);
                        extensibletype_rendezvous_v1.state.store(owner, Ordering::Release);
                        return Ok(api);
                    }
                    Err(e) => {
                        ballot.state.store(0, Ordering::Release);
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Use another copy's runtime: its fast-path constants and type cache.
///
/// # Safety
/// `api` is a live runtime whose ABI was checked.
unsafe fn adopt(api: &'static Api) {
    layout::set_fast_path(api.metaclass, api.table_offset, api.foreign_registry);
    // An owner from before the type cache has none (check_abi); this copy's
    // view then stays on its own, never-filled entries.
    if !api.type_cache.is_null() {
        cache::set_view(api.type_cache, api.version_tag_offset as isize);
    }
}

/// Create the runtime (this copy becomes the owner).
///
/// # Safety
/// GIL held; this copy's import lock held and the ballot box claimed.
unsafe fn create() -> Result<&'static Api, PyErrSet> {
    // SAFETY: see the contract; the metaclass is kept by the API struct.
    unsafe {
        let (meta, offset) = metaclass::create()?;
        cache::init();
        let api: &'static Api = Box::leak(Box::new(capi::new(meta, offset, layout::measure_ob_type_offset(meta))));
        layout::set_fast_path(meta, offset, api.foreign_registry);
        THIS_COPY.owner.store(true, Ordering::Release);
        Ok(api)
    }
}

/// A runtime an older copy published in this interpreter's `sys.modules`
/// (`None` when there is none); a corrupt entry is an `ImportError`.
///
/// # Safety
/// GIL held.
unsafe fn from_sys_modules() -> Result<Option<&'static Api>, PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        let shared = shared_module()?;
        let Some(api) = published_api(shared)? else {
            return Ok(None);
        };
        adopt(api);
        Ok(Some(api))
    }
}

/// The runtime published on `shared` (`None` when neither attribute is
/// there); anything inconsistent is an `ImportError` naming the entry.
///
/// # Safety
/// GIL held; `shared` is the live shared module.
unsafe fn published_api(shared: *mut PyObject) -> Result<Option<&'static Api>, PyErrSet> {
    // SAFETY: GIL held; attributes are owned by `Owned`.
    unsafe {
        let existing = shared_attribute(shared, c"api_v1")?;
        let existing_meta = shared_attribute(shared, c"ExtensibleType_v1")?;
        let Some(capsule) = existing else {
            if let Some(meta) = existing_meta {
                // Never replace another runtime's entry, even a broken one.
                return Err(PyErrSet::raise(PyExc_ImportError, &format!(
                    "extensibletype: sys.modules['_extensibletype'] has an ExtensibleType_v1 ({}) \
                     but no api_v1 capsule; refusing to replace another runtime's entry",
                    pyutil::type_name(meta.0)
                )));
            }
            return Ok(None);
        };
        if PyCapsule_IsValid(capsule.0, CAPSULE_NAME.as_ptr()) == 0 {
            return Err(PyErrSet::raise(PyExc_ImportError, &format!(
                "extensibletype: sys.modules['_extensibletype'].api_v1 is not a capsule named {:?} \
                 (found {}); another runtime's entry is corrupt",
                CAPSULE_NAME,
                pyutil::type_name(capsule.0)
            )));
        }
        let api = PyCapsule_GetPointer(capsule.0, CAPSULE_NAME.as_ptr()).cast::<Api>();
        if api.is_null() {
            return Err(PyErrSet);
        }
        let api = check_abi(api).map_err(|e| e.raise())?;
        match existing_meta {
            Some(meta) if meta.0 == api.metaclass.cast() => {}
            other => {
                return Err(PyErrSet::raise(PyExc_ImportError, &format!(
                    "extensibletype: sys.modules['_extensibletype'].ExtensibleType_v1 is {}, \
                     not the metaclass of its api_v1 capsule; another runtime's entry is corrupt",
                    other.map_or_else(|| "missing".to_owned(), |m| format!("a {}", pyutil::type_name(m.0)))
                )))
            }
        }
        Ok(Some(api))
    }
}

/// Make `sys.modules["_extensibletype"]` of this interpreter name `api`
/// (compatibility with copies that look only there). An entry naming
/// another runtime is an `ImportError`: two runtimes in one process.
///
/// # Safety
/// GIL held; `api` is the process's runtime.
unsafe fn publish_here(api: &'static Api) -> Result<(), PyErrSet> {
    // SAFETY: GIL held; every object made here is owned by an `Owned`.
    unsafe {
        let shared = shared_module()?;
        match published_api(shared)? {
            Some(found) if ptr::eq(found, api) => Ok(()),
            Some(found) => Err(PyErrSet::raise(PyExc_ImportError, &format!(
                "extensibletype: sys.modules['_extensibletype'] names another runtime (metaclass at {:p}) \
                 than the process's (at {:p}): a copy of an older extensibletype created its own; \
                 import extensibletype (or any up-to-date copy) first",
                found.metaclass, api.metaclass
            ))),
            None => {
                let capsule = pyutil::Owned::new(PyCapsule_New(
                    published(api).cast_mut().cast(),
                    CAPSULE_NAME.as_ptr(),
                    None,
                ))?;
                if PyObject_SetAttrString(shared, c"api_v1".as_ptr(), capsule.0) < 0
                    || PyObject_SetAttrString(shared, c"ExtensibleType_v1".as_ptr(), api.metaclass.cast()) < 0
                {
                    return Err(PyErrSet);
                }
                Ok(())
            }
        }
    }
}

/// A runtime whose ABI differs from ours: its version and struct size.
#[derive(Debug, PartialEq, Eq)]
struct AbiMismatch {
    version: u32,
    size: u32,
}

impl AbiMismatch {
    /// Raise it as `ImportError`.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state).
    unsafe fn raise(self) -> PyErrSet {
        let msg = format!(
            "extensibletype: the runtime loaded in this process has ABI version {} (API struct of {} bytes), \
             but this extension needs ABI version {ABI_VERSION} (at least {API_MIN_SIZE} bytes)",
            self.version, self.size
        );
        // SAFETY: the caller holds the GIL; PyExc_ImportError is an exception type.
        unsafe { PyErrSet::raise(PyExc_ImportError, &msg) }
    }
}

/// Completed views of older owners' API structs, by the owner's address:
/// `(owner's struct, this copy's view)`. One per distinct runtime struct
/// this copy is shown (a process has one runtime, so in practice one), so
/// that every `check_abi` of one struct returns one view (identity checks
/// compare views) and [`published`] can give the owner's struct back.
static VIEWS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The API struct to publish for `api` (what [`import`] returned) in a
/// capsule or elsewhere: the owner's own struct. A copy that joined an
/// older owner uses a completed view of the owner's shorter struct (same
/// `struct_size`); the view is never published, so that every copy, and
/// the owner itself, recognise what they find.
pub fn published(api: &'static Api) -> *const Api {
    let here = api as *const Api as usize;
    let views = VIEWS.lock().unwrap_or_else(|p| p.into_inner());
    views.iter().find(|&&(_, view)| view == here).map_or(api as *const Api, |&(owner, _)| owner as *const Api)
}

/// Accept a runtime of our ABI version whose API struct is at least ABI
/// v1's first one ([`API_MIN_SIZE`]; an older owner's struct is shorter
/// than ours, the struct being append-only, docs/spec.md §9), and give this
/// copy a complete view of it: the struct itself when it has every field
/// this copy knows, else a copy whose missing appended fields read as
/// absent — no `ob_type` offset, no type cache, the table pointer as the
/// descriptor — made once per owner struct ([`VIEWS`]; leaked, like the
/// struct) and never published ([`published`]). `struct_size` stays the
/// owner's, so every reader of the view (the `Reader`) still reads only
/// what the owner published. No Python.
///
/// # Safety
/// `api` points to a published API struct (leaked, immutable) of at least
/// its own `struct_size` bytes, and to at least its first two fields.
unsafe fn check_abi(api: *const Api) -> Result<&'static Api, AbiMismatch> {
    use core::mem::{offset_of, size_of};
    // SAFETY: the first two fields are always readable (the contract).
    let (version, size) = unsafe { (ptr::addr_of!((*api).abi_version).read(), ptr::addr_of!((*api).struct_size).read()) };
    if version != ABI_VERSION || (size as usize) < API_MIN_SIZE {
        return Err(AbiMismatch { version, size });
    }
    if size as usize >= core::mem::size_of::<Api>() {
        // SAFETY: the struct holds every field of `Api` and lives for the
        // process, immutable (the contract).
        return Ok(unsafe { &*api });
    }
    let mut views = VIEWS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, view)) = views.iter().find(|&&(owner, _)| owner == api as usize) {
        // SAFETY: a view made below, leaked.
        return Ok(unsafe { &*(view as *const Api) });
    }
    let mut full = core::mem::MaybeUninit::<Api>::zeroed();
    // SAFETY: `size` bytes are readable at `api` (the contract) and fit in
    // `full` (size < size_of::<Api>()); they hold every field up to
    // `foreign_registry` (size >= API_MIN_SIZE), the function pointers
    // among them. Every later field that `size` does not cover entirely is
    // set below.
    unsafe {
        ptr::copy_nonoverlapping(api.cast::<u8>(), full.as_mut_ptr().cast::<u8>(), size as usize);
        let f = full.as_mut_ptr();
        let covers = |end: usize| size as usize >= end;
        if !covers(offset_of!(Api, ob_type_offset) + size_of::<isize>()) {
            (*f).ob_type_offset = 0;
        }
        if !covers(offset_of!(Api, version_tag_offset) + size_of::<i32>()) {
            (*f).type_cache = ptr::null();
            (*f).type_cache_bits = 0;
            (*f).version_tag_offset = 0;
        }
        if !covers(offset_of!(Api, flat_offset) + size_of::<isize>()) {
            (*f).flat_offset = (*f).table_offset;
        }
        let view: &'static Api = Box::leak(Box::new(full.assume_init()));
        views.push((api as usize, view as *const Api as usize));
        Ok(view)
    }
}

/// `attr` of the shared module: `None` when absent; any other error (a
/// module `__getattr__` that raises) is an `ImportError` naming the module.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `shared` is a
/// live object (the shared module).
unsafe fn shared_attribute(shared: *mut PyObject, attr: &CStr) -> Result<Option<pyutil::Owned>, PyErrSet> {
    // SAFETY: GIL held; shared is a live module.
    unsafe {
        let value = PyObject_GetAttrString(shared, attr.as_ptr());
        if !value.is_null() {
            return Ok(Some(pyutil::Owned(value)));
        }
        if PyErr_ExceptionMatches(PyExc_AttributeError) != 0 {
            PyErr_Clear();
            return Ok(None);
        }
        let why = pyutil::fetch_message();
        Err(PyErrSet::raise(PyExc_ImportError, &format!(
            "extensibletype: reading sys.modules['_extensibletype'].{} failed: {why}",
            attr.to_string_lossy()
        )))
    }
}

/// `sys.modules["_extensibletype"]`, created empty if absent (borrowed).
/// Anything there that is not a module is an `ImportError`, left in place.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state).
unsafe fn shared_module() -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: the caller holds the GIL; `sys.modules` is a live dict for the
    // interpreter's life and its items are borrowed while it holds them.
    unsafe {
        let modules = PyImport_GetModuleDict();
        let name = c"_extensibletype";
        let existing = PyDict_GetItemString(modules, name.as_ptr());
        if !existing.is_null() {
            if PyModule_Check(existing) == 0 {
                return Err(PyErrSet::raise(PyExc_ImportError, &format!(
                    "extensibletype: sys.modules['_extensibletype'] is a {}, not a module; \
                     refusing to replace another runtime's entry",
                    pyutil::type_name(existing)
                )));
            }
            return Ok(existing);
        }
        let module = pyutil::Owned::new(PyModule_New(name.as_ptr()))?;
        if PyDict_SetItemString(modules, name.as_ptr(), module.0) < 0 {
            return Err(PyErrSet);
        }
        Ok(PyDict_GetItemString(modules, name.as_ptr()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    unsafe extern "C" fn find_slow(_: *mut PyTypeObject, _: u64) -> *const c_void {
        ptr::null()
    }
    unsafe extern "C" fn prehash(_: *const c_char, _: usize) -> u64 {
        7
    }
    unsafe extern "C" fn set_slots(_: *mut PyObject, _: *const SlotDef, _: isize) -> c_int {
        0
    }
    unsafe extern "C" fn from_spec(
        _: *mut PyObject,
        _: *mut PyType_Spec,
        _: *mut PyObject,
        _: *const SlotDef,
        _: isize,
    ) -> *mut PyObject {
        ptr::null_mut()
    }
    unsafe extern "C" fn obj_obj_int(_: *mut PyObject, _: *mut PyObject) -> c_int {
        0
    }
    unsafe extern "C" fn obj_obj(_: *mut PyObject) -> *mut PyObject {
        ptr::null_mut()
    }
    unsafe extern "C" fn obj_obj_obj(_: *mut PyObject, _: *mut PyObject) -> *mut PyObject {
        ptr::null_mut()
    }
    unsafe extern "C" fn bind_key(_: *const c_char, _: u64) -> c_int {
        0
    }

    static ENTRY: [u64; 4] = [0; 4];

    /// A runtime's struct with every field set to something recognisable.
    fn full() -> Api {
        Api {
            abi_version: ABI_VERSION,
            struct_size: size_of::<Api>() as u32,
            metaclass: 0x1000 as *mut PyTypeObject,
            table_offset: 880,
            find_slow,
            prehash,
            set_slots,
            from_spec,
            py_set_slots: obj_obj_int,
            py_get_slots: obj_obj,
            py_table_info: obj_obj,
            py_lookup: obj_obj_obj,
            bind_key,
            foreign_registry: ptr::null(),
            ob_type_offset: 8,
            type_cache: ENTRY.as_ptr().cast(),
            type_cache_bits: 10,
            version_tag_offset: 256,
            flat_offset: 904,
        }
    }

    /// `api`'s first `size` bytes (with `struct_size` = `size`) in an
    /// allocation of exactly that size, as an older runtime leaks it.
    fn truncated(size: usize) -> Box<[u8]> {
        let mut api = full();
        api.struct_size = size as u32;
        // SAFETY: reading `size <= size_of::<Api>()` bytes of a live value.
        let bytes = unsafe { core::slice::from_raw_parts(ptr::addr_of!(api).cast::<u8>(), size) };
        bytes.to_vec().into_boxed_slice()
    }

    /// check_abi on a struct of `size` bytes (kept alive by the caller's box).
    fn check(bytes: &[u8]) -> Result<&'static Api, AbiMismatch> {
        // The box is 1-aligned in principle; copy into 8-aligned storage
        // of the same length (leaked, like a runtime's struct).
        let words: &'static mut [u64] = Vec::leak(vec![0u64; bytes.len().div_ceil(8)]);
        // SAFETY: `words` has room for `bytes.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        // SAFETY: a struct of its own `struct_size` bytes, leaked.
        unsafe { check_abi(words.as_ptr().cast::<Api>()) }
    }

    #[test]
    fn a_complete_struct_is_used_as_is() {
        let api: &'static Api = Box::leak(Box::new(full()));
        // SAFETY: a complete, leaked struct.
        let got = unsafe { check_abi(api) }.unwrap();
        assert!(ptr::eq(got, api));
    }

    #[test]
    fn an_owner_from_before_the_flat_descriptor_is_adopted() {
        let size = offset_of!(Api, flat_offset);
        let got = check(&truncated(size)).unwrap();
        assert_eq!(got.struct_size as usize, size, "readers must still see the owner's size");
        assert_eq!(got.flat_offset, 880, "the table pointer is the descriptor");
        assert_eq!((got.ob_type_offset, got.type_cache_bits, got.version_tag_offset), (8, 10, 256));
        assert!(ptr::eq(got.type_cache, ENTRY.as_ptr().cast()));
        // SAFETY: the function pointer was copied from `full()`.
        assert_eq!(unsafe { (got.prehash)(ptr::null(), 0) }, 7);
        assert_eq!(got.metaclass as usize, 0x1000);
    }

    #[test]
    fn one_view_per_owner_struct_and_the_owner_is_what_gets_published() {
        let bytes = truncated(offset_of!(Api, flat_offset));
        let words: &'static mut [u64] = Vec::leak(vec![0u64; bytes.len().div_ceil(8)]);
        // SAFETY: `words` has room for `bytes.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        let owner = words.as_ptr().cast::<Api>();
        // SAFETY: a struct of its own `struct_size` bytes, leaked.
        let (a, b) = unsafe { (check_abi(owner).unwrap(), check_abi(owner).unwrap()) };
        assert!(ptr::eq(a, b), "identity checks compare views: one per owner struct");
        assert!(!ptr::eq(a, owner));
        assert!(ptr::eq(published(a), owner), "the view is never published");
        let complete: &'static Api = Box::leak(Box::new(full()));
        assert!(ptr::eq(published(complete), complete));
    }

    #[test]
    fn an_owner_from_before_the_type_cache_is_adopted_without_one() {
        for size in [API_MIN_SIZE, offset_of!(Api, type_cache), offset_of!(Api, version_tag_offset), 124] {
            let got = check(&truncated(size)).unwrap();
            assert!(got.type_cache.is_null(), "size {size}");
            assert_eq!((got.type_cache_bits, got.version_tag_offset, got.flat_offset), (0, 0, 880), "size {size}");
            assert_eq!(got.ob_type_offset, if size > API_MIN_SIZE { 8 } else { 0 }, "size {size}");
        }
    }

    #[test]
    fn too_small_or_another_version_is_refused() {
        for size in [0usize, 8, API_MIN_SIZE - 8, API_MIN_SIZE - 1] {
            let mut bytes = truncated(size.max(8)).into_vec();
            bytes.truncate(size.max(8));
            bytes[4..8].copy_from_slice(&(size as u32).to_ne_bytes());
            assert_eq!(check(&bytes).err(), Some(AbiMismatch { version: ABI_VERSION, size: size as u32 }));
        }
        let mut other = truncated(size_of::<Api>()).into_vec();
        other[0..4].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(check(&other).err(), Some(AbiMismatch { version: 2, size: size_of::<Api>() as u32 }));
    }
}
