//! Processes the load test starts itself: the service (`tingxie serve`), the faster-whisper
//! peer and an S3-protocol test server; readiness polling, metrics and memory sampling.

use crate::prom;
use anyhow::{bail, Context, Result};
use reqwest::Url;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub base: Url,
    pub exec_at: Instant,
    pub log: PathBuf,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    /// stdout and stderr go here.
    pub log: PathBuf,
}

impl SpawnSpec {
    pub fn spawn(&self) -> Result<Spawned> {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::File::create(&self.log)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("PORT", self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let exec_at = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", self.program.display()))?;
        let pid = child.id().context("child pid")?;
        Ok(Spawned {
            child,
            pid,
            base: Url::parse(&format!("http://127.0.0.1:{}/", self.port))?,
            exec_at,
            log: self.log.clone(),
            name: self.name.clone(),
        })
    }
}

/// What readiness polling saw, in seconds from exec.
#[derive(Debug, Clone, Copy)]
pub struct ReadyTimes {
    pub listening_s: Option<f64>,
    pub ready_s: f64,
}

impl Spawned {
    /// Polls `/health/liveness` and `/health/readiness` every `every` until ready; fails if the
    /// process exits or `timeout` passes.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, timeout: Duration, every: Duration) -> Result<ReadyTimes> {
        let live = self.base.join("health/liveness")?;
        let ready = self.base.join("health/readiness")?;
        let mut listening_s = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status} before it was ready; log:\n{}", self.name, self.log_tail(40));
            }
            if self.exec_at.elapsed() > timeout {
                bail!("{} not ready after {:?}; log:\n{}", self.name, timeout, self.log_tail(40));
            }
            if listening_s.is_none() {
                if let Ok(r) = http.get(live.clone()).timeout(Duration::from_secs(2)).send().await {
                    if r.status().is_success() {
                        listening_s = Some(self.exec_at.elapsed().as_secs_f64());
                    }
                }
            }
            if listening_s.is_some() {
                if let Ok(r) = http.get(ready.clone()).timeout(Duration::from_secs(2)).send().await {
                    if r.status().is_success() {
                        return Ok(ReadyTimes { listening_s, ready_s: self.exec_at.elapsed().as_secs_f64() });
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Resident and peak resident memory of a process from `/proc/PID/status`, in bytes.
pub fn proc_rss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Fetches and parses `/metrics`.
pub async fn scrape(http: &reqwest::Client, base: &Url) -> Result<Vec<prom::Sample>> {
    let r = http.get(base.join("metrics")?).timeout(Duration::from_secs(5)).send().await?;
    if !r.status().is_success() {
        bail!("GET /metrics: HTTP {}", r.status());
    }
    Ok(prom::parse(&r.text().await?))
}

/// An S3-protocol server (moto) on a free loopback port, for the events scenario and for
/// model pulls from `s3://` in the scale-from-zero mode.
pub async fn start_moto(program: &Path, log: &Path, http: &reqwest::Client) -> Result<Spawned> {
    let port = free_port()?;
    let spec = SpawnSpec {
        name: "moto_server".into(),
        program: program.to_path_buf(),
        args: vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()],
        env: vec![],
        port,
        log: log.to_path_buf(),
    };
    let mut s = spec.spawn()?;
    let start = Instant::now();
    loop {
        if let Some(status) = s.child.try_wait()? {
            bail!("moto_server exited with {status}; log:\n{}", s.log_tail(20));
        }
        if http.get(s.base.clone()).send().await.is_ok() {
            return Ok(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("moto_server did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The standard variables that point `object_store` (in the service) at a local S3 server.
pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    let mut env = vec![("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()), ("AWS_ALLOW_HTTP".to_string(), "true".to_string())];
    for (k, default) in [("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_REGION", "us-east-1")] {
        env.push((k.to_string(), std::env::var(k).unwrap_or_else(|_| default.to_string())));
    }
    env
}
