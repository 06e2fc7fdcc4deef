//! Who a request is for, and what it may take. A tenant comes from an API key
//! (`Authorization: Bearer KEY`, looked up by its SHA-256 in `TINGXIE_TENANTS`, a
//! Secret-mounted file), from a header a mesh sets after authenticating
//! (`TINGXIE_TENANT_HEADER`), or for events from their `tenant` attribute or their bucket.
//! Without a tenants file and a header the service is open: every request is `default`.
//!
//! The file, one tenant per line (`#` starts a comment; `*` sets the class, limits and data of
//! tenants named by a header or an event but not listed, and of anonymous events):
//!
//! ```text
//! # name     class     keys, limits and data
//! radiology  priority  key=sha256:9f86d081... queued=2 rpm=120 bucket=radiology-uploads output=s3://reports/radiology/
//! research   batch     key=sha256:60303ae2... queued=3 source=s3://shared/research/
//! *          standard  rpm=30
//! ```
//!
//! On a closed service a tenant reads only sources under its `source=` prefixes or in its
//! `bucket=` buckets (and under `TINGXIE_ALLOWED_SOURCES`), and a request's own `output` only
//! under its `output=` prefixes (and `TINGXIE_ALLOWED_OUTPUTS`): its line says what it may
//! name, nothing else. An open service has no tenants to keep apart: the global lists rule.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::{bounded, quote, Error, Result};
use crate::objects::AllowList;

/// The window of `rpm=` limits.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Usage entries of tenants not listed kept before idle ones are swept.
const USAGE_SLACK: usize = 64;

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

/// What a tenant's data is: where it may read and where its requests may write.
#[derive(Debug, Clone, Default)]
struct Scope {
    buckets: Vec<String>,
    sources: AllowList,
    outputs: AllowList,
}

#[derive(Debug, Clone)]
struct Listed {
    tenant: Tenant,
    scope: Scope,
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
    /// Class, limits and data of tenants not listed (the `*` line).
    unlisted: Tenant,
    unlisted_scope: Scope,
    header: Option<String>,
    usage: Arc<Mutex<HashMap<Arc<str>, Usage>>>,
}

fn invalid(line: usize, reason: String) -> Error {
    Error::Model(format!("TINGXIE_TENANTS line {line}: {reason}"))
}

/// A `source=` or `output=` value: a URI prefix, or `*` for whatever the global list admits.
fn parse_prefix(line: usize, field: &str, value: &str) -> Result<String> {
    let ok = value == "*" || value.split_once("://").is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty());
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(line, format!("{field}={} is not a URI prefix (s3://bucket/folder/) or *", quote(value))))
    }
}

/// Whether `uri` is under a prefix of `list`, with `*` standing for anything.
fn under(list: &AllowList, uri: &str) -> bool {
    list.admits(uri).is_some()
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_hash(line: usize, text: &str) -> Result<[u8; 32]> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| invalid(line, format!("key {} is not sha256:HEX", quote(text))))?;
    let mut hash = [0u8; 32];
    // ASCII first: the digits are sliced two bytes at a time.
    if hex.len() != 64 || !hex.is_ascii() {
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
        let mut tenants = Tenants {
            listed: HashMap::new(),
            by_key: HashMap::new(),
            unlisted: Tenant::open(),
            unlisted_scope: Scope::default(),
            header,
            usage: Default::default(),
        };
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            let Some(name) = words.next() else { continue };
            let class: Class = words.next().ok_or_else(|| invalid(number, format!("`{name}` has no class")))?.parse()?;
            let mut tenant = Tenant { name: name.into(), class, limits: Limits::default(), listed: name != "*" };
            let (mut buckets, mut sources, mut outputs, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for word in words {
                let (field, value) = word.split_once('=').ok_or_else(|| invalid(number, format!("{} is not FIELD=VALUE", quote(word))))?;
                let count =
                    || value.parse::<usize>().map_err(|_| invalid(number, format!("{field}={} is not a whole number", quote(value))));
                match field {
                    "key" => keys.push(parse_hash(number, value)?),
                    "queued" => tenant.limits.queued = Some(count()?.max(1)),
                    "rpm" => tenant.limits.per_minute = Some(count()?.max(1)),
                    "bucket" if !value.is_empty() => buckets.push(value.to_string()),
                    "source" => sources.push(parse_prefix(number, field, value)?),
                    "output" => outputs.push(parse_prefix(number, field, value)?),
                    _ => return Err(invalid(number, format!("unknown field {} (key, queued, rpm, bucket, source, output)", quote(field)))),
                }
            }
            let scope = Scope { buckets, sources: AllowList::new(&sources), outputs: AllowList::new(&outputs) };
            if name == "*" {
                tenant.name = DEFAULT_TENANT.into();
                tenants.unlisted = tenant;
                tenants.unlisted_scope = scope;
                continue;
            }
            check_name(name).map_err(|e| invalid(number, e.to_string()))?;
            for key in keys {
                if tenants.by_key.insert(key, tenant.name.clone()).is_some() {
                    return Err(invalid(number, "a key is listed twice".into()));
                }
            }
            if tenants.listed.insert(tenant.name.clone(), Listed { tenant, scope }).is_some() {
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
    ///
    /// Beside the header, a bearer value that is a JWT is the mesh's (it made the header from
    /// it); any other must be a valid key of the same tenant, or the request is refused.
    pub fn identify(&self, authorization: Option<&str>, trusted: Option<&str>) -> Result<Tenant> {
        if let Some(name) = trusted.filter(|_| self.header.is_some()) {
            let tenant = self.named(name.trim()).map_err(|e| Error::Unauthorized(format!("the tenant header: {e}")))?;
            let key = authorization.and_then(bearer).filter(|k| !self.by_key.is_empty() && !crate::oidc::looks_like_jwt(k));
            return match key.map(|k| self.by_key.get(&sha256(k))) {
                Some(None) => Err(Error::Unauthorized("the API key beside the tenant header is not valid".into())),
                Some(Some(named)) if *named != tenant.name => {
                    Err(Error::Unauthorized("the API key and the tenant header name different tenants".into()))
                }
                _ => Ok(tenant),
            };
        }
        if !self.closed() {
            return Ok(self.anonymous());
        }
        let Some(value) = authorization else {
            return Err(Error::Unauthorized("no API key: send `Authorization: Bearer KEY`".into()));
        };
        let key = bearer(value).ok_or_else(|| Error::Unauthorized("the Authorization header is not `Bearer KEY`".into()))?;
        match self.by_key.get(&sha256(key)) {
            Some(name) => self.named(name),
            None => Err(Error::Unauthorized("the API key is not valid".into())),
        }
    }

    /// True when `key` (a bearer credential) is one of the configured keys.
    pub fn is_key(&self, key: &str) -> bool {
        self.by_key.contains_key(&sha256(key))
    }

    /// The name of the header a mesh sets, if one is trusted.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The tenant of an event: its `tenant` attribute, else the tenant its bucket is mapped
    /// to, else the tenant its delivery was made for. Only a verified platform sender
    /// (`may_name_any`) may name a tenant the file does not list: an anonymous one could
    /// otherwise make up names without end.
    pub fn for_event(&self, attribute: Option<&str>, bucket: Option<&str>, delivery: &Tenant, may_name_any: bool) -> Result<Tenant> {
        if let Some(name) = attribute.map(str::trim) {
            if !may_name_any && !self.listed.contains_key(name) {
                return Err(Error::InvalidArgument {
                    field: "tenant",
                    reason: format!(
                        "{} is not listed in TINGXIE_TENANTS; only a sender verified as the platform (TINGXIE_OIDC_ISSUER) may name other tenants",
                        quote(name)
                    ),
                });
            }
            return self.named(name);
        }
        if let Some(bucket) = bucket {
            if let Some(listed) = self.listed.values().find(|l| l.scope.buckets.iter().any(|b| b == bucket)) {
                return Ok(listed.tenant.clone());
            }
        }
        Ok(delivery.clone())
    }

    /// The tenant of what nobody authenticated (events from the platform, an open service).
    pub fn anonymous(&self) -> Tenant {
        Tenant { name: DEFAULT_TENANT.into(), ..self.unlisted.clone() }
    }

    fn scope(&self, tenant: &Tenant) -> &Scope {
        self.listed.get(&tenant.name).map_or(&self.unlisted_scope, |l| &l.scope)
    }

    /// Whether `tenant` may read the object `uri` in `bucket` (403 naming the tenant if not).
    /// The global allow-list is checked besides, by the object layer.
    pub fn may_read(&self, tenant: &Tenant, uri: &str, bucket: &str) -> Result<()> {
        let scope = self.scope(tenant);
        if !self.closed() || under(&scope.sources, uri) || (!bucket.is_empty() && scope.buckets.iter().any(|b| b == bucket)) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "tenant `{}` may not read {}: it is not under the tenant's source= or bucket= in TINGXIE_TENANTS",
            tenant.name,
            quote(&bounded(uri, 256))
        )))
    }

    /// Whether a request of `tenant` may name `output` as where its transcripts go.
    pub fn may_write(&self, tenant: &Tenant, output: &str) -> Result<()> {
        let prefix = format!("{}/", output.trim_end_matches('/'));
        if !self.closed() || under(&self.scope(tenant).outputs, &prefix) {
            return Ok(());
        }
        Err(Error::OutputForbidden(format!(
            "tenant `{}` may not write to {}: it is not under the tenant's output= in TINGXIE_TENANTS",
            tenant.name,
            quote(&bounded(output, 256))
        )))
    }

    /// Counts a request against its tenant's limits: 429 (TenantLimit) naming the limit when
    /// it is over one. The hold gives its queue place back when dropped.
    pub fn admit(&self, tenant: &Tenant) -> Result<TenantHold> {
        let now = Instant::now();
        let mut usage = self.usage.lock().expect("tenant usage");
        // Entries of tenants that hold nothing and asked nothing within the rate window go,
        // so that names seen once do not stay for the life of the process.
        if usage.len() > self.listed.len() + USAGE_SLACK {
            usage.retain(|_, u| u.held > 0 || u.admitted.back().is_some_and(|t| now.duration_since(*t) < RATE_WINDOW));
        }
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
            while entry.admitted.front().is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW) {
                entry.admitted.pop_front();
            }
            if entry.admitted.len() >= max {
                let oldest = *entry.admitted.front().expect("at the limit, so not empty");
                let wait = RATE_WINDOW.saturating_sub(now.duration_since(oldest));
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
        let mut usage = self.usage.lock().expect("tenant usage");
        if let Some(entry) = usage.get_mut(&self.name) {
            entry.held = entry.held.saturating_sub(1);
            if entry.held == 0 && entry.admitted.is_empty() {
                usage.remove(&self.name);
            }
        }
    }
}

/// The `Authorization` value's bearer credential.
pub fn bearer(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim).filter(|k| !k.is_empty())
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
        assert_eq!(&*tenants.for_event(Some("research"), Some("rad-uploads"), &delivery, false).unwrap().name, "research");
        assert_eq!(&*tenants.for_event(None, Some("rad-uploads"), &delivery, false).unwrap().name, "radiology");
        assert_eq!(tenants.for_event(None, Some("other"), &delivery, false).unwrap(), delivery);
        // Made-up names only from a verified platform sender.
        assert!(matches!(tenants.for_event(Some("made-up"), None, &delivery, false), Err(Error::InvalidArgument { field: "tenant", .. })));
        assert_eq!(&*tenants.for_event(Some("made-up"), None, &delivery, true).unwrap().name, "made-up");
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
            // Found by fuzzing: 64 bytes, not 64 digits (a multi-byte character) once panicked.
            ("a batch key=sha256:\u{e9}f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0", "64 hex digits"),
            ("a batch queued=x", "whole number"),
            ("a batch colour=red", "unknown field"),
            ("a batch source=bucket-only", "URI prefix"),
            ("a batch output=/tmp/x", "URI prefix"),
            ("a batch\na standard", "twice"),
            ("a/b batch", "tenant"),
        ] {
            let message = Tenants::parse(text, None).err().unwrap_or_else(|| panic!("{text} parsed")).to_string();
            assert!(message.contains(needle), "{text}: {message}");
        }
    }

    const SCOPED: &str = "\
radiology priority key=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 bucket=rad-uploads output=s3://reports/rad
research batch key=sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 source=s3://shared/research/ source=file:///data/research
*        standard source=s3://public/
";

    #[test]
    fn a_closed_service_confines_each_tenant_to_its_line() {
        let tenants = Tenants::parse(SCOPED, None).unwrap();
        let (radiology, research) = (tenants.named("radiology").unwrap(), tenants.named("research").unwrap());
        assert!(tenants.may_read(&radiology, "s3://rad-uploads/a.wav", "rad-uploads").is_ok());
        assert!(tenants.may_read(&radiology, "gs://rad-uploads/a.wav", "rad-uploads").is_ok());
        assert!(
            matches!(tenants.may_read(&radiology, "s3://shared/research/a.wav", "shared"), Err(Error::Forbidden(m)) if m.contains("radiology"))
        );
        assert!(tenants.may_read(&research, "s3://shared/research/x/a.wav", "shared").is_ok());
        assert!(tenants.may_read(&research, "file:///data/research/a.wav", "").is_ok());
        assert!(tenants.may_read(&research, "s3://shared/researchers/a.wav", "shared").is_err(), "whole segments");
        assert!(tenants.may_read(&research, "s3://rad-uploads/a.wav", "rad-uploads").is_err());
        // Tenants not listed, and anonymous events, have the `*` line's.
        for other in [tenants.named("someone").unwrap(), tenants.anonymous()] {
            assert!(tenants.may_read(&other, "s3://public/a.wav", "public").is_ok());
            assert!(tenants.may_read(&other, "s3://rad-uploads/a.wav", "rad-uploads").is_err());
        }
        assert!(tenants.may_write(&radiology, "s3://reports/rad/2026").is_ok());
        assert!(tenants.may_write(&radiology, "s3://reports/rad").is_ok());
        assert!(matches!(tenants.may_write(&radiology, "s3://reports/radio"), Err(Error::OutputForbidden(_))));
        assert!(matches!(tenants.may_write(&research, "s3://reports/rad/x"), Err(Error::OutputForbidden(_))));
        // An open service keeps no tenants apart.
        let open = Tenants::parse("research batch source=s3://shared/research/", None).unwrap();
        assert!(open.may_read(&open.named("research").unwrap(), "s3://rad-uploads/a.wav", "rad-uploads").is_ok());
        assert!(open.may_write(&open.anonymous(), "s3://anywhere/").is_ok());
    }

    #[test]
    fn a_key_beside_the_trusted_header_must_be_valid_and_the_same_tenant() {
        let meshed = Tenants::parse(FILE, Some("x-tingxie-tenant".into())).unwrap();
        assert_eq!(&*meshed.identify(Some("Bearer test"), Some("radiology")).unwrap().name, "radiology");
        assert!(matches!(meshed.identify(Some("Bearer wrong"), Some("radiology")), Err(Error::Unauthorized(m)) if m.contains("not valid")));
        assert!(matches!(meshed.identify(Some("Bearer test2"), Some("radiology")), Err(Error::Unauthorized(m)) if m.contains("different")));
        // The mesh's own JWT, from which it made the header, is not a key.
        assert!(meshed.identify(Some("Bearer eyJh.eyJi.c2ln"), Some("radiology")).is_ok());
        // Without keys, a header-only service ignores what Authorization holds.
        let header_only = Tenants::parse("", Some("x-tingxie-tenant".into())).unwrap();
        assert!(header_only.identify(Some("Bearer anything"), Some("clinic")).is_ok());
    }

    #[test]
    fn usage_of_tenants_seen_once_is_freed() {
        let tenants = Tenants::parse("* standard", Some("x-tingxie-tenant".into())).unwrap();
        for i in 0..1000 {
            drop(tenants.admit(&tenants.named(&format!("t{i}")).unwrap()).unwrap());
        }
        assert!(tenants.usage.lock().unwrap().is_empty(), "no limit, nothing held: nothing kept");
        let limited = Tenants::parse("* standard rpm=1000", Some("x-tingxie-tenant".into())).unwrap();
        let held = limited.admit(&limited.named("holder").unwrap()).unwrap();
        for i in 0..1000 {
            drop(limited.admit(&limited.named(&format!("t{i}")).unwrap()).unwrap());
        }
        // Within the rate window the entries are needed for the limit; past it they are swept.
        assert_eq!(limited.usage.lock().unwrap().len(), 1001);
        let now = Instant::now();
        for entry in limited.usage.lock().unwrap().values_mut() {
            entry.admitted.iter_mut().for_each(|t| *t = now - RATE_WINDOW);
        }
        drop(limited.admit(&limited.named("last").unwrap()).unwrap());
        let usage = limited.usage.lock().unwrap();
        assert!(usage.contains_key("holder") && usage.len() <= 2, "{}", usage.len());
        drop(usage);
        drop(held);
    }
}
