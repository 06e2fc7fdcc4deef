//! Where the load goes. A load test pointed at the wrong address is a denial-of-service
//! attack, so only loopback targets are accepted unless `--allow-remote` is given.

use anyhow::{bail, Context, Result};
use reqwest::Url;
use std::net::{IpAddr, ToSocketAddrs};

/// Parses `url` and checks that it is loopback (or that remote targets are allowed).
pub fn check_target(url: &str, allow_remote: bool) -> Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("target {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("target {url:?}: only http and https are supported");
    }
    if allow_remote {
        return Ok(parsed);
    }
    let host = parsed.host_str().with_context(|| format!("target {url:?} has no host"))?;
    if is_loopback_host(host, parsed.port_or_known_default().unwrap_or(80))? {
        Ok(parsed)
    } else {
        bail!(
            "refusing to send load to {host}: it is not a loopback address. \
             Pass --allow-remote if you mean to load a remote service"
        )
    }
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and ::1; other names are resolved and
/// must resolve to loopback addresses only.
pub fn is_loopback_host(host: &str, port: u16) -> Result<bool> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(is_loopback_ip(ip));
    }
    let lower = bare.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Ok(true);
    }
    let addrs: Vec<_> = (bare, port).to_socket_addrs().with_context(|| format!("cannot resolve {bare}"))?.collect();
    Ok(!addrs.is_empty() && addrs.iter().all(|a| is_loopback_ip(a.ip())))
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_accepted() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1:1/",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://api.localhost:9000",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8080",
        ] {
            assert!(check_target(url, false).is_ok(), "{url}");
        }
    }

    #[test]
    fn other_targets_refused() {
        for url in [
            "http://10.0.0.7:8080",
            "http://192.168.1.20",
            "http://8.8.8.8:80",
            "http://0.0.0.0:8080",
            "http://[2001:db8::1]:8080",
            "http://[::]:8080",
        ] {
            let err = check_target(url, false).unwrap_err().to_string();
            assert!(err.contains("--allow-remote"), "{url}: {err}");
        }
        assert!(check_target("ftp://127.0.0.1/", false).is_err());
        assert!(check_target("not a url", false).is_err());
    }

    #[test]
    fn remote_allowed_when_told() {
        assert!(check_target("http://10.0.0.7:8080", true).is_ok());
        assert!(check_target("https://tingxie.example.com", true).is_ok());
    }
}
