//! The runtime's process-wide state, in two values whose types say who
//! uses them.
//!
//! One copy of this crate owns the process's runtime (docs/spec.md §7: the
//! first that [`crate::import`]s creates the metaclass and publishes its
//! `Api` struct); every other copy, in another extension, goes through that
//! struct like a C consumer. So:
//!
//! - [`Owner`] ([`OWNER`]): the state only the owning copy ever reads or
//!   writes. Its code is reached only through the owner's metaclass slots
//!   and `Api` function pointers, so in a second, non-owning copy this
//!   value stays as it was at load (zero) and nothing reads it.
//! - The per-copy view (matters in *every* copy, the non-owning ones
//!   included): `bootstrap::THIS_COPY` (the `Api` this copy uses, whether it
//!   owns it, its import lock, the interpreter of its last import), the
//!   exported rendezvous `extensibletype_rendezvous_v1` (read by the other
//!   copies), `layout`'s fast-path constants (the owner's metaclass, table
//!   offset and registry pointer, adopted from its `Api`), and the type
//!   cache's view (`cache::VIEW`: the owner's entries and tag offset).
//!
//! | static | room | owner only? |
//! |---|---|---|
//! | [`OWNER`]: registry, foreign index, metaclass table, key-id memo, typed keys, exit gate | `owner` | yes |
//! | `bootstrap::THIS_COPY`, `extensibletype_rendezvous_v1` | `bootstrap` | no: every copy |
//! | `layout::FAST` (fast-path constants) | `cpython` | no: every copy (adopted) |
//! | `cache::VIEW` | read side | no: every copy (adopted) |
//! | `cache::{ENTRIES, GENERATION, MANY_INTERPRETERS, LOCK, EMPTY}`, `cache::tags::PROBE_NAME` | read side | yes (the read side's, not gathered here) |
//! | `pyutil`'s `keep_forever` list | glue | no: any copy that makes a definition |
//!
//! `tests/test_two_runtimes.py` exercises a second copy (the
//! `second_runtime` example) against the owner.

use core::ptr;
use std::sync::atomic::AtomicPtr;
use std::sync::Mutex;

use crate::cpython::threads::ExitGate;
use crate::foreign::Index;
use crate::idhash::IdMap;
use crate::mask::TypedKeys;
use crate::table::RawTable;
use crate::write::registry::Registry;

/// Everything the owning copy keeps for the process (module doc): written by
/// its writers, read by its GIL-free slow path and type cache.
pub(crate) struct Owner {
    /// Who owns which slots: the writers' state, under its mutex
    /// (`registry::Locked`).
    pub(crate) registry: Mutex<Option<Registry>>,
    /// The API struct's `foreign_registry` (docs/spec.md §5, §8): a
    /// perfect-hash table from type address to effective table, which the
    /// ABI v1 lets consumers probe inline. Since the registry became an
    /// index (updated in O(1) per type, [`Owner::foreign_index`]) it stays
    /// NULL: a NULL registry is a miss, and every reader then asks the type
    /// cache or `find_slow`, which answer from the index. (Republishing a
    /// whole table per change was O(registered types) in time and leaked
    /// memory.)
    pub(crate) foreign: AtomicPtr<RawTable>,
    /// The foreign registry: type address → record (effective table, own
    /// table, MRO snapshot `[len, addresses...]` the effective table was
    /// merged along; the type cache compares it with the current MRO, so a
    /// registered plain class whose `__bases__` changed is answered from its
    /// current MRO).
    pub(crate) foreign_index: Index,
    /// Sub-metaclasses of ExtensibleType: metaclass address → itself.
    pub(crate) metaclasses: AtomicPtr<RawTable>,
    /// Key string → id, memoised for class statements (`convert::key_of_name`;
    /// bounded, cleared when full).
    pub(crate) key_ids: Mutex<Option<IdMap<std::sync::Arc<str>, u64>>>,
    /// Typed keys known so far, for the Python-override mask (`crate::mask`).
    pub(crate) typed: TypedKeys,
    /// The gate interpreter exit closes on GIL-free slow paths
    /// (`cpython::threads`).
    pub(crate) exit: ExitGate,
}

/// The owner's state (module doc: untouched in a non-owning copy).
pub(crate) static OWNER: Owner = Owner {
    registry: Mutex::new(None),
    foreign: AtomicPtr::new(ptr::null_mut()),
    foreign_index: Index::new(),
    metaclasses: AtomicPtr::new(ptr::null_mut()),
    key_ids: Mutex::new(None),
    typed: TypedKeys::new(),
    exit: ExitGate::new(),
};
