//! Points where a long transcription lets more urgent work go first. The engine installs a hook
//! on its thread around a lower-class job; the decoding loops call [`point`] before each window
//! is encoded and before each decoding step, and the hook may run other jobs to the end before
//! it returns. The model is only read while it computes, so a job nested this way shares it
//! safely; the hook is taken out while it runs, so nested jobs are never preempted themselves.

use std::cell::RefCell;
use std::rc::Rc;

pub type Hook = Rc<dyn Fn()>;

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Lets the installed hook run, if there is one.
pub fn point() {
    let hook = HOOK.with(|slot| slot.borrow_mut().take());
    if let Some(hook) = hook {
        hook();
        HOOK.with(|slot| *slot.borrow_mut() = Some(hook));
    }
}

/// Puts the previous hook back, also when the work panics.
struct Restore(Option<Hook>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        HOOK.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// Runs `work` with `hook` called at every [`point`] in it.
pub fn with_hook<R>(hook: Hook, work: impl FnOnce() -> R) -> R {
    let _restore = Restore(HOOK.with(|slot| slot.replace(Some(hook))));
    work()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_hook_runs_at_points_inside_its_work_and_never_inside_itself() {
        let calls = Rc::new(Cell::new(0));
        let seen = calls.clone();
        let hook: Hook = Rc::new(move || {
            seen.set(seen.get() + 1);
            point(); // a nested job's own points reach no hook
        });
        with_hook(hook, || {
            point();
            point();
        });
        assert_eq!(calls.get(), 2);
        point();
        assert_eq!(calls.get(), 2, "outside its work the hook is gone");
        let panicked = std::panic::catch_unwind(|| with_hook(Rc::new(|| {}), || panic!("work failed")));
        assert!(panicked.is_err());
        HOOK.with(|slot| assert!(slot.borrow().is_none(), "a panic leaves no hook behind"));
    }
}
