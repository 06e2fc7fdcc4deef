//! A thread that ends the run when one input is stuck (an endless loop never returns to the
//! runner's own timing): it saves the input and exits with status 3.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Watched {
    started: Option<Instant>,
    input: Vec<u8>,
    path: PathBuf,
}

#[derive(Clone)]
pub struct Watchdog(Arc<Mutex<Watched>>);

impl Watchdog {
    pub fn start(limit: Duration) -> Watchdog {
        let dog = Watchdog(Arc::default());
        let state = dog.0.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let watched = state.lock().unwrap_or_else(|e| e.into_inner());
            if watched.started.is_some_and(|t| t.elapsed() > limit) {
                let saved = std::fs::write(&watched.path, &watched.input);
                eprintln!("tingxie-fuzz: HANG: one input ran past {limit:?}; saved to {} ({saved:?})", watched.path.display());
                std::process::exit(3);
            }
        });
        dog
    }

    /// An input starts; `path` is where it goes if it never ends.
    pub fn enter(&self, encoded: &[u8], path: PathBuf) {
        let mut watched = self.0.lock().unwrap_or_else(|e| e.into_inner());
        watched.input.clear();
        watched.input.extend_from_slice(encoded);
        watched.path = path;
        watched.started = Some(Instant::now());
    }

    pub fn leave(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).started = None;
    }
}
