//! The guest's allocator: a bump allocator, which only hands out memory and
//! never reuses it.
//!
//! That is sound here and only here because the host runs every call on a
//! fresh instance, so all memory is dropped when the call ends. It makes the
//! host's copying of the cart into the guest (one `cabi_realloc` per string
//! and list) much cheaper than a general-purpose allocator. Freeing or
//! growing the most recent allocation is done in place, so a `Vec` or
//! `String` that grows at the top of the heap does not leave copies behind.
//!
//! Opt out with `default-features = false` on the SDK dependency.

#![allow(unsafe_code)] // a global allocator is `unsafe` by nature

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;
use core::ptr;

const PAGE: usize = 65_536;

/// Bump allocation over pages taken with `memory.grow`.
pub struct Bump {
    /// The next free byte.
    next: Cell<usize>,
    /// The end of the pages this allocator owns.
    end: Cell<usize>,
}

// SAFETY: a wasm32-wasip2 guest has one thread.
unsafe impl Sync for Bump {}

impl Bump {
    /// An allocator that owns no memory yet.
    pub const fn new() -> Self {
        Bump {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// Makes `size` bytes at `start` (aligned to `align`) available, growing
    /// memory as needed. Returns where they are: `start`, or a fresh region
    /// when another allocator grew memory meanwhile; `None` when memory cannot
    /// grow. The caller moves `next` past what it takes.
    fn reserve(&self, start: usize, size: usize, align: usize) -> Option<usize> {
        let end = start.checked_add(size)?;
        if end <= self.end.get() {
            return Some(start);
        }
        let missing = end - self.end.get();
        let pages = missing.div_ceil(PAGE);
        let previous = wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return None;
        }
        let grown_from = previous * PAGE;
        if grown_from == self.end.get() {
            self.end.set(grown_from + pages * PAGE);
            return Some(start);
        }
        // Someone else (wasi-libc's own malloc) grew memory since: start
        // over in a region of our own, large enough on its own.
        let start = grown_from.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        let total = end - grown_from;
        let extra = total.div_ceil(PAGE).saturating_sub(pages);
        if extra > 0 && wasm32::memory_grow(0, extra) == usize::MAX {
            return None;
        }
        self.end.set(grown_from + (pages + extra) * PAGE);
        Some(start)
    }
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let Some(start) = self
            .next
            .get()
            .checked_add(align - 1)
            .map(|n| n & !(align - 1))
        else {
            return ptr::null_mut();
        };
        match self.reserve(start, layout.size(), align) {
            Some(start) => {
                self.next.set(start + layout.size());
                start as *mut u8
            }
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the latest allocation can be given back.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start + layout.size() == self.next.get() {
            // The latest allocation grows or shrinks where it is (it moves
            // only when another allocator took the memory after it).
            let Some(new_start) = self.reserve(start, new_size, layout.align()) else {
                return ptr::null_mut();
            };
            if new_start != start {
                // SAFETY: the new region lies past every byte handed out so far.
                unsafe { ptr::copy_nonoverlapping(ptr, new_start as *mut u8, layout.size()) };
            }
            self.next.set(new_start + new_size);
            return new_start as *mut u8;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees `layout` describes `ptr` and that
        // `new_size` is valid for its alignment.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size());
            }
            new
        }
    }
}
