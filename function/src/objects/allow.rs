//! `TINGXIE_ALLOWED_SOURCES`: the only places an event or request may make tingxie read.
//! Without it, anyone who can send an event could make the service fetch any object it has
//! credentials for.

/// URI prefixes a source must start with, whole path segments only: `s3://b/in/` admits
/// `s3://b/in/x.wav`, and `s3://b` admits `s3://b/x.wav` but never `s3://bb/x.wav`.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    prefixes: Vec<String>,
    any: bool,
}

impl AllowList {
    pub fn new(entries: &[String]) -> AllowList {
        let mut list = AllowList::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
            } else {
                let with_slash = if entry.ends_with('/') { entry.to_string() } else { format!("{entry}/") };
                list.prefixes.push(with_slash);
            }
        }
        list
    }

    /// The prefix that admits `uri` (`""` when everything is allowed), or None.
    pub fn admits<'a>(&'a self, uri: &str) -> Option<&'a str> {
        if let Some(prefix) = self.prefixes.iter().find(|p| uri.starts_with(p.as_str())) {
            return Some(prefix);
        }
        self.any.then_some("")
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && !self.any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn whole_segments_only() {
        let l = list(&["s3://b", "gs://g/in/", " "]);
        assert_eq!(l.admits("s3://b/x.wav"), Some("s3://b/"));
        assert_eq!(l.admits("s3://bb/x.wav"), None);
        assert_eq!(l.admits("gs://g/in/a/b.wav"), Some("gs://g/in/"));
        assert_eq!(l.admits("gs://g/inbox/b.wav"), None);
        assert_eq!(l.admits("az://g/in/b.wav"), None);
    }

    #[test]
    fn empty_refuses_and_star_admits() {
        assert!(list(&[]).is_empty());
        assert_eq!(list(&[""]).admits("s3://b/x"), None);
        assert_eq!(list(&["*"]).admits("file:///etc/passwd"), Some(""));
    }
}
