//! A counting allocator: the heap each input takes at its peak (all threads), held against the
//! target's limit. Going past the limit is reported after the input like any failure. Past
//! twice the limit an allocation is refused (Rust then aborts, unless the caller handles it):
//! the input is written to the crash folder first, as a huge request would otherwise take the
//! machine's memory or kill the process before the runner could say which input did it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};

pub struct Counting;

static REFUSED: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Past this many live bytes an allocation is refused (and the process aborts).
static HARD_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The input being run and the file to write it to (a NUL-terminated path), for a refusal.
static INPUT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static DUMP_PATH: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grow = new_size.saturating_sub(layout.size());
        if grow > 0 && !reserve(grow) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            LIVE.fetch_sub(grow, Relaxed);
        } else if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        p
    }
}

/// Counts `size` more live bytes, or refuses them past the hard limit.
fn reserve(size: usize) -> bool {
    let live = LIVE.fetch_add(size, Relaxed).saturating_add(size);
    if live > HARD_LIMIT.load(Relaxed) {
        LIVE.fetch_sub(size, Relaxed);
        REFUSED.fetch_max(size, Relaxed);
        dump_input(size);
        return false;
    }
    PEAK.fetch_max(live, Relaxed);
    true
}

/// Writes the current input where the runner said, with no allocation (we are inside one).
fn dump_input(size: usize) {
    let input = INPUT.load(Relaxed);
    let path = DUMP_PATH.load(Relaxed);
    say(b"tingxie-fuzz: refused an allocation of ");
    say_number(size);
    say(b" bytes past the hard memory limit; input saved to ");
    if input.is_null() || path.is_null() {
        say(b"(none: not inside an input)\n");
        return;
    }
    unsafe {
        let len = libc::strlen(path.cast());
        say(std::slice::from_raw_parts(path, len));
        say(b"\n");
        let fd = libc::open(path.cast(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644 as libc::c_uint);
        if fd >= 0 {
            libc::write(fd, input.cast(), INPUT_LEN.load(Relaxed));
            libc::close(fd);
        }
    }
}

fn say(msg: &[u8]) {
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

fn say_number(mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    say(&digits[at..]);
}

/// Starts measuring one input: `encoded` is what gets saved if the input is refused memory.
/// The pointer stays valid until [`end_input`], which the runner calls before dropping it.
pub fn begin_input(encoded: &[u8], limit: usize) -> usize {
    INPUT_LEN.store(encoded.len(), Relaxed);
    INPUT.store(encoded.as_ptr().cast_mut(), Relaxed);
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    REFUSED.store(0, Relaxed);
    HARD_LIMIT.store(live.saturating_add(limit.saturating_mul(2)), Relaxed);
    live
}

/// What one input took: the most heap it held above `base` at any moment, and the largest
/// allocation refused to it (0 when none was).
pub fn end_input(base: usize) -> (usize, usize) {
    HARD_LIMIT.store(usize::MAX, Relaxed);
    INPUT.store(std::ptr::null_mut(), Relaxed);
    (PEAK.load(Relaxed).saturating_sub(base), REFUSED.load(Relaxed))
}

/// Where [`dump_input`] writes: leaked once per target (a handful of paths per run).
pub fn set_dump_path(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the crash path");
    DUMP_PATH.store(c.into_raw().cast(), Relaxed);
}
