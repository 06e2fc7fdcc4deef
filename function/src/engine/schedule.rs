//! Which waiting job the engine computes next, and which may go ahead of a running one.

use std::cell::{RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::Job;
use crate::tenants::Class;

/// The jobs sent to the engine and not yet taken, on the engine thread.
pub(super) struct Waiting {
    jobs: RefCell<VecDeque<Job>>,
    channel: mpsc::Receiver<Job>,
    /// A waiting job climbs one class per this much waiting.
    aging: Duration,
}

impl Waiting {
    pub(super) fn new(channel: mpsc::Receiver<Job>, aging: Duration) -> Rc<Waiting> {
        Rc::new(Waiting { jobs: RefCell::new(VecDeque::new()), channel, aging })
    }

    /// The waiting jobs, those sent since the last look included.
    fn pull(&self) -> RefMut<'_, VecDeque<Job>> {
        let mut jobs = self.jobs.borrow_mut();
        jobs.extend(self.channel.try_iter());
        jobs
    }

    /// The job to compute next: the highest class, a job climbing one class for every `aging`
    /// it has waited (so batch work is never starved), the earliest among equals; waits for
    /// one when none is waiting. None once every sender is gone.
    pub(super) fn next(&self) -> Option<Job> {
        let taken = {
            let mut jobs = self.pull();
            best(&jobs, self.aging, |_| true).and_then(|index| jobs.remove(index))
        };
        taken.or_else(|| self.channel.recv().ok())
    }

    /// The models that waiting jobs need (never unloaded to make room).
    pub(super) fn models(&self) -> Vec<Arc<str>> {
        self.pull().iter().map(|job| job.model.clone()).collect()
    }

    /// The best waiting job of a class above `class` on `model`: it may run inside a job of
    /// `class` on that model, between two of its steps.
    pub(super) fn urgent(&self, class: Class, model: &str) -> Option<Job> {
        let mut jobs = self.pull();
        best(&jobs, self.aging, |job| job.class > class && &*job.model == model).and_then(|index| jobs.remove(index))
    }
}

fn best(jobs: &VecDeque<Job>, aging: Duration, eligible: impl Fn(&Job) -> bool) -> Option<usize> {
    let now = Instant::now();
    let aging = aging.as_secs_f64().max(1e-3);
    let standing = |job: &Job| job.class.rank() + now.duration_since(job.enqueued).as_secs_f64() / aging;
    let mut best: Option<(usize, f64)> = None;
    for (index, job) in jobs.iter().enumerate().filter(|(_, job)| eligible(job)) {
        let score = standing(job);
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::DecodeOptions;

    fn job(model: &str, class: Class, waited: Duration) -> Job {
        Job {
            model: model.into(),
            class,
            samples: Vec::new(),
            options: DecodeOptions::default(),
            enqueued: Instant::now() - waited,
            reply: tokio::sync::oneshot::channel().0,
            wanted: None,
        }
    }

    fn waiting(jobs: Vec<Job>) -> Rc<Waiting> {
        let (sender, channel) = mpsc::channel();
        for job in jobs {
            sender.send(job).unwrap();
        }
        Waiting::new(channel, Duration::from_secs(1))
    }

    #[test]
    fn higher_classes_go_first_and_waiting_lifts_a_job() {
        let queue = waiting(vec![
            job("tiny", Class::Batch, Duration::from_millis(200)),
            job("tiny", Class::Standard, Duration::ZERO),
            job("tiny", Class::Priority, Duration::ZERO),
            job("tiny", Class::Batch, Duration::from_millis(2500)),
        ]);
        let order: Vec<(Class, u128)> = std::iter::from_fn(|| (!queue.models().is_empty()).then(|| queue.next()).flatten())
            .map(|j| (j.class, j.enqueued.elapsed().as_millis() / 100))
            .collect();
        // 2.5 s of waiting (aging 1 s) lift a batch job above a fresh priority one (0 + 2.5 > 2).
        assert_eq!(order, [(Class::Batch, 25), (Class::Priority, 0), (Class::Standard, 0), (Class::Batch, 2)]);
    }

    #[test]
    fn only_a_higher_class_on_the_same_model_goes_ahead_of_a_running_job() {
        let queue = waiting(vec![
            job("tiny", Class::Batch, Duration::from_secs(5)),
            job("base", Class::Priority, Duration::ZERO),
            job("tiny", Class::Standard, Duration::ZERO),
            job("tiny", Class::Priority, Duration::ZERO),
        ]);
        let first = queue.urgent(Class::Batch, "tiny").unwrap();
        assert_eq!((&*first.model, first.class), ("tiny", Class::Priority));
        assert_eq!(queue.urgent(Class::Batch, "tiny").unwrap().class, Class::Standard);
        assert!(queue.urgent(Class::Batch, "tiny").is_none(), "a batch job, however old, does not preempt batch work");
        assert!(queue.urgent(Class::Priority, "base").is_none(), "nothing goes ahead of priority work");
        assert_eq!(queue.models().len(), 2);
    }
}
