//! The fuzz targets, one per parser family of the issue on hostile input.

mod audio;
mod checkpoint;
mod ct2;
mod events;
mod model_cache;
mod multipart;
mod safetensors;
mod tenants;

use super::Target;

/// Every target, in the order `--target all` runs them.
pub const NAMES: [&str; 9] = ["events", "multipart", "audio", "ct2", "safetensors", "uri", "manifest", "tokens", "tenants"];

/// The target called `name` (`None` for an unknown name).
pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    Some(match name {
        "events" => Box::new(events::Events),
        "multipart" => Box::new(multipart::MultipartForm),
        "audio" => Box::new(audio::Audio),
        "ct2" => Box::<ct2::Ct2>::default(),
        "safetensors" => Box::<safetensors::Safetensors>::default(),
        "uri" => Box::new(model_cache::Uri),
        "manifest" => Box::new(model_cache::Manifest),
        "tokens" => Box::<tenants::Tokens>::default(),
        "tenants" => Box::new(tenants::TenantFile),
        _ => return None,
    })
}
