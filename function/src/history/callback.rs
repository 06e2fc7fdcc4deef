//! Callbacks of asynchronous jobs: a POST of the finished record to a `callback_url` on an
//! allow-listed host, signed with HMAC-SHA256, retried with doubling waits, every attempt
//! written into the record.
//!
//! Signature: `x-tingxie-signature: sha256=HEX(HMAC(secret, TIMESTAMP + "." + BODY))` with
//! `x-tingxie-timestamp: TIMESTAMP` (Unix seconds), so a receiver can refuse old replays.

use std::time::Duration;

use super::record::{unix_now, Attempt};
use super::Entry;
use crate::config::ServeConfig;
use crate::error::{quote, Error, Result};
use crate::hmac::sign;

pub struct Callbacks {
    client: reqwest::Client,
    hosts: Vec<String>,
    secret: Vec<u8>,
    attempts: u32,
    backoff: Duration,
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument { field: "callback_url", reason }
}

impl Callbacks {
    pub fn new(config: &ServeConfig) -> Callbacks {
        let client = reqwest::Client::builder()
            // A redirect could lead off the allow-list.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client without TLS settings builds");
        Callbacks {
            client,
            hosts: config.callback_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect(),
            secret: config.callback_secret.as_bytes().to_vec(),
            attempts: config.callback_attempts.max(1),
            backoff: config.callback_backoff(),
        }
    }

    /// A `callback_url` this service may call: http(s) to a host of TINGXIE_CALLBACK_HOSTS.
    pub fn check(&self, url: &str) -> Result<()> {
        if !self.enabled() {
            return Err(invalid("callbacks are not enabled (TINGXIE_CALLBACK_HOSTS and TINGXIE_CALLBACK_SECRET)".into()));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("{}: {e}", quote(url))))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(format!("{} must be an http or https URL without credentials", quote(url))));
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = format!("{host}:{}", parsed.port_or_known_default().unwrap_or(0));
        if !self.hosts.iter().any(|h| *h == host || *h == with_port) {
            return Err(invalid(format!("the host of {} is not in TINGXIE_CALLBACK_HOSTS", quote(url))));
        }
        Ok(())
    }

    /// True when callbacks may be asked for (hosts and a secret are configured).
    pub fn enabled(&self) -> bool {
        !self.hosts.is_empty() && !self.secret.is_empty()
    }

    /// Attempts at delivering one callback, in all (TINGXIE_CALLBACK_ATTEMPTS).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Delivers `body` to the record's callback URL, continuing after the attempts already
    /// recorded (a delivery taken over from a process that stopped); true once a 2xx answer
    /// came.
    pub async fn deliver(&self, entry: &Entry, url: &str, id: &str, body: &[u8]) -> bool {
        let made = entry.record().await.callback.map_or(0, |c| c.attempts.len() as u32);
        for attempt in made + 1..=self.attempts {
            // A delivery taken over makes its first attempt at once; later ones back off.
            if attempt > made + 1 {
                tokio::time::sleep(self.backoff.saturating_mul(1 << (attempt - 2).min(16))).await;
            }
            let timestamp = format!("{}", unix_now() as u64);
            let mut message = timestamp.clone().into_bytes();
            message.push(b'.');
            message.extend_from_slice(body);
            let sent = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("x-tingxie-signature", format!("sha256={}", sign(&self.secret, &message)))
                .header("x-tingxie-timestamp", &timestamp)
                .header("x-tingxie-transcription-id", id)
                .header("x-tingxie-attempt", attempt.to_string())
                .body(body.to_vec())
                .send()
                .await;
            let (status, error) = match &sent {
                Ok(response) => (Some(response.status().as_u16()), None),
                Err(e) => (None, Some(crate::error::bounded(&e.to_string(), 200))),
            };
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            let at = unix_now();
            let recorded = entry
                .update(|record| {
                    if let Some(callback) = record.callback.as_mut() {
                        if !callback.attempts.iter().any(|a| a.at == at) {
                            callback.attempts.push(Attempt { at, status, error: error.clone() });
                        }
                        callback.delivered = delivered;
                    }
                })
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, id, "could not record a callback attempt");
            }
            tracing::info!(id, attempt, status, error, delivered, "callback attempt");
            if delivered {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_listed_hosts_are_called() {
        let mut config = <crate::config::ServeConfig as clap::FromArgMatches>::from_arg_matches(
            &<crate::config::ServeConfig as clap::Args>::augment_args(clap::Command::new("t")).get_matches_from(["t"]),
        )
        .unwrap();
        config.callback_hosts = vec!["hooks.example.com".into(), "127.0.0.1:9000".into()];
        config.callback_secret = "s".into();
        let callbacks = Callbacks::new(&config);
        assert!(callbacks.check("https://hooks.example.com/x").is_ok());
        assert!(callbacks.check("http://127.0.0.1:9000/cb").is_ok());
        for refused in
            ["http://127.0.0.1:9001/cb", "http://evil.example/", "ftp://hooks.example.com/", "http://u:p@hooks.example.com/", "nonsense"]
        {
            assert!(matches!(callbacks.check(refused), Err(Error::InvalidArgument { field: "callback_url", .. })), "{refused}");
        }
        config.callback_secret.clear();
        assert!(Callbacks::new(&config).check("https://hooks.example.com/x").is_err(), "no secret, no callbacks");
    }
}
