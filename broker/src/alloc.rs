//! The broker's global allocator: the system allocator, except that a single allocation of
//! [`HUGE`] bytes or more only reserves address space (an anonymous `mmap` with
//! `MAP_NORESERVE`), whose pages cost memory only once written.
//!
//! Why: the Kafka protocol decoder (`kafka-protocol` 0.18) sizes a decoded array by the count
//! the client sent, `Vec::with_capacity(n)`, before it reads one element. A 100-byte request
//! claiming 2^31 elements asks for hundreds of GiB; the system allocator refuses that, and
//! Rust aborts the process on a refused allocation — one client could stop a broker. Reserved
//! instead of refused, the allocation succeeds, the decoder reads elements until the
//! request's bytes run out and fails with an error, and since every element takes at least
//! one byte of the request, the memory written stays bounded by the request's size (which
//! the Kafka listener caps). Allocations this large have no other use in the broker.
//!
//! The reservation relies on Linux's default overcommit policies (`vm.overcommit_memory` 0
//! or 1); under strict accounting (2) it is refused like any other.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;

/// Allocations at least this large are reserved, not committed.
pub const HUGE: usize = 1 << 30;
/// mmap's alignment: the page size, or a multiple of it.
const PAGE: usize = 4096;

/// See the module docs. Install it with `#[global_allocator]` in a binary.
pub struct Allocator;

fn huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

fn reserve(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
    // no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p.cast() }
}

// SAFETY: every block is released the way it was obtained: `huge` depends only on the
// layout, which callers pass back unchanged to dealloc and realloc.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if huge(&layout) { reserve(layout.size()) } else { unsafe { System.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Anonymous mappings are zero-filled.
        if huge(&layout) { reserve(layout.size()) } else { unsafe { System.alloc_zeroed(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if huge(&layout) {
            // SAFETY: `ptr` is a mapping of exactly this size made by `reserve`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (huge(&layout), huge(&new_layout)) {
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `reserve`;
                // the kernel moves its pages without copying them.
                let p = unsafe {
                    libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p.cast() }
            }
            _ => {
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are valid for the smaller size and distinct.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}
