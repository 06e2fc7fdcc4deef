//! A panic hook that records instead of printing: the runner decides what a panic means (a
//! failure when it escapes the code under test; "contained" when that code caught it itself,
//! as the audio decoder does around symphonia).

use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());

/// Records every panic; with `echo`, also prints it as Rust normally does (for `--replay`).
pub fn install_recorder(echo: bool) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = format!("{message} at {at}");
        COUNT.fetch_add(1, Relaxed);
        if echo {
            default(info);
        }
    }));
}

/// Panics so far (caught or not).
pub fn count() -> u64 {
    COUNT.load(Relaxed)
}

/// The message and location of the last panic.
pub fn last() -> String {
    LAST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
