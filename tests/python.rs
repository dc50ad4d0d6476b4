//! The embedded Python package (python/): maturin builds it in the dev
//! profile into this workspace's target directory (so it shares the
//! compiled dependencies with the test suite), pip installs the wheel into a
//! temporary directory, and pytest runs python/tests against it (and the
//! `strata` binary this test suite built, for the server it starts).
//! Install maturin and pytest with .ci/install.d/70-python.sh; pyarrow,
//! pandas and polars with .ci/install.d/40-flight.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/notebook.rs"]
mod notebook;

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    // …/target/debug/strata → …/target
    Path::new(env!("CARGO_BIN_EXE_strata"))
        .parent()
        .and_then(Path::parent)
        .expect("the strata binary lives in <target>/<profile>/")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot start it ({e}); install it with .ci/install.d/70-python.sh")
    });
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        o.status
    );
    stdout
}

#[test]
fn python_package_builds_and_its_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let wheels = work.path().join("wheels");
    let site = work.path().join("site");
    let mut maturin = Command::new("maturin");
    maturin
        .args([
            "build",
            "--profile",
            "dev",
            "--compression-method",
            "stored",
            "-o",
        ])
        .arg(&wheels)
        .arg("--manifest-path")
        .arg(root.join("python/Cargo.toml"));
    // The variables `cargo test` sets for this test (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, …) must not reach the inner cargo: build scripts
    // declare them with rerun-if-env-changed (ring does), so the inner build
    // would see them changed, rebuild ring and everything above it (all of
    // DataFusion), and leave the outer build to rebuild it all again.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO") && k != "CARGO_HOME") || k == "OUT_DIR" || k == "RUSTC_WRAPPER" {
            maturin.env_remove(k.as_ref());
        }
    }
    maturin.env("CARGO_TARGET_DIR", target_dir());
    run(&mut maturin, "maturin build");
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin wrote a wheel");
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&site)
            .arg(&wheel),
        "pip install of the wheel",
    );
    let out = run(
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
            .arg(root.join("python/tests"))
            .env("PYTHONPATH", &site)
            .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
            .env("MPLBACKEND", "Agg")
            .current_dir(work.path()),
        "pytest python/tests",
    );
    assert!(out.contains("passed"), "{out}");
    assert!(!out.contains("skipped"), "no test may be skipped:\n{out}");
    eprintln!("{out}");

    // docs/notebooks/time_travel.ipynb runs headless on the same package
    // (the kernel inherits PYTHONPATH) and draws its plot.
    let nb_out = work.path().join("notebook");
    std::fs::create_dir_all(&nb_out).unwrap();
    let out = run(
        Command::new("python3")
            .args(["-c", notebook::RUNNER])
            .arg(root.join("docs/notebooks/time_travel.ipynb"))
            .arg(&nb_out)
            .env("PYTHONPATH", &site)
            .env("STRATA_NOTEBOOK_OUT", &nb_out)
            .env("STRATA_NOTEBOOK_DB", work.path().join("notebook-db"))
            .env("MPLBACKEND", "Agg"),
        "the time-travel notebook",
    );
    assert!(out.contains("executed 8 code cells"), "{out}");
    let png = std::fs::read(nb_out.join("acme_across_valid_and_system_time.png"))
        .expect("the notebook saved its plot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real PNG"
    );
    let executed = std::fs::read_to_string(nb_out.join("executed.ipynb")).unwrap();
    assert!(
        executed.contains(
            "as of 2024-01-02 the price on 2024-02-20 was 100.0; now we know it was 103.0"
        ),
        "the notebook's answer"
    );
}
