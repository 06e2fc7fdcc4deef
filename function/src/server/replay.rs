//! The answers of recent events, by sender, CloudEvents source and id (which together name one
//! event of one sender): a redelivery (Knative retries a batch whose later items failed, or a
//! reply that was lost) gets the answer again instead of a second computation, and concurrent
//! deliveries of one event take turns, so it is computed once. Stored objects need no such
//! memory, their transcript records are found in the store; audio carried inline in an event
//! has nowhere else to be remembered.
//!
//! What is kept is bounded: ids and sources are capped before any work
//! (`events::check_event_id`), answers by count and by bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers kept: a few hundred JSON documents.
const CAPACITY: usize = 256;
/// Bytes of answers kept together; an answer larger than a quarter of it is not kept.
const MAX_BYTES: usize = 16 << 20;
/// Longer than Knative's retries last with their default backoff.
const KEPT_FOR: Duration = Duration::from_secs(900);

/// Whose event (the sender and the tenants it named), its source and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub sender: String,
    pub source: String,
    pub id: String,
}

struct Kept {
    key: EventKey,
    at: Instant,
    bytes: usize,
    answer: serde_json::Value,
}

#[derive(Default)]
struct Recent {
    kept: VecDeque<Kept>,
    bytes: usize,
}

#[derive(Default)]
pub struct Replayed {
    recent: Mutex<Recent>,
    /// One lock per event being handled now.
    running: Arc<Mutex<HashMap<EventKey, Arc<tokio::sync::Mutex<()>>>>>,
}

/// The right to handle one event; other deliveries of it wait until it is dropped.
pub struct Turn {
    key: EventKey,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    running: Arc<Mutex<HashMap<EventKey, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut running = self.running.lock().expect("running events");
        // The map's and this turn's: nobody else waits, the entry can go.
        if running.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) <= 2) {
            running.remove(&self.key);
        }
    }
}

impl Replayed {
    /// Waits until no other delivery of `key` is being handled here.
    pub async fn turn(&self, key: &EventKey) -> Turn {
        let lock = self.running.lock().expect("running events").entry(key.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        Turn { key: key.clone(), _guard: guard, running: self.running.clone() }
    }

    pub fn get(&self, key: &EventKey) -> Option<serde_json::Value> {
        let recent = self.recent.lock().expect("replayed answers");
        recent.kept.iter().find(|k| k.key == *key && k.at.elapsed() < KEPT_FOR).map(|k| k.answer.clone())
    }

    pub fn put(&self, key: EventKey, answer: serde_json::Value) {
        let bytes = answer.to_string().len() + key.sender.len() + key.source.len() + key.id.len();
        let mut recent = self.recent.lock().expect("replayed answers");
        let Recent { kept, bytes: total } = &mut *recent;
        kept.retain(|k| {
            let keep = k.key != key && k.at.elapsed() < KEPT_FOR;
            if !keep {
                *total -= k.bytes;
            }
            keep
        });
        if bytes > MAX_BYTES / 4 {
            return;
        }
        while kept.len() >= CAPACITY || *total + bytes > MAX_BYTES {
            let Some(oldest) = kept.pop_front() else { break };
            *total -= oldest.bytes;
        }
        *total += bytes;
        kept.push_back(Kept { key, at: Instant::now(), bytes, answer });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sender: &str, i: usize) -> EventKey {
        EventKey { sender: sender.into(), source: "/src".into(), id: format!("id-{i}") }
    }

    #[test]
    fn remembers_the_latest_answers_by_sender_source_and_id() {
        let replayed = Replayed::default();
        for i in 0..CAPACITY + 10 {
            replayed.put(key("a", i), serde_json::json!({ "n": i }));
        }
        assert_eq!(replayed.get(&key("a", CAPACITY + 9)).unwrap()["n"], CAPACITY + 9);
        assert!(replayed.get(&key("a", 0)).is_none(), "the oldest are forgotten");
        assert!(replayed.get(&EventKey { source: "/other".into(), ..key("a", 20) }).is_none(), "the source is part of the key");
        assert!(replayed.get(&key("b", 20)).is_none(), "so is the sender");
        replayed.put(key("a", 20), serde_json::json!({ "n": "again" }));
        assert_eq!(replayed.get(&key("a", 20)).unwrap()["n"], "again");
    }

    #[test]
    fn what_is_kept_is_bounded_in_bytes() {
        let replayed = Replayed::default();
        let big = "x".repeat(MAX_BYTES / 8);
        for i in 0..40 {
            replayed.put(key("a", i), serde_json::json!({ "text": big }));
        }
        let recent = replayed.recent.lock().unwrap();
        assert!(recent.bytes <= MAX_BYTES && recent.kept.len() < 10, "{} bytes in {}", recent.bytes, recent.kept.len());
        assert_eq!(recent.bytes, recent.kept.iter().map(|k| k.bytes).sum::<usize>());
        drop(recent);
        replayed.put(key("a", 99), serde_json::json!({ "text": "x".repeat(MAX_BYTES / 2) }));
        assert!(replayed.get(&key("a", 99)).is_none(), "too large to keep");
    }

    #[tokio::test]
    async fn deliveries_of_one_event_take_turns_and_leave_nothing_behind() {
        let replayed = Arc::new(Replayed::default());
        let first = replayed.turn(&key("a", 1)).await;
        let other = replayed.turn(&key("a", 2)).await;
        let waiting = tokio::spawn({
            let replayed = replayed.clone();
            async move {
                let _turn = replayed.turn(&key("a", 1)).await;
                replayed.get(&key("a", 1))
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second delivery waits for the first");
        replayed.put(key("a", 1), serde_json::json!({ "done": true }));
        drop(first);
        assert_eq!(waiting.await.unwrap().unwrap()["done"], true, "and then finds its answer");
        drop(other);
        assert!(replayed.running.lock().unwrap().is_empty());
    }
}
