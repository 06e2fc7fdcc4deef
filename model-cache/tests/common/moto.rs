//! A real S3-protocol server for the tests: moto, started by the tests themselves.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStoreExt, PutPayload};

/// A moto server process, killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Child,
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TINGXIE_MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TINGXIE_MOTO_SERVER={} does not exist", p.display());
        return p;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for candidate in [".venv/bin/moto_server", "target/moto-venv/bin/moto_server"] {
        let p = root.join(candidate);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "moto_server not found: these tests need a real S3-protocol server. Run \
         `export TINGXIE_MOTO_SERVER=\"$(.ci/s3-server.sh install)\"` from the repository root \
         (or put moto in .venv)."
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto { port, child };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if crate::common::http::raw_request(self.port, "GET", "/", &[], b"").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto did not answer on port {} within 60 s", self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crashed server.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = crate::common::http::raw_request(self.port, "PUT", &format!("/{bucket}"), &[], b"").expect("create bucket");
        assert!(status.starts_with("HTTP/1.1 200"), "create bucket {bucket}: {status}");
    }

    /// An object_store client talking to moto directly (uploads are not counted).
    pub fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    }

    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        self.client(bucket)
            .put(&object_store::path::Path::from(key), PutPayload::from(data.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("upload {key}: {e}"));
    }
}

impl Moto {
    /// Uploads with a public-read ACL, for anonymous (plain HTTP) readers.
    pub fn put_public(&self, bucket: &str, key: &str, data: &[u8]) {
        self.put_raw(bucket, key, data, &[("x-amz-acl", "public-read")]);
    }

    /// Uploads `key` exactly as given (as the AWS CLI would), where object_store's `Path`
    /// would escape non-ASCII and reserved characters.
    pub fn put_raw(&self, bucket: &str, key: &str, data: &[u8], headers: &[(&str, &str)]) {
        let encoded: String = key
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let target = format!("/{bucket}/{encoded}");
        let status = crate::common::http::raw_request(self.port, "PUT", &target, headers, data).expect("upload");
        assert!(status.starts_with("HTTP/1.1 200"), "upload {key}: {status}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

static SHARED: OnceLock<Moto> = OnceLock::new();
static SHARED_PID: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" {
    fn atexit(cb: extern "C" fn()) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
}

extern "C" fn kill_shared() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: SIGKILL to the moto process this test binary started, then reap it.
        unsafe {
            kill(pid as i32, 9);
            waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// One moto for the whole test binary (a statics is never dropped: it is killed at exit).
pub fn shared() -> &'static Moto {
    SHARED.get_or_init(|| {
        let moto = Moto::start();
        SHARED_PID.store(moto.pid(), Ordering::SeqCst);
        // SAFETY: registers a plain function with no captured state.
        unsafe { atexit(kill_shared) };
        moto
    })
}
