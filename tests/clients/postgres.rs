//! A throwaway PostgreSQL cluster for differential tests: found on PATH or in
//! Debian's /usr/lib/postgresql/<version>/bin, initialized in a temporary
//! directory, started on a free 127.0.0.1 port and stopped when dropped.
//! Included with `#[path = "clients/postgres.rs"] mod postgres;`.
//!
//! As root, PostgreSQL runs as the `postgres` (or `nobody`) user, as the
//! benchmark harness does (benches/harness/common.py).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

fn pg_bin_dir() -> Option<PathBuf> {
    let on_path = |x: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(x))
                .find(|f| f.is_file())
        })
    };
    if let (Some(i), Some(_), Some(_)) = (on_path("initdb"), on_path("pg_ctl"), on_path("postgres"))
    {
        let real = std::fs::canonicalize(&i).unwrap_or(i);
        return real.parent().map(Path::to_path_buf);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|x| d.join(x).exists())
        })
        .collect();
    // Highest version first (numerically: 15 before 9).
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

pub struct Postgres {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    user: Option<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in \
                 /usr/lib/postgresql/*/bin: this differential test needs a real PostgreSQL. \
                 Install it with `apt-get install postgresql` (.ci/install.d/50-bench.sh does)."
            )
        });
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pg");
        std::fs::create_dir(&dir).unwrap();
        let mut user = None;
        if is_root() {
            // PostgreSQL refuses to run as root.
            for u in ["postgres", "nobody"] {
                let out = Command::new("id").args(["-u", u]).output().unwrap();
                let g = Command::new("id").args(["-g", u]).output().unwrap();
                if out.status.success() && g.status.success() {
                    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                    let gid: u32 = String::from_utf8_lossy(&g.stdout).trim().parse().unwrap();
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
                    user = Some(u.to_string());
                    break;
                }
            }
            assert!(
                user.is_some(),
                "running as root and there is no `postgres` or `nobody` user to run PostgreSQL as"
            );
        }
        let mut pg = Postgres {
            bin,
            data: dir.join("data"),
            port: free_port(),
            user,
            _tmp: tmp,
        };
        let data = pg.data.to_str().unwrap().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "fidelity",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 20\nTimeZone = 'UTC'\n",
            pg.port,
            dir.display()
        );
        let path = pg.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        let log = dir.join("log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        pg
    }

    fn run(&mut self, prog: &str, args: &[&str]) {
        let exe = self.bin.join(prog);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed:\n{}{}",
            exe.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn client(&self) -> Client {
        let cs = format!(
            "host=127.0.0.1 port={} user=fidelity dbname=postgres connect_timeout=10",
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&cs, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
