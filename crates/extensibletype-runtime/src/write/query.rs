//! What `extensibletype.get_slots` and `table_info` report, read through the
//! registry's query API ([`Locked::slots_along`],
//! [`Locked::table_view`]): gathered under the mutex, turned into
//! Python objects after it is released.

use core::ffi::CStr;

use pyo3_ffi::*;

use super::registry::{Locked, TableView};
use crate::cpython::layout;
use crate::error::Invalid;
use crate::pyutil::Owned;
use crate::table::Table;
use crate::PyErrSet;

/// What a lookup on `tp` finds, as `{key or id: address}`: the own slots
/// merged along the current MRO, first definition wins, without the typed
/// entries a Python override masks (`crate::mask`; [`table_info`] describes
/// the stored table instead). A new dict.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a
/// live, ready type.
pub(crate) unsafe fn get_slots(tp: *mut PyTypeObject) -> Result<Owned, PyErrSet> {
    // SAFETY: GIL held; `tp` is live, so is every type of its MRO.
    let mro = unsafe { layout::mro(tp) };
    // SAFETY: as above (the query's contract).
    let (mut provided, names) = unsafe { Locked::get().slots_along(&mro) };
    // The GIL is held: the mask is exact.
    // SAFETY: GIL held; the MRO's types are alive.
    unsafe { crate::mask::filter(&mro, &mut provided) };
    // SAFETY: GIL held; every object made here is owned by an `Owned`.
    unsafe {
        let dict = Owned::new(PyDict_New())?;
        for (id, p, _) in provided {
            let key = match names.get(&id) {
                Some(name) => PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as isize),
                None => PyLong_FromUnsignedLongLong(id),
            };
            let key = Owned::new(key)?;
            let value = Owned::new(PyLong_FromUnsignedLongLong(p as u64))?;
            if PyDict_SetItem(dict.0, key.0, value.0) < 0 {
                return Err(PyErrSet);
            }
        }
        Ok(dict)
    }
}

/// The kind of `tp`'s table and its statistics `[size, bins, count, bytes,
/// flat]` (pure: the view is the registry's answer).
fn describe(view: TableView<'_>) -> Result<(&'static CStr, [usize; 5]), Invalid> {
    let stats = |t: &Table| [t.size(), t.bins(), t.len(), t.bytes(), usize::from(t.is_flat())];
    Ok(match view {
        TableView::Published { extensible, table } => {
            let kind = match (extensible, table.is_some()) {
                (true, _) => c"extensible",
                (false, true) => c"foreign",
                (false, false) => c"none",
            };
            (kind, table.map_or([0; 5], stats))
        }
        TableView::Inherited(entries) if entries.is_empty() => (c"none", [0; 5]),
        TableView::Inherited(entries) => (c"inherited", stats(&Table::build(&entries)?)),
    })
}

/// `{size, bins, count, bytes, kind, flat}` of the table a lookup on `tp`
/// probes (a new dict); `flat`: a single-level table (docs/spec.md §2.4).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is a
/// live, ready type.
pub(crate) unsafe fn table_info(tp: *mut PyTypeObject) -> Result<Owned, PyErrSet> {
    // SAFETY: GIL held; `tp` is live, so is every type of its MRO.
    let mro = unsafe { layout::mro(tp) };
    let described = {
        let mut locked = Locked::get();
        // SAFETY: as above (the query's contract).
        describe(unsafe { locked.table_view(tp, &mro) })
    };
    // Raised once the mutex is released.
    // SAFETY: GIL held.
    let (kind, [size, bins, count, bytes, flat]) = described.map_err(|e| unsafe { e.raise() })?;
    // SAFETY: GIL held; every object made here is owned by an `Owned`.
    unsafe {
        let dict = Owned::new(PyDict_New())?;
        let items: [(&CStr, *mut PyObject); 6] = [
            (c"size", PyLong_FromSize_t(size)),
            (c"bins", PyLong_FromSize_t(bins)),
            (c"count", PyLong_FromSize_t(count)),
            (c"bytes", PyLong_FromSize_t(bytes)),
            (c"kind", PyUnicode_FromString(kind.as_ptr())),
            (c"flat", PyBool_FromLong(flat as _)),
        ];
        for (name, value) in items {
            let value = Owned::new(value)?;
            if PyDict_SetItemString(dict.0, name.as_ptr(), value.0) < 0 {
                return Err(PyErrSet);
            }
        }
        Ok(dict)
    }
}
