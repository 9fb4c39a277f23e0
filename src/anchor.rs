//! Several copies of the library in one process.
//!
//! A program may carry two copies: `librseq.a` linked into the
//! executable and `librseq.so` loaded later with `dlopen()` (by a plugin,
//! say), with or without `-rdynamic`. Each copy has its own hidden
//! state; the exported data symbols (`rseq_offset`, `rseq_size`,
//! `rseq_cpu_op_owners`) are one per copy without `-rdynamic`, and the
//! executable's for both copies with it (the later copy's references are
//! interposed). Two ownership tables would let a cpu-op of one copy run
//! while a section of the other commits on the same CPU (lost updates),
//! and a later copy owning registration again would store its own area's
//! offset into the executable's `rseq_offset` (every inline section of the
//! executable then aborts forever).
//!
//! So the copies rendezvous. Each copy has an [`Anchor`] (hidden) and an
//! ELF note (`.note.rseq_impl`, in `area.c`) that locates it; the note is
//! in a `PT_NOTE` segment, which `dl_iterate_phdr` shows for every loaded
//! object whether it exports symbols or not. The first copy to initialise
//! publishes its anchor: the address of its ownership table and how it
//! registers threads. A later copy that finds a published anchor with the
//! same table layout
//!
//! - uses that table (one table for the process: one word per CPU);
//! - never registers threads itself: when glibc registers them, both
//!   copies use glibc's area; when the first copy does, the later one
//!   uses the first copy's area (same offset from the thread pointer in
//!   every thread), as it would use glibc's, and asks the first copy to
//!   register a thread (its slow path and explicit register/unregister
//!   calls go to the first copy's registration entry);
//! - stores nothing into data symbols that are the first copy's (the
//!   `-rdynamic` case), and the first copy's values into its own.
//!
//! A copy with a different table layout (another version) cannot share:
//! it says so on standard error, once, and keeps its own table.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU64, Ordering};

/// The anchor's words (ABI between copies; `area.c` reserves 12 words;
/// addresses are stored as 64-bit words on every architecture).
#[repr(C)]
pub struct Anchor {
    /// [`MAGIC`] once published (written last, with release ordering).
    magic: AtomicU64,
    /// [`layout`] of the publishing copy.
    pub layout: u64,
    /// Address of slot 0 of its ownership table.
    pub table: u64,
    /// Number of usable slots.
    pub capacity: u64,
    /// Its registration owner (`registration::Owner as u8`).
    pub owner: u64,
    /// Its `rseq_offset` value.
    pub offset: i64,
    /// The `rseq_size` its registered threads get.
    pub registered_size: u64,
    /// Address of its `rseq_offset` symbol.
    pub offset_sym: u64,
    /// Address of its `rseq_size` symbol.
    pub size_sym: u64,
    /// Address of its `rseq_flags` symbol.
    pub flags_sym: u64,
    /// Address of its fork page (`cpu_op::engine`), 0 if none.
    pub fork_page: u64,
    /// Address of its `registration::foreign_registration` (0 in copies
    /// that predate it), through which a later copy registers threads in
    /// this copy's area.
    pub register: u64,
}

const _: () = assert!(core::mem::size_of::<Anchor>() == 12 * 8);

/// Value of a published anchor's first word ("rseqANCH").
pub const MAGIC: u64 = 0x7273_6571_414e_4348;
const NOTE_TYPE: u32 = 0x5253_4551;
const NOTE_NAME: &[u8] = b"rseqimpl\0";

/// What must be equal for two copies to share a table: slot size, word
/// offsets, word protocol version (2: owner tid, FUTEX_WAITERS; 3: and
/// the fenced hand-over to a counted waiter, `cpu_op::engine`).
pub fn layout() -> u64 {
    (crate::owner::SLOT_SIZE as u64)
        | (crate::owner::CPU_ID_WORD as u64) << 16
        | (crate::owner::MM_CID_WORD as u64) << 24
        | 3 << 40
}

extern "C" {
    fn rseq_impl_anchor_ptr() -> *mut Anchor;
}

/// This copy's anchor.
pub fn own() -> *mut Anchor {
    // SAFETY: a plain accessor of area.c.
    unsafe { rseq_impl_anchor_ptr() }
}

/// Publishes this copy's anchor (the first copy, at the end of its
/// initialisation).
pub fn publish(fill: impl FnOnce(&mut Anchor)) {
    let a = own();
    // SAFETY: this copy's anchor, written only here, before the magic
    // makes it visible to other copies.
    unsafe {
        fill(&mut *a);
        (*a).layout = layout();
        (*a).magic.store(MAGIC, Ordering::Release);
    }
}

struct Search {
    own: usize,
    found: usize,
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our Search.
    let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr has dlpi_phnum entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type != libc::PT_NOTE {
            continue;
        }
        let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
        let end = start + ph.p_memsz as usize;
        let mut p = start;
        while p + 12 <= end {
            // SAFETY: inside a loaded PT_NOTE segment (mapped, readable).
            let (namesz, descsz, kind) = unsafe {
                let w = p as *const u32;
                (
                    w.read_unaligned() as usize,
                    w.add(1).read_unaligned() as usize,
                    w.add(2).read_unaligned(),
                )
            };
            let name = p + 12;
            let desc = name + namesz.div_ceil(4) * 4;
            let next = desc + descsz.div_ceil(4) * 4;
            if next > end {
                break;
            }
            if kind == NOTE_TYPE && namesz == NOTE_NAME.len() && descsz == 4 {
                // SAFETY: inside the segment (checked above).
                let matches =
                    unsafe { core::slice::from_raw_parts(name as *const u8, namesz) } == NOTE_NAME;
                if matches {
                    // SAFETY: as above.
                    let rel = unsafe { (desc as *const i32).read_unaligned() };
                    let anchor = (desc as isize).wrapping_add(rel as isize) as usize;
                    // SAFETY: the note of a copy of this library locates
                    // its anchor, a hidden static of 12 words.
                    let published = anchor != search.own
                        && unsafe { (*(anchor as *const Anchor)).magic.load(Ordering::Acquire) }
                            == MAGIC;
                    if published {
                        search.found = anchor;
                        return 1;
                    }
                }
            }
            p = next;
        }
    }
    0
}

/// The published anchor of another copy loaded in this process, if any
/// (the first one in load order).
pub fn find_other() -> Option<&'static Anchor> {
    let mut search = Search {
        own: own() as usize,
        found: 0,
    };
    // SAFETY: `visit` matches the callback type and only reads the
    // segments dl_iterate_phdr reports.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    // SAFETY: a published anchor lives as long as its copy, which is
    // never unloaded while this one is (it was loaded first).
    (search.found != 0).then(|| unsafe { &*(search.found as *const Anchor) })
}

/// Says, once, on standard error, that another copy cannot be shared.
pub fn warn_unshared() {
    let msg = b"librseq: another copy of the library with a different layout is loaded in this process; its cpu-ops and this copy's critical sections do not exclude each other\n";
    // SAFETY: writing a static buffer to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}
