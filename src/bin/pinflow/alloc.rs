//! The counting allocator behind `bench`'s allocations per record.

use std::sync::atomic::Ordering;

/// Counts heap allocations (and reallocations), so `bench` can report allocations per record:
/// the hot path should allocate per batch, not per record. One relaxed atomic add each.
struct CountingAlloc;

pub static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts an allocation unless it is the in-process simulator's: the figure is pinflow's own.
fn count_allocation() {
    if !pinflow::sim::in_simulator_thread() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the counter has no effect on memory (the thread-local flag it reads is const-initialized and
// never allocates).
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        std::alloc::System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        std::alloc::System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        count_allocation();
        std::alloc::System.realloc(ptr, layout, size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;
