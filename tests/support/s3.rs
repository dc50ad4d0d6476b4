//! A real S3-compatible server for tests: moto's S3 in server mode
//! (`tests/support/s3_server.py`, installed by `.ci/install.d/60-s3.sh`),
//! started on a free loopback port and killed when the [`S3Server`] is
//! dropped. It serves one request at a time, which makes `If-None-Match: *`
//! creates atomic (see the script's doc and `tests/s3.rs`).
//!
//! Included by tests with `#[path = "support/s3.rs"] mod s3;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

pub const BUCKET: &str = "strata-test";

/// A running moto S3 server with one bucket, [`BUCKET`].
pub struct S3Server {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
}

static PREFIXES: AtomicU64 = AtomicU64::new(0);

impl S3Server {
    /// Start the server; panics with what to install if moto is missing.
    pub fn start() -> S3Server {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s3_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(BUCKET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed to run the S3 server (moto)");
        let stdin = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("listening on 127.0.0.1:") {
                    let _ = tx.send(p.trim().parse::<u16>().unwrap());
                }
            }
        });
        // moto logs every request on stderr: keep the last lines for a failure message.
        let tail = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut t = tail.lock().unwrap();
                    t.push(line);
                    if t.len() > 40 {
                        t.remove(0);
                    }
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(p) => p,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let t = tail.lock().unwrap().join("\n");
                panic!(
                    "the S3 test server (moto) did not start. Install it with \
                     `python3 -m pip install 'moto[server]>=5.1,<6'` (or run .ci/run). Its output:\n{t}"
                );
            }
        };
        S3Server {
            child,
            _stdin: stdin,
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A prefix no other test in this process uses.
    pub fn fresh_prefix(&self, name: &str) -> String {
        format!("{name}-{}", PREFIXES.fetch_add(1, Ordering::Relaxed))
    }

    /// The `s3://` URL of `prefix` in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The environment a `strata` process needs to reach the server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// An `object_store` client for `prefix` in the bucket, as `strata`
    /// builds one from an `s3://` URL and the `AWS_*` variables.
    pub fn store(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .expect("S3 client");
        if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        }
    }

    /// A store location for an in-process `strata::Db` / engine: `prefix`
    /// in the bucket, read through the disk cache like any remote store.
    pub fn location(&self, prefix: &str) -> strata::StoreLocation {
        strata::StoreLocation::Custom {
            store: self.store(prefix),
            name: self.url(prefix),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store location [`S3Server::location`] gives, for a server known only
/// by its endpoint (`http://127.0.0.1:PORT`): for a child process the test
/// starts, which gets the endpoint and prefix through its environment.
pub fn location_for(endpoint: &str, prefix: &str) -> strata::StoreLocation {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .expect("S3 client");
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    };
    strata::StoreLocation::Custom {
        store,
        name: format!("s3://{BUCKET}/{prefix}"),
    }
}
