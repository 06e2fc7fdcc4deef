//! The engine thread's models: loaded on first use, the least recently used idle one unloaded
//! when the next would not fit in `TINGXIE_MODEL_MEMORY`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tingxie_model_cache::LocalModel;

use super::Engine;
use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::device::AnyTranscriber;
use crate::error::{Error, Result};
use crate::startup::Phases;

/// A model on the device.
pub(super) struct Loaded {
    /// Shared with a job computing on it, which an unload must not cut short.
    pub(super) model: Rc<AnyTranscriber>,
    pub(super) bytes: u64,
    pub(super) last_used: Instant,
    /// Keeps the node cache from evicting the model's files while it is loaded.
    pub(super) _in_use: Option<LocalModel>,
}

/// The engine thread's models: loaded on first use, the least recently used idle one unloaded
/// when the next would not fit in `TINGXIE_MODEL_MEMORY`.
pub(super) struct Models {
    config: ServeConfig,
    catalog: Arc<Catalog>,
    loaded: Vec<(Arc<str>, Loaded)>,
    /// Each model's weight bytes once it has been loaded: what making room for it must free.
    sizes: std::collections::HashMap<Arc<str>, u64>,
}

impl Models {
    pub(super) fn new(config: &ServeConfig, catalog: Arc<Catalog>) -> Models {
        Models { config: config.clone(), catalog, loaded: Vec::new(), sizes: Default::default() }
    }

    /// `name`, loaded if it is not; models named in `waiting` (queued work) stay loaded.
    pub(super) fn get(&mut self, engine: &Engine, name: &Arc<str>, waiting: &[Arc<str>]) -> Result<Rc<AnyTranscriber>> {
        if !self.loaded.iter().any(|(n, _)| n == name) {
            self.make_room(engine, name, waiting);
            self.load(engine, name, None)?;
            // A first load's size is known only now.
            self.make_room(engine, name, waiting);
        }
        let (_, loaded) = self.loaded.iter_mut().find(|(n, _)| n == name).expect("loaded above");
        loaded.last_used = Instant::now();
        Ok(loaded.model.clone())
    }

    pub(super) fn load(&mut self, engine: &Engine, name: &Arc<str>, phases: Option<&mut Phases>) -> Result<()> {
        let uri = self.catalog.uri(name).ok_or_else(|| Error::Model(format!("`{name}` is not in the catalog")))?.to_string();
        let started = Instant::now();
        tracing::info!(model = %name, uri = %uri, "loading a model");
        engine.loading.send_replace(Some(name.clone()));
        let loaded = engine.load_model(&self.config, &uri, phases);
        engine.loading.send_replace(None);
        let loaded = loaded?;
        let seconds = started.elapsed().as_secs_f64();
        let m = &engine.metrics;
        m.model_loads.with_label_values(&[&**name]).inc();
        m.model_load_seconds.with_label_values(&[&**name]).observe(seconds);
        m.model_resident_bytes.with_label_values(&[&**name]).set(loaded.bytes as i64);
        tracing::info!(model = %name, seconds, bytes = loaded.bytes, "model loaded");
        self.sizes.insert(name.clone(), loaded.bytes);
        self.loaded.push((name.clone(), loaded));
        Ok(())
    }

    /// Unloads least recently used idle models until `name` fits the budget beside the rest.
    fn make_room(&mut self, engine: &Engine, name: &Arc<str>, waiting: &[Arc<str>]) {
        let budget = self.config.model_memory;
        let Some(&needed) = self.sizes.get(name) else { return };
        loop {
            let incoming = if self.loaded.iter().any(|(n, _)| n == name) { 0 } else { needed };
            let total = self.loaded.iter().map(|(_, l)| l.bytes).sum::<u64>() + incoming;
            if budget == 0 || total <= budget {
                return;
            }
            let idle = self
                .loaded
                .iter()
                .enumerate()
                .filter(|(_, (n, _))| n != name && !waiting.contains(n))
                .min_by_key(|(_, (_, l))| l.last_used)
                .map(|(i, _)| i);
            let Some(index) = idle else {
                tracing::warn!(model = %name, budget, total, "TINGXIE_MODEL_MEMORY is exceeded: every other model has work queued");
                return;
            };
            let (gone, _) = self.loaded.remove(index);
            engine.metrics.model_unloads.with_label_values(&[&*gone]).inc();
            engine.metrics.model_resident_bytes.with_label_values(&[&*gone]).set(0);
            tracing::info!(model = %gone, to_load = %name, budget, "unloaded the least recently used idle model");
        }
    }
}
