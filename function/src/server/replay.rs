//! The answers of recent events, by CloudEvents source and id (which together name one
//! event): a redelivery (Knative retries a batch whose later items failed, or a reply that
//! was lost) gets the answer again instead of a second computation. Stored objects need no
//! such memory, their transcript records are found in the store; audio carried inline in an
//! event has nowhere else to be remembered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers kept: a few hundred small JSON documents.
const CAPACITY: usize = 256;
/// Longer than Knative's retries last with their default backoff.
const KEPT_FOR: Duration = Duration::from_secs(900);

pub type EventKey = (String, String);

#[derive(Default)]
pub struct Replayed {
    recent: Mutex<VecDeque<(EventKey, Instant, serde_json::Value)>>,
}

impl Replayed {
    pub fn get(&self, key: &EventKey) -> Option<serde_json::Value> {
        let recent = self.recent.lock().expect("replayed answers");
        recent.iter().find(|(k, at, _)| k == key && at.elapsed() < KEPT_FOR).map(|(_, _, answer)| answer.clone())
    }

    pub fn put(&self, key: EventKey, answer: serde_json::Value) {
        let mut recent = self.recent.lock().expect("replayed answers");
        recent.retain(|(k, at, _)| *k != key && at.elapsed() < KEPT_FOR);
        if recent.len() == CAPACITY {
            recent.pop_front();
        }
        recent.push_back((key, Instant::now(), answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_answers_by_source_and_id() {
        let replayed = Replayed::default();
        let key = |i: usize| ("/src".to_string(), format!("id-{i}"));
        for i in 0..CAPACITY + 10 {
            replayed.put(key(i), serde_json::json!({ "n": i }));
        }
        assert_eq!(replayed.get(&key(CAPACITY + 9)).unwrap()["n"], CAPACITY + 9);
        assert!(replayed.get(&key(0)).is_none(), "the oldest are forgotten");
        assert!(replayed.get(&("/other".into(), "id-20".into())).is_none(), "the source is part of the key");
        replayed.put(key(20), serde_json::json!({ "n": "again" }));
        assert_eq!(replayed.get(&key(20)).unwrap()["n"], "again");
    }
}
