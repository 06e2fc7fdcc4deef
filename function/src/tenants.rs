//! Who a request is for, and what it may take. A tenant comes from an API key
//! (`Authorization: Bearer KEY`, looked up by its SHA-256 in `TINGXIE_TENANTS`, a
//! Secret-mounted file), from a header a mesh sets after authenticating
//! (`TINGXIE_TENANT_HEADER`), or for events from their `tenant` attribute or their bucket.
//! Without a tenants file and a header the service is open: every request is `default`.
//!
//! The file, one tenant per line (`#` starts a comment; `*` sets the class and limits of
//! tenants named by a header or an event but not listed):
//!
//! ```text
//! # name     class     keys and limits
//! radiology  priority  key=sha256:9f86d081... queued=2 rpm=120 bucket=radiology-uploads
//! research   batch     key=sha256:60303ae2... queued=3
//! *          standard  rpm=30
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::{quote, Error, Result};

/// The tenant of requests when the service is open.
pub const DEFAULT_TENANT: &str = "default";

/// Service classes, highest first: the engine computes a higher class's waiting work first,
/// and a job climbs one class for every `TINGXIE_PRIORITY_AGING_SECONDS` it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Batch,
    Standard,
    Priority,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Priority, Class::Standard, Class::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Priority => "priority",
            Class::Standard => "standard",
            Class::Batch => "batch",
        }
    }

    pub fn rank(self) -> f64 {
        self as u8 as f64
    }
}

impl std::str::FromStr for Class {
    type Err = Error;
    fn from_str(text: &str) -> Result<Class> {
        Class::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| Error::Model(format!("TINGXIE_TENANTS: class {} is not priority, standard or batch", quote(text))))
    }
}

/// Per-tenant limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Queue places (waiting, uploading or computing) the tenant may hold at once.
    pub queued: Option<usize>,
    /// Requests admitted per minute (a sliding window).
    pub per_minute: Option<usize>,
}

/// The tenant of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: Arc<str>,
    pub class: Class,
    pub limits: Limits,
    /// Named in TINGXIE_TENANTS (a bounded set, fit for metric labels).
    pub listed: bool,
}

impl Tenant {
    pub fn open() -> Tenant {
        Tenant { name: DEFAULT_TENANT.into(), class: Class::Standard, limits: Limits::default(), listed: false }
    }

    /// The tenant's metric label: its name when listed (or `default`), else `unlisted`, so that
    /// names a header brings cannot grow the label set without bound.
    pub fn metric_label(&self) -> &str {
        if self.listed || &*self.name == DEFAULT_TENANT {
            &self.name
        } else {
            "unlisted"
        }
    }
}

/// Tenant names go into object paths and metric labels: short, plain.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!("tenant {} must be 1-64 letters, digits, `-`, `_` or `.`", quote(name))))
    }
}

#[derive(Debug, Clone)]
struct Listed {
    tenant: Tenant,
    buckets: Vec<String>,
}

/// What each tenant holds and has asked for lately.
#[derive(Default)]
struct Usage {
    held: usize,
    admitted: VecDeque<Instant>,
}

pub struct Tenants {
    listed: HashMap<Arc<str>, Listed>,
    by_key: HashMap<[u8; 32], Arc<str>>,
    /// Class and limits of tenants not listed.
    unlisted: Tenant,
    header: Option<String>,
    usage: Arc<Mutex<HashMap<Arc<str>, Usage>>>,
}

fn invalid(line: usize, reason: String) -> Error {
    Error::Model(format!("TINGXIE_TENANTS line {line}: {reason}"))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_hash(line: usize, text: &str) -> Result<[u8; 32]> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| invalid(line, format!("key {} is not sha256:HEX", quote(text))))?;
    let mut hash = [0u8; 32];
    if hex.len() != 64 {
        return Err(invalid(line, "a key's SHA-256 has 64 hex digits".into()));
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid(line, format!("{} is not hex", quote(hex))))?;
    }
    Ok(hash)
}

impl Tenants {
    /// Every request is `default`: no keys, no header.
    pub fn open() -> Tenants {
        Tenants::parse("", None).expect("an empty file is valid")
    }

    /// `TINGXIE_TENANTS` (a file path; empty for none) and `TINGXIE_TENANT_HEADER`.
    pub fn from_config(file: &str, header: &str) -> Result<Tenants> {
        let text = match file.trim() {
            "" => String::new(),
            path => std::fs::read_to_string(path).map_err(|e| Error::Model(format!("TINGXIE_TENANTS {path}: {e}")))?,
        };
        Tenants::parse(&text, Some(header.trim()).filter(|h| !h.is_empty()).map(str::to_ascii_lowercase))
    }

    pub fn parse(text: &str, header: Option<String>) -> Result<Tenants> {
        let mut tenants =
            Tenants { listed: HashMap::new(), by_key: HashMap::new(), unlisted: Tenant::open(), header, usage: Default::default() };
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            let Some(name) = words.next() else { continue };
            let class: Class = words.next().ok_or_else(|| invalid(number, format!("`{name}` has no class")))?.parse()?;
            let mut tenant = Tenant { name: name.into(), class, limits: Limits::default(), listed: name != "*" };
            let mut buckets = Vec::new();
            let mut keys = Vec::new();
            for word in words {
                let (field, value) = word.split_once('=').ok_or_else(|| invalid(number, format!("{} is not FIELD=VALUE", quote(word))))?;
                let count =
                    || value.parse::<usize>().map_err(|_| invalid(number, format!("{field}={} is not a whole number", quote(value))));
                match field {
                    "key" => keys.push(parse_hash(number, value)?),
                    "queued" => tenant.limits.queued = Some(count()?.max(1)),
                    "rpm" => tenant.limits.per_minute = Some(count()?.max(1)),
                    "bucket" => buckets.push(value.to_string()),
                    _ => return Err(invalid(number, format!("unknown field {} (key, queued, rpm, bucket)", quote(field)))),
                }
            }
            if name == "*" {
                tenant.name = DEFAULT_TENANT.into();
                tenants.unlisted = tenant;
                continue;
            }
            check_name(name).map_err(|e| invalid(number, e.to_string()))?;
            for key in keys {
                if tenants.by_key.insert(key, tenant.name.clone()).is_some() {
                    return Err(invalid(number, "a key is listed twice".into()));
                }
            }
            if tenants.listed.insert(tenant.name.clone(), Listed { tenant, buckets }).is_some() {
                return Err(invalid(number, format!("`{name}` is listed twice")));
            }
        }
        Ok(tenants)
    }

    /// True when requests must name their tenant (keys or a trusted header are configured).
    pub fn closed(&self) -> bool {
        !self.by_key.is_empty() || self.header.is_some()
    }

    /// True when a tenant of the priority class exists, so places are worth holding for it.
    pub fn has_priority(&self) -> bool {
        self.unlisted.class == Class::Priority || self.listed.values().any(|l| l.tenant.class == Class::Priority)
    }

    /// `name` with its class and limits (an unlisted name gets the `*` line's).
    pub fn named(&self, name: &str) -> Result<Tenant> {
        check_name(name)?;
        Ok(match self.listed.get(name) {
            Some(listed) => listed.tenant.clone(),
            None => Tenant { name: name.into(), ..self.unlisted.clone() },
        })
    }

    /// The tenant of an HTTP request: the trusted header when one is configured and present
    /// (the mesh authenticated the caller), else the API key of `Authorization: Bearer KEY`.
    /// 401 (Unauthorized) for a wrong key, or for none when the service is closed; an open
    /// service ignores keys (OpenAI clients always send one).
    pub fn identify(&self, authorization: Option<&str>, trusted: Option<&str>) -> Result<Tenant> {
        if let Some(name) = trusted.filter(|_| self.header.is_some()) {
            return self.named(name.trim()).map_err(|e| Error::Unauthorized(format!("the tenant header: {e}")));
        }
        if !self.closed() {
            return Ok(self.anonymous());
        }
        let Some(value) = authorization else {
            return Err(Error::Unauthorized("no API key: send `Authorization: Bearer KEY`".into()));
        };
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::Unauthorized("the Authorization header is not `Bearer KEY`".into()))?;
        match self.by_key.get(&sha256(key)) {
            Some(name) => self.named(name),
            None => Err(Error::Unauthorized("the API key is not valid".into())),
        }
    }

    /// The name of the header a mesh sets, if one is trusted.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The tenant of an event: its `tenant` attribute, else the tenant its bucket is mapped
    /// to, else the tenant its delivery was made for.
    pub fn for_event(&self, attribute: Option<&str>, bucket: Option<&str>, delivery: &Tenant) -> Result<Tenant> {
        if let Some(name) = attribute {
            return self.named(name.trim());
        }
        if let Some(bucket) = bucket {
            if let Some(listed) = self.listed.values().find(|l| l.buckets.iter().any(|b| b == bucket)) {
                return Ok(listed.tenant.clone());
            }
        }
        Ok(delivery.clone())
    }

    /// The tenant of what nobody authenticated (events from the platform, an open service).
    pub fn anonymous(&self) -> Tenant {
        Tenant { name: DEFAULT_TENANT.into(), ..self.unlisted.clone() }
    }

    /// Counts a request against its tenant's limits: 429 (TenantLimit) naming the limit when
    /// it is over one. The hold gives its queue place back when dropped.
    pub fn admit(&self, tenant: &Tenant) -> Result<TenantHold> {
        let now = Instant::now();
        let mut usage = self.usage.lock().expect("tenant usage");
        let entry = usage.entry(tenant.name.clone()).or_default();
        if let Some(max) = tenant.limits.queued {
            if entry.held >= max {
                return Err(Error::TenantLimit {
                    message: format!("tenant `{}` holds {max} queue places, its limit (queued={max})", tenant.name),
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        if let Some(max) = tenant.limits.per_minute {
            while entry.admitted.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                entry.admitted.pop_front();
            }
            if entry.admitted.len() >= max {
                let oldest = *entry.admitted.front().expect("at the limit, so not empty");
                let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
                return Err(Error::TenantLimit {
                    message: format!("tenant `{}` made {max} requests in the last minute, its limit (rpm={max})", tenant.name),
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            entry.admitted.push_back(now);
        }
        entry.held += 1;
        Ok(TenantHold { name: tenant.name.clone(), usage: self.usage.clone() })
    }
}

/// A queue place counted against a tenant; freed on drop.
pub struct TenantHold {
    name: Arc<str>,
    usage: Arc<Mutex<HashMap<Arc<str>, Usage>>>,
}

impl Drop for TenantHold {
    fn drop(&mut self) {
        if let Some(entry) = self.usage.lock().expect("tenant usage").get_mut(&self.name) {
            entry.held = entry.held.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# name class ...
radiology priority key=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 queued=1 bucket=rad-uploads
research batch key=sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 rpm=2
*        standard rpm=5
";

    #[test]
    fn keys_name_tenants_and_wrong_or_missing_keys_are_refused() {
        let tenants = Tenants::parse(FILE, None).unwrap();
        // sha256("test") and sha256("test2").
        let radiology = tenants.identify(Some("Bearer test"), None).unwrap();
        assert_eq!((&*radiology.name, radiology.class), ("radiology", Class::Priority));
        assert_eq!(tenants.identify(Some("Bearer test2"), None).unwrap().class, Class::Batch);
        assert!(matches!(tenants.identify(Some("Bearer nope"), None), Err(Error::Unauthorized(_))));
        assert!(matches!(tenants.identify(Some("Basic dGVzdA=="), None), Err(Error::Unauthorized(_))));
        assert!(matches!(tenants.identify(None, Some("radiology")), Err(Error::Unauthorized(_))), "no header is trusted");
        assert!(matches!(tenants.identify(None, None), Err(Error::Unauthorized(_))));
        assert!(tenants.has_priority());
    }

    #[test]
    fn an_open_service_is_default_and_a_trusted_header_names_the_tenant() {
        let open = Tenants::open();
        assert_eq!(open.identify(None, None).unwrap(), Tenant::open());
        assert_eq!(open.identify(Some("Bearer anything"), None).unwrap(), Tenant::open());
        assert!(!open.closed() && !open.has_priority());
        let meshed = Tenants::parse(FILE, Some("x-tingxie-tenant".into())).unwrap();
        assert_eq!(meshed.identify(None, Some("radiology")).unwrap().class, Class::Priority);
        let other = meshed.identify(None, Some("cardiology")).unwrap();
        assert_eq!((&*other.name, other.class, other.limits.per_minute), ("cardiology", Class::Standard, Some(5)));
        assert!(matches!(meshed.identify(None, Some("../etc")), Err(Error::Unauthorized(_))));
    }

    #[test]
    fn events_take_their_attribute_then_their_bucket() {
        let tenants = Tenants::parse(FILE, None).unwrap();
        let delivery = Tenant::open();
        assert_eq!(&*tenants.for_event(Some("research"), Some("rad-uploads"), &delivery).unwrap().name, "research");
        assert_eq!(&*tenants.for_event(None, Some("rad-uploads"), &delivery).unwrap().name, "radiology");
        assert_eq!(tenants.for_event(None, Some("other"), &delivery).unwrap(), delivery);
    }

    #[test]
    fn limits_refuse_with_a_message_naming_them_and_holds_give_places_back() {
        let tenants = Tenants::parse(FILE, None).unwrap();
        let radiology = tenants.named("radiology").unwrap();
        let held = tenants.admit(&radiology).unwrap();
        match tenants.admit(&radiology) {
            Err(Error::TenantLimit { message, .. }) => assert!(message.contains("queued=1"), "{message}"),
            other => panic!("expected the queued limit, got {:?}", other.map(|_| ())),
        }
        drop(held);
        assert!(tenants.admit(&radiology).is_ok());
        let research = tenants.named("research").unwrap();
        drop(tenants.admit(&research).unwrap());
        drop(tenants.admit(&research).unwrap());
        match tenants.admit(&research) {
            Err(Error::TenantLimit { message, retry_after }) => {
                assert!(message.contains("rpm=2"), "{message}");
                assert!(retry_after > Duration::from_secs(50), "{retry_after:?}");
            }
            other => panic!("expected the rate limit, got {:?}", other.map(|_| ())),
        }
        // Another tenant is not affected.
        assert!(tenants.admit(&radiology).is_ok());
    }

    #[test]
    fn malformed_files_name_the_line() {
        for (text, needle) in [
            ("a gold", "class"),
            ("a batch key=abc", "sha256"),
            ("a batch queued=x", "whole number"),
            ("a batch colour=red", "unknown field"),
            ("a batch\na standard", "twice"),
            ("a/b batch", "tenant"),
        ] {
            let message = Tenants::parse(text, None).err().unwrap_or_else(|| panic!("{text} parsed")).to_string();
            assert!(message.contains(needle), "{text}: {message}");
        }
    }
}
