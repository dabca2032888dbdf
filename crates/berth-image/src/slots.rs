//! [`Slots`]: a map of lazily filled values, each behind its own lock, so that concurrent
//! callers working on one key (an image, a source, a blob) do the work once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A map of lazily filled slots, each behind its own lock.
#[derive(Debug)]
pub(crate) struct Slots<V>(Mutex<HashMap<String, Arc<Mutex<Option<V>>>>>);

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots(Mutex::new(HashMap::new()))
    }
}

impl<V> Slots<V> {
    /// The slot for `key`, created empty on first use.
    pub(crate) fn slot(&self, key: String) -> Arc<Mutex<Option<V>>> {
        lock(&self.0).entry(key).or_default().clone()
    }

    /// The slot for `key` if there is one, without creating it.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Mutex<Option<V>>>> {
        lock(&self.0).get(key).cloned()
    }
}

/// Locks a mutex; a panic of another holder leaves nothing half done here (slots are
/// filled in one assignment), so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
