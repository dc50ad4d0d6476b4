//! Start the real `strata serve` binary on a free port over a temporary data
//! directory, and talk to it with psql or tokio-postgres. Included by the
//! `tests/pgwire_*.rs` suites with `#[path = "clients/harness.rs"] mod harness;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `strata serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Everything the server printed on stdout.
    pub stdout: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// The Flight SQL port from the startup banner (`flight sql listening on
    /// 127.0.0.1:PORT`), waiting up to 30 s for it.
    pub fn flight_port(&self) -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.stdout.lock().unwrap().clone();
            for l in &lines {
                if let Some(rest) = l.split("flight sql listening on ").nth(1) {
                    let rest = rest.trim();
                    assert!(rest.starts_with("127.0.0.1:"), "{rest}");
                    return rest.rsplit(':').next().unwrap().parse().unwrap();
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no `flight sql listening on` line in the banner: {lines:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A server over a fresh temporary data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_with(&["--data-dir", dir.to_str().unwrap()], &[]);
        s.dir = dir;
        s._tmp = Some(tmp);
        s
    }

    /// A server over `dir` (shared with other servers).
    pub fn start_in(dir: &Path) -> Server {
        let mut s = Server::start_with(&["--data-dir", dir.to_str().unwrap()], &[]);
        s.dir = dir.to_path_buf();
        s
    }

    /// `strata serve --pg-port 0 ARGS`, with extra environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("serve");
        if !args.contains(&"--pg-port") && !env.iter().any(|(k, _)| *k == "STRATA_PG_PORT") {
            cmd.args(["--pg-port", "0"]);
        }
        cmd.args(args);
        for k in [
            "STRATA_DATA_DIR",
            "STRATA_STORE_URL",
            "STRATA_TEST_CLOCK",
            "STRATA_FLUSH_ROWS",
            "STRATA_PG_PORT",
            "STRATA_LISTEN",
            "STRATA_CONFIG",
            "STRATA_CATCH_UP_MS",
            "STRATA_MEMORY_LIMIT",
            "STRATA_SPILL_DIR",
            "STRATA_CACHE_DIR",
            "STRATA_CACHE_SIZE",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start strata serve");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let port = line.split("postgres listening on ").nth(1).map(|rest| {
                        rest.trim()
                            .rsplit(':')
                            .next()
                            .unwrap()
                            .parse::<u16>()
                            .expect("port in banner")
                    });
                    lines.lock().unwrap().push(line);
                    if let (false, Some(port)) = (sent, port) {
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "strata serve printed no `postgres listening on` line; stdout: {:?}",
                    lines.lock().unwrap()
                );
            }
        };
        Server {
            child,
            port,
            dir: PathBuf::new(),
            stdout: lines,
            _tmp: None,
        }
    }

    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=strata dbname=strata connect_timeout=10",
            self.port
        )
    }

    /// Run psql with one `-c` per statement; unaligned, tuples only.
    pub fn psql(&self, commands: &[&str]) -> Output {
        let mut cmd = Command::new("psql");
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "strata",
            "-d",
            "strata",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
        for c in commands {
            cmd.args(["-c", c]);
        }
        cmd.output().expect("run psql")
    }

    /// psql that must succeed; its stdout.
    pub fn psql_ok(&self, commands: &[&str]) -> String {
        let o = self.psql(commands);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            o.status.success(),
            "psql {commands:?} failed ({}):\nstdout: {out}\nstderr: {err}",
            o.status
        );
        out
    }

    /// Connect with tokio-postgres; the connection task runs in the background.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_string(), tokio_postgres::NoTls)
                .await
                .expect("connect with tokio-postgres");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Send SIGTERM and wait for the process to exit (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql as `user` with `password` (SCRAM), one `-c` per command; unaligned,
/// tuples only, stopping at the first error. The server's port only.
pub fn psql_as(port: u16, user: &str, password: &str, commands: &[&str]) -> Output {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "strata",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGPASSWORD", password)
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .env("PGPASSFILE", "/nonexistent");
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.output().expect("run psql")
}

/// The stdout of a psql run that must succeed.
pub fn psql_ok_output(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "psql failed:\nstdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The stderr of a psql run that must fail.
pub fn psql_refused(o: Output) -> String {
    assert!(
        !o.status.success(),
        "psql should have failed, printed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}
