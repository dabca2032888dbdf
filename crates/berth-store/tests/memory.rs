//! The contract suite against the embedded in-memory store.

mod contract;

use berth_store::{MemoryStore, Store, StoreConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One in-memory store per prefix, so two "clients" of a prefix share its data.
async fn connect(config: StoreConfig) -> Arc<dyn Store> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .expect("poisoned");
    let prefix = config.prefix.clone();
    stores
        .entry(prefix)
        .or_insert_with(|| Arc::new(MemoryStore::new(config)))
        .clone()
}

contract_tests!(connect);
