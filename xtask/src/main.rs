//! Project chores: `cargo xtask ci | test | simd | stores | lint | deny | tidy | bench | dataset | demo`.

mod fetch;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root. Read at run time (`cargo run` sets the variable), not
/// baked in at compile time: a shared target directory may hold an xtask
/// binary built from another clone.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Architecture invariants, checked on the resolved dependency graph.
fn tidy() -> Result<()> {
    let checks: &[(&str, &[&str])] = &[
        // storage never links a cipher crate and never sees a key.
        (
            "vecseal-storage",
            &[
                "ring",
                "chacha20poly1305",
                "vecseal-envelope",
                "vecseal-keyring",
                "hmac",
                "hkdf",
            ],
        ),
        // kmeans knows nothing of crypto or storage.
        (
            "vecseal-kmeans",
            &[
                "ring",
                "chacha20poly1305",
                "vecseal-envelope",
                "vecseal-storage",
                "rocksdb",
            ],
        ),
        // envelope knows nothing of vectors or storage.
        (
            "vecseal-envelope",
            &["faer", "vecseal-kmeans", "vecseal-storage", "rocksdb"],
        ),
        // keyring builds only on envelope.
        ("vecseal-keyring", &["faer", "rocksdb", "vecseal-storage"]),
    ];
    for (krate, banned) in checks {
        let out = cargo()
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", krate])
            .current_dir(root())
            .output()
            .context("cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for dep in *banned {
            if tree
                .lines()
                .any(|l| l.split_whitespace().next() == Some(dep))
            {
                bail!("architecture invariant broken: {krate} depends on {dep}");
            }
        }
    }
    // Only the envelope creates nonces: no other crate names a nonce type.
    for entry in walk(&root().join("crates"))? {
        let rel = entry
            .strip_prefix(root())
            .unwrap_or(&entry)
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("crates/envelope") || entry.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&entry)?;
        for banned in ["Nonce::", "XNonce", "ring::aead", "chacha20poly1305::"] {
            if text.contains(banned) {
                bail!("architecture invariant broken: {rel} uses {banned}; only vecseal-envelope touches ciphers and nonces");
            }
        }
    }
    index_modules_are_layered(&root().join("crates/index/src"))?;
    eprintln!("xtask: tidy: architecture invariants hold");
    Ok(())
}

/// The longest a file of vecseal-index may be: one concern per file.
const MAX_MODULE_LINES: usize = 650;

/// The files of vecseal-index (but `lib.rs`, the root) import each other
/// without a circle, and none exceeds [`MAX_MODULE_LINES`] lines.
fn index_modules_are_layered(src: &Path) -> Result<()> {
    use std::collections::BTreeMap;
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            if path.extension().is_some_and(|e| e == "rs") && stem != "lib" {
                modules.push((stem.to_owned(), path));
            }
        }
    }
    for (name, path) in &modules {
        let text = std::fs::read_to_string(path)?;
        let lines = text.lines().count();
        if lines > MAX_MODULE_LINES {
            bail!(
                "architecture invariant broken: {} has {lines} lines; split it (at most {MAX_MODULE_LINES})",
                path.display()
            );
        }
        // Tests may reach anywhere; the module's own code may not loop.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = modules
            .iter()
            .map(|(m, _)| m)
            .filter(|m| *m != name)
            .filter(|m| code.contains(&format!("crate::{m}::")))
            .cloned()
            .collect();
        graph.insert(name.clone(), deps);
    }
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Result<()> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m);
            bail!(
                "architecture invariant broken: vecseal-index modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
        if !done.insert(m) {
            return Ok(());
        }
        path.push(m);
        for d in &graph[m] {
            visit(d, graph, path, done)?;
        }
        path.pop();
        Ok(())
    }
    let mut done = std::collections::BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// Installs `libclang-dev` (RocksDB's bindings need it) when a Debian machine
/// lacks it, so the README's demo command works on a fresh machine.
fn ensure_libclang() -> Result<()> {
    let has = |pkg: &str| {
        Command::new("dpkg")
            .args(["-s", pkg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has("libclang-dev") || Command::new("apt-get").arg("--version").output().is_err() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", "libclang-dev"]))
}

/// Builds every target of the workspace (the same feature set as `cargo xtask
/// ci`, so RocksDB is compiled once for both) and runs one of its binaries.
fn run_built(bin: &str, args: &[String]) -> Result<()> {
    run(built(bin)?.args(args))
}

/// Builds every target of the workspace (see [`run_built`]) and returns a
/// command for binary `bin`.
fn built(bin: &str) -> Result<Command> {
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || root().join("target"),
        |dir| std::env::current_dir().unwrap_or_default().join(dir),
    );
    Ok(Command::new(target.join("debug").join(bin)))
}

/// The packages whose tests run again at the scalar SIMD level.
const SIMD_SUITES: [&str; 2] = ["vecseal-kmeans", "vecseal-index"];

/// Runs the test binaries of the k-means and index crates again with
/// `VECSEAL_SIMD=scalar`: `cargo test --workspace` ran them at the machine's
/// best level, so a result that depends on the CPU cannot pass unnoticed.
fn simd_levels() -> Result<()> {
    rerun(&SIMD_SUITES, ("VECSEAL_SIMD", "scalar"))
}

/// Runs the index test binaries again on RocksDB (`VECSEAL_TEST_STORE=rocks`):
/// `cargo test --workspace` ran them on the memory store.
fn store_engines() -> Result<()> {
    rerun(&["vecseal-index"], ("VECSEAL_TEST_STORE", "rocks"))
}

/// Runs the test binaries of `packages` again with one more environment
/// variable. The binaries are the ones `cargo test --workspace` built
/// (asked for by path, so no other feature set and no rebuild).
fn rerun(packages: &[&str], (var, value): (&str, &str)) -> Result<()> {
    let out = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --workspace --no-run failed with {}", out.status);
    }
    let mut ran = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(manifest)) =
            (msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        let package = msg["package_id"].as_str().unwrap_or_default();
        if !packages.iter().any(|p| package.contains(&format!("#{p}@"))) {
            continue;
        }
        let dir = Path::new(manifest)
            .parent()
            .unwrap_or_else(|| Path::new("."));
        eprintln!("xtask: {var}={value} {exe}");
        let status = Command::new(exe)
            .env(var, value)
            .current_dir(dir)
            .status()
            .with_context(|| format!("cannot start {exe}"))?;
        if !status.success() {
            bail!("{exe} failed at {var}={value} with {status}");
        }
        ran += 1;
    }
    if ran == 0 {
        bail!("no test binary of {packages:?} was found to run at {var}={value}");
    }
    eprintln!("xtask: {ran} test binaries passed again at {var}={value}");
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Makes sure the tools `cargo xtask ci` runs are there, installing what a
/// fresh machine lacks: libclang-dev (apt), the rustfmt and clippy
/// components (rustup) and cargo-deny (cargo install).
fn ensure_ci_tools() -> Result<()> {
    ensure_libclang()?;
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        let present = cargo()
            .args([probe, "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            eprintln!("xtask: installing the {component} component");
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    let deny = Command::new("cargo-deny")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !deny {
        eprintln!("xtask: installing cargo-deny (a few minutes, once)");
        run(cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    Ok(())
}

/// Errors end in one line (`xtask: error: …`), never a backtrace.
fn main() -> std::process::ExitCode {
    match task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn task() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    match task {
        "ci" => {
            ensure_ci_tools()?;
            run(cargo().args(["fmt", "--all", "--", "--check"]))?;
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            tidy()?;
            run(Command::new("cargo-deny").args(["check", "bans", "licenses", "sources"]))?;
            // Benches are compiled by clippy --all-targets above; building
            // them again in the release profile would cost a second RocksDB
            // build for no extra check.
            run(cargo().args(["test", "--workspace"]))?;
            simd_levels()?;
            store_engines()?;
        }
        "test" => run(cargo().args(["test", "--workspace"]))?,
        "simd" => simd_levels()?,
        "stores" => store_engines()?,
        "lint" => {
            run(cargo().args(["fmt", "--all", "--", "--check"]))?;
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
        }
        "deny" => run(Command::new("cargo-deny").args(["check", "bans", "licenses", "sources"]))?,
        "tidy" => tidy()?,
        "demo" => {
            ensure_libclang()?;
            let mut demo = vec!["demo".to_owned()];
            if !args[1..]
                .iter()
                .any(|a| a == "--npy" || a.starts_with("--npy="))
            {
                match fetch::glove_npy() {
                    Some(p) => demo.extend(["--npy".to_owned(), p.display().to_string()]),
                    None => eprintln!("xtask: the demo runs on synthetic vectors instead"),
                }
            }
            demo.extend_from_slice(&args[1..]);
            run_built("vecseal", &demo)?;
        }
        "bench" | "dataset" => {
            ensure_libclang()?;
            let glove = fetch::glove_npy();
            let faiss = fetch::faiss_pythonpath();
            let mut rest = args[1..].to_vec();
            if task == "dataset" {
                rest.insert(0, "dataset".into());
            }
            let mut cmd = built("vecseal-bench")?;
            if let Some(p) = glove {
                cmd.env("VECSEAL_GLOVE_NPY", p);
            }
            if let Some(p) = faiss {
                cmd.env("VECSEAL_FAISS_PYTHONPATH", p);
            }
            run(cmd.args(rest))?;
        }
        _ => {
            eprintln!("usage: cargo xtask <ci|test|simd|stores|lint|deny|tidy|demo|bench|dataset>");
            if task != "help" {
                bail!("unknown task {task:?}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The architecture invariants of `cargo xtask tidy`, as a test, so that
    /// `cargo test` alone proves them.
    #[test]
    fn architecture_invariants_hold() {
        super::tidy().unwrap();
    }

    #[test]
    fn a_circle_of_modules_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lib.rs"), "mod a; mod b; mod c;").unwrap();
        std::fs::write(dir.join("a.rs"), "use crate::b::B;").unwrap();
        std::fs::write(dir.join("b.rs"), "use crate::c::C;").unwrap();
        std::fs::write(dir.join("c.rs"), "use crate::d::D;").unwrap();
        super::index_modules_are_layered(&dir).unwrap();
        std::fs::write(dir.join("c.rs"), "use crate::a::A;").unwrap();
        let e = super::index_modules_are_layered(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.to_string().contains("a -> b -> c -> a"), "{e}");
    }
}
