//! Project chores: `cargo xtask ci | test | simd | stores | precisions | sdk | pg CMD… | lint | deny | tidy | bench [server] | dataset | demo | serve`.

mod fetch;
mod pg;

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
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    with_test_env(&mut cmd);
    cmd
}

/// The PostgreSQL server the tests use, once one is known (see
/// [`postgres_for_tests`]).
static TEST_PG_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// The program that restarts it, when it is a throwaway cluster.
static TEST_PG_RESTART: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
/// Its TLS address, when it is a throwaway cluster that has one.
static TEST_PG_TLS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Passes the tests' PostgreSQL server to `cmd`.
fn with_test_env(cmd: &mut Command) {
    if let Some(url) = TEST_PG_URL.get() {
        cmd.env(pg::TEST_PG, url);
    }
    if let Some(restart) = TEST_PG_RESTART.get() {
        cmd.env(pg::TEST_PG_RESTART, restart);
    }
    if let Some(url) = TEST_PG_TLS.get() {
        cmd.env(pg::TEST_PG_TLS, url);
    }
}

/// The tests' PostgreSQL server: `VECSEAL_TEST_PG` when set, else a
/// throwaway cluster (returned: it stops when dropped).
fn postgres_for_tests() -> Result<Option<pg::Cluster>> {
    if let Ok(url) = std::env::var(pg::TEST_PG) {
        let _ = TEST_PG_URL.set(url);
        return Ok(None);
    }
    let cluster = pg::Cluster::start()?;
    let _ = TEST_PG_URL.set(cluster.url.clone());
    let _ = TEST_PG_RESTART.set(cluster.restart.clone());
    if let Some(url) = &cluster.tls_url {
        let _ = TEST_PG_TLS.set(url.clone());
    }
    Ok(Some(cluster))
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
        // keyring builds only on envelope and codec.
        ("vecseal-keyring", &["faer", "rocksdb", "vecseal-storage"]),
        // codec depends on nothing of vecseal and knows no cipher.
        (
            "vecseal-codec",
            &[
                "vecseal-envelope",
                "vecseal-keyring",
                "vecseal-storage",
                "ring",
                "chacha20poly1305",
                "serde_json",
            ],
        ),
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
    rocksdb_builds_once()?;
    eprintln!("xtask: tidy: architecture invariants hold");
    Ok(())
}

/// The longest a file of vecseal-index may be: one concern per file.
const MAX_MODULE_LINES: usize = 650;

/// RocksDB's C++ takes a quarter of an hour to compile, so every package
/// selection (`--workspace`, `-p` of any member that links it, and the
/// binaries `cargo xtask demo` and `bench` build) must resolve
/// `librocksdb-sys` to the same build: same features and profile settings
/// all the way down its dependencies, or cargo builds it again in a new
/// directory. Compares those subtrees in cargo's unit graph (printed, not
/// built; `RUSTC_BOOTSTRAP` only lets stable cargo print it). The profile's
/// name (`dev` or `test`) is left out: the two share RocksDB's build (a
/// clippy run after a test build does not compile it again).
fn rocksdb_builds_once() -> Result<()> {
    let signature = |command: &[&str]| -> Result<String> {
        let out = cargo()
            .args(command)
            .args(["-Z", "unstable-options", "--unit-graph"])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(root())
            .output()
            .context("cargo --unit-graph")?;
        if !out.status.success() {
            bail!(
                "cargo {command:?} --unit-graph failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let graph: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let units = graph["units"]
            .as_array()
            .context("unit graph without units")?;
        let lib = units
            .iter()
            .position(|u| {
                u["pkg_id"]
                    .as_str()
                    .is_some_and(|p| p.contains("librocksdb-sys"))
                    && u["mode"] == "build"
                    && u["target"]["kind"][0] == "lib"
            })
            .context("no librocksdb-sys unit")?;
        fn describe(units: &[serde_json::Value], i: usize, out: &mut Vec<String>) {
            let u = &units[i];
            let mut profile = u["profile"].clone();
            if let Some(p) = profile.as_object_mut() {
                p.remove("name");
            }
            out.push(format!(
                "{} {} {} {} {}",
                u["pkg_id"], u["target"]["name"], u["mode"], u["features"], profile
            ));
            for d in u["dependencies"].as_array().into_iter().flatten() {
                if let Some(j) = d["index"].as_u64() {
                    describe(units, j as usize, out);
                }
            }
        }
        let mut lines = Vec::new();
        describe(units, lib, &mut lines);
        lines.sort();
        lines.dedup();
        Ok(lines.join("\n"))
    };
    let whole = signature(&["test", "--no-run", "--workspace"])?;
    let mut selections: Vec<Vec<&str>> = [
        "vecseal-storage",
        "vecseal-index",
        "vecseal",
        "vecseal-server",
        "vecseal-cli",
    ]
    .into_iter()
    .map(|p| vec!["test", "--no-run", "-p", p])
    .collect();
    selections.push(vec!["build", "-p", "vecseal-cli", "--bin", "vecseal"]);
    selections.push(vec![
        "build",
        "-p",
        "vecseal-benches",
        "--bin",
        "vecseal-bench",
    ]);
    for command in selections {
        let one = signature(&command)?;
        if one != whole {
            let ws: Vec<&str> = whole.lines().collect();
            let diff: Vec<&str> = one.lines().filter(|l| !ws.contains(l)).collect();
            bail!(
                "`cargo {}` would compile RocksDB again: its librocksdb-sys resolves \
                 differently from the workspace's tests in {diff:?} (unify the features \
                 in crates/storage/Cargo.toml)",
                command.join(" ")
            );
        }
    }
    Ok(())
}

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
        let code = without_tests(&text);
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

/// A module's source without its tests: a `#[cfg(test)]` item that is a
/// `mod …;` declaration is dropped wherever it stands, and an inline
/// `#[cfg(test)]` item cuts the rest of the file (where test modules go).
/// Code after a test-module declaration in mid-file stays checked.
fn without_tests(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            match lines.peek() {
                Some(next)
                    if next.trim_start().starts_with("mod ") && next.trim_end().ends_with(';') =>
                {
                    lines.next();
                    continue;
                }
                _ => break,
            }
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Installs `libclang-dev` (RocksDB's bindings need it) when a Debian machine
/// lacks it, so the README's demo command works on a fresh machine.
fn ensure_libclang() -> Result<()> {
    ensure_apt("libclang-dev")
}

/// Installs Debian package `pkg` with apt unless it is there (or there is
/// no apt: then the build says what is missing).
fn ensure_apt(pkg: &str) -> Result<()> {
    let has = |pkg: &str| {
        Command::new("dpkg")
            .args(["-s", pkg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(pkg) || Command::new("apt-get").arg("--version").output().is_err() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", pkg]))
}

/// Installs Debian package `pkg` (see [`ensure_apt`]) unless `command`
/// already runs (from whatever package or installer it came).
fn ensure_command(command: &str, pkg: &str) -> Result<()> {
    let runs = Command::new(command)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Ok(());
    }
    ensure_apt(pkg)
}

/// Builds one binary of the workspace (see [`built`]) and runs it.
fn run_built(bin: &str, args: &[String]) -> Result<()> {
    run(built(bin)?.args(args))
}

/// Builds only binary `bin` and what it links, and returns a command for
/// it. RocksDB resolves the same for this selection as for `cargo xtask ci`
/// (`tidy` checks it), so a later `ci` compiles the tests but not RocksDB's
/// C++ again.
fn built(bin: &str) -> Result<Command> {
    let package = match bin {
        "vecseal" => "vecseal-cli",
        "vecseal-bench" => "vecseal-benches",
        other => bail!("xtask: no package known for binary {other:?}"),
    };
    run(cargo().args(["build", "-p", package, "--bin", bin]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || root().join("target"),
        |dir| std::env::current_dir().unwrap_or_default().join(dir),
    );
    Ok(Command::new(target.join("debug").join(bin)))
}

/// A `vecseal serve` child on an ephemeral loopback port over a fresh data
/// folder, its log echoed to stderr.
struct Served {
    child: std::process::Child,
    url: String,
    data: PathBuf,
    echo: std::thread::JoinHandle<()>,
}

impl Served {
    fn start(tag: &str, root_key: &str, extra: &[&str]) -> Result<Self> {
        use std::io::{BufRead, BufReader};
        let data = std::env::temp_dir().join(format!("vecseal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut child = built("vecseal")?
            .arg("--data")
            .arg(&data)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--auto-train-threshold",
                "0",
            ])
            .args(extra)
            .env("VECSEAL_SERVICE_ROOT_KEY", root_key)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start vecseal serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line?;
            eprintln!("{line}");
            if let Some(u) = line.split("listening on ").nth(1) {
                url = Some(u.trim().to_owned());
                break;
            }
        }
        // Keep echoing the server's log so its pipe never fills.
        let echo = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("{line}");
            }
        });
        let served = Self {
            child,
            url: url.unwrap_or_default(),
            data,
            echo,
        };
        if served.url.is_empty() {
            served.stop()?;
            bail!("vecseal serve printed no address");
        }
        Ok(served)
    }

    /// SIGTERM, then checks that the server shut down cleanly.
    fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait()?;
        let _ = self.echo.join();
        let _ = std::fs::remove_dir_all(&self.data);
        if !status.success() {
            bail!("vecseal serve did not shut down cleanly on SIGTERM: {status}");
        }
        Ok(())
    }
}

/// Starts `vecseal serve` on an ephemeral loopback port over a fresh data
/// folder and drives the unmodified `cyborgdb` Python SDK through every
/// call it has (`xtask/sdk/drive_sdk.py`) and through its LangChain
/// integration (`xtask/sdk/drive_langchain.py`), and the unmodified
/// JavaScript/TypeScript SDK through every call it has and its LangChain
/// integration (`xtask/sdk/drive_sdk_ts.cjs`, `drive_langchain_ts.cjs`, on
/// Node.js), then stops the server with
/// SIGTERM and checks that it shut down cleanly.
fn sdk() -> Result<()> {
    let python = fetch::sdk_python()?;
    ensure_command("node", "nodejs")?;
    ensure_command("npm", "npm")?;
    let node_modules = fetch::sdk_node_modules()?;
    let root_key = format!("sdk-root-{}", std::process::id());
    let served = Served::start("sdk", &root_key, &[])?;
    let drive = |program: &Path, script: &str| {
        run(Command::new(program)
            .arg(root().join("xtask/sdk").join(script))
            .env("VECSEAL_URL", &served.url)
            .env("VECSEAL_ROOT", &root_key)
            .env("NODE_PATH", &node_modules))
    };
    let node = Path::new("node");
    let driven = drive(&python, "drive_sdk.py")
        .and_then(|()| drive(&python, "drive_langchain.py"))
        .and_then(|()| drive(node, "drive_sdk_ts.cjs"))
        .and_then(|()| drive(node, "drive_langchain_ts.cjs"));
    let stopped = served.stop();
    driven?;
    stopped
}

/// `cargo xtask bench server [glove] [synth768]`: vecseal-server against the
/// reference `cyborgdb-service` on the same data, through the SDK and `wrk`
/// (`xtask/sdk/bench_server.py`); each run prints a markdown row.
/// `VECSEAL_BENCH_PRECISION` sets vecseal's storage precision (the
/// reference keeps its default); `VECSEAL_BENCH_LISTS` the lists trained
/// (default `auto`: the SDK's `train()` without `n_lists`, so each service
/// picks its own count, as a user's call would; or a number for both);
/// `VECSEAL_BENCH_REFERENCE=off` skips the reference.
fn bench_server(sets: &[String]) -> Result<()> {
    ensure_apt("wrk")?;
    let python = fetch::sdk_python()?;
    let reference = fetch::reference_service_bin()?;
    let glove = fetch::glove_npy();
    let sets: Vec<&str> = if sets.is_empty() {
        vec!["glove", "synth768"]
    } else {
        sets.iter().map(String::as_str).collect()
    };
    let root_key = format!("bench-root-{}", std::process::id());
    let precision = std::env::var("VECSEAL_BENCH_PRECISION").unwrap_or_default();
    if !["", "float32", "float16", "tq8", "tq4"].contains(&precision.as_str()) {
        bail!("VECSEAL_BENCH_PRECISION: {precision:?}, expected float32, float16, tq8 or tq4");
    }
    let lists = std::env::var("VECSEAL_BENCH_LISTS").unwrap_or_else(|_| "auto".into());
    if lists != "auto" && !lists.parse::<u32>().is_ok_and(|n| n > 0) {
        bail!("VECSEAL_BENCH_LISTS: {lists:?}, expected a positive number of lists or auto");
    }
    let reference_too = match std::env::var("VECSEAL_BENCH_REFERENCE").as_deref() {
        Err(_) | Ok("on") => true,
        Ok("off") => false,
        Ok(other) => bail!("VECSEAL_BENCH_REFERENCE: {other:?}, expected on or off"),
    };
    let drive = |url: &str, label: &str| -> Result<()> {
        for set in &sets {
            let mut cmd = Command::new(&python);
            cmd.arg(root().join("xtask/sdk/bench_server.py"))
                .env("BENCH_URL", url)
                .env("BENCH_ROOT", &root_key)
                .env("BENCH_LABEL", label)
                .env("BENCH_SET", set)
                .env("BENCH_LISTS", &lists);
            match (*set, &glove) {
                // The reference needs a dimension divisible by 8: both
                // services get GloVe padded with zeros to 64-d.
                ("glove", Some(npy)) => {
                    cmd.env("BENCH_NPY", npy).env("BENCH_DIM_PAD", "64");
                }
                ("glove", None) => bail!("GloVe could not be fetched"),
                ("synth768", _) => {}
                (other, _) => bail!("unknown benchmark set {other:?} (glove, synth768)"),
            }
            if label != "cyborgdb-service" {
                cmd.env("BENCH_PRECISION", &precision);
            } else {
                // Its recall comes from re-ranking as much as from probing
                // more lists: few probes with a deep re-rank first (where
                // the lists are many, a few probes may be enough).
                cmd.env(
                    "BENCH_TUNE",
                    r#"[{"n_probes": 1, "rerank_mult": 200}, {"n_probes": 2, "rerank_mult": 200},
                        {"n_probes": 4, "rerank_mult": 200}, {"n_probes": 8, "rerank_mult": 200},
                        {"n_probes": 16, "rerank_mult": 200},
                        {"n_probes": 32}, {"n_probes": 32, "rerank_mult": 200},
                        {"n_probes": 64, "rerank_mult": 1000},
                        {"n_probes": 128, "rerank_mult": 1000}]"#,
                );
            }
            run(&mut cmd)?;
        }
        Ok(())
    };

    // With the list cache off every query decrypts the blocks it scans;
    // with it on, decrypted blocks stay in memory (docs/SECURITY.md).
    for (label, cache_mib) in [
        ("vecseal-server", "0"),
        ("vecseal-server, list cache 1 GiB", "1024"),
    ] {
        let served = Served::start("bench", &root_key, &["--list-cache-mib", cache_mib])?;
        let label = match precision.as_str() {
            "" => label.to_owned(),
            p => format!("{label}, {p}"),
        };
        let ours = drive(&served.url, &label);
        served.stop()?;
        ours?;
    }
    if !reference_too {
        return Ok(());
    }

    let data = std::env::temp_dir().join(format!("cyborgdb-bench-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(reference.join("cyborgdb-service"))
        .env("PORT", port.to_string())
        .env("CYBORGDB_DB_TYPE", "disk")
        .env("CYBORGDB_DISK_PATH", &data)
        .env("CYBORGDB_SERVICE_ROOT_KEY", &root_key)
        .env("AUTO_TRAIN_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start cyborgdb-service")?;
    let url = format!("http://127.0.0.1:{port}");
    let theirs = wait_healthy(port, std::time::Duration::from_secs(180))
        .and_then(|()| drive(&url, "cyborgdb-service"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    theirs
}

/// Waits until `GET /v1/health` on loopback `port` answers 200.
fn wait_healthy(port: u16, limit: std::time::Duration) -> Result<()> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut answer = String::new();
            if s.write_all(b"GET /v1/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!("the service on port {port} was not healthy within {limit:?}")
}

/// The k-means and index tests again at `VECSEAL_SIMD=scalar`: `cargo test
/// --workspace` ran them at the machine's best level, so a result that
/// depends on the CPU cannot pass unnoticed. Nothing is left out.
const SCALAR_SIMD: Rerun = Rerun {
    packages: &["vecseal-kmeans", "vecseal-index"],
    var: "VECSEAL_SIMD",
    leave_out: &[],
    markers: &[],
};

/// The index tests again on another engine (`cargo test --workspace` ran
/// them on the memory store), but for the binaries that always run on an
/// engine of their own (the memory store, or RocksDB for the crash test),
/// which a rerun would repeat unchanged.
const ENGINES: Rerun = Rerun {
    packages: &["vecseal-index"],
    var: "VECSEAL_TEST_STORE",
    leave_out: &[
        "vecseal_index",
        "storage_precision",
        "crash_during_train_and_upsert",
        "commits_are_proportional_to_the_change",
    ],
    markers: &["test_store(", "test_db(", "store_kind("],
};

/// The index tests again at a compressed storage precision (`cargo test
/// --workspace` ran them at float32), but for the unit tests and
/// `storage_precision`, which goes through every precision itself.
const PRECISIONS: Rerun = Rerun {
    packages: &["vecseal-index"],
    var: "VECSEAL_TEST_PRECISION",
    leave_out: &["vecseal_index", "storage_precision"],
    markers: &["config()", "precision()", "create(&"],
};

fn simd_levels() -> Result<()> {
    SCALAR_SIMD.run("scalar")
}

/// On RocksDB (`rocks`) and on PostgreSQL (`pg`).
fn store_engines() -> Result<()> {
    ENGINES.run("rocks")?;
    ENGINES.run("pg")
}

fn precisions() -> Result<()> {
    for p in ["float16", "tq8", "tq4"] {
        PRECISIONS.run(p)?;
    }
    Ok(())
}

/// The test binaries of `packages` run again with `var` set, but for the
/// test targets `leave_out` names, which `var` cannot change. So that the
/// list cannot go stale unnoticed, a rerun fails when a left-out test file
/// mentions `var` or one of `markers` (the tests' helpers that read it), or
/// a left-out library's sources name `var`.
struct Rerun {
    packages: &'static [&'static str],
    var: &'static str,
    leave_out: &'static [&'static str],
    markers: &'static [&'static str],
}

impl Rerun {
    /// Whether to leave out the target `name` whose sources start at `src`
    /// (a test file, or a library's `src/lib.rs`, whose folder is searched
    /// for `var`).
    fn leaves_out(&self, name: &str, src: &Path) -> Result<bool> {
        if !self.leave_out.contains(&name) {
            return Ok(false);
        }
        let var = self.var;
        // A library's unit tests cannot call the test files' helpers.
        let (files, helpers) = if src.file_name().is_some_and(|f| f == "lib.rs") {
            (walk(src.parent().unwrap_or(src))?, &[][..])
        } else {
            (vec![src.to_path_buf()], self.markers)
        };
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if let Some(m) = helpers.iter().chain([&var]).find(|m| text.contains(*m)) {
                bail!(
                    "{} mentions {m:?}, so the test target {name:?} depends on {var}: \
                     remove it from the targets xtask's reruns at {var} leave out",
                    file.display()
                );
            }
        }
        Ok(true)
    }

    /// Runs the test binaries again with `var` set to `value`. The
    /// binaries are the ones `cargo test --workspace` built (asked for by
    /// path, so no other feature set and no rebuild).
    fn run(&self, value: &str) -> Result<()> {
        let (packages, var) = (self.packages, self.var);
        // Which binaries to run, all checked before the first one runs.
        let mut to_run = Vec::new();
        let mut left_out = Vec::new();
        for t in test_binaries()? {
            if !packages
                .iter()
                .any(|p| t.package.contains(&format!("#{p}@")))
            {
                continue;
            }
            if self.leaves_out(&t.name, &t.src)? {
                left_out.push(t.name.as_str());
                continue;
            }
            to_run.push(t);
        }
        if to_run.is_empty() {
            bail!("no test binary of {packages:?} was found to run at {var}={value}");
        }
        if left_out.len() < self.leave_out.len() {
            bail!(
                "rerun at {var}={value}: of the targets to leave out {:?}, only {left_out:?} were built",
                self.leave_out
            );
        }
        for t in &to_run {
            eprintln!("xtask: {var}={value} {}", t.exe);
            let mut cmd = Command::new(&t.exe);
            with_test_env(&mut cmd);
            let status = cmd
                .env(var, value)
                .current_dir(&t.dir)
                .status()
                .with_context(|| format!("cannot start {}", t.exe))?;
            if !status.success() {
                bail!("{} failed at {var}={value} with {status}", t.exe);
            }
        }
        eprintln!(
            "xtask: {} test binaries passed again at {var}={value} (left out, as they do not \
             depend on it: {left_out:?})",
            to_run.len()
        );
        Ok(())
    }
}

/// One test binary that `cargo test --workspace` built.
struct TestBinary {
    /// Cargo's package id (`…#name@version`).
    package: String,
    /// The test target's name and its root source file.
    name: String,
    src: PathBuf,
    exe: String,
    /// The package's folder, where the binary runs (as `cargo test` runs it).
    dir: PathBuf,
}

/// The test binaries of the workspace's last test build, asked of cargo
/// once per xtask run (every rerun reads the same list; nothing is built
/// between them).
fn test_binaries() -> Result<&'static [TestBinary]> {
    static BUILT: std::sync::OnceLock<Vec<TestBinary>> = std::sync::OnceLock::new();
    if let Some(built) = BUILT.get() {
        return Ok(built);
    }
    let out = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --workspace --no-run failed with {}", out.status);
    }
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(manifest)) =
            (msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        built.push(TestBinary {
            package: msg["package_id"].as_str().unwrap_or_default().to_owned(),
            name: msg["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            src: PathBuf::from(msg["target"]["src_path"].as_str().unwrap_or_default()),
            exe: exe.to_owned(),
            dir: Path::new(manifest)
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .to_path_buf(),
        });
    }
    Ok(BUILT.get_or_init(|| built))
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
            // The PostgreSQL tests run on VECSEAL_TEST_PG when set, else
            // on a throwaway cluster that lives until the tests end.
            let _cluster = postgres_for_tests()?;
            // Benches are compiled by clippy --all-targets above; building
            // them again in the release profile would cost a second RocksDB
            // build for no extra check.
            run(cargo().args(["test", "--workspace"]))?;
            simd_levels()?;
            store_engines()?;
            precisions()?;
            sdk()?;
        }
        "sdk" => sdk()?,
        // `cargo xtask pg CMD ARGS…`: CMD with VECSEAL_TEST_PG set to a
        // throwaway PostgreSQL cluster (or the one already set).
        "pg" => {
            let Some(program) = args.get(1) else {
                bail!("usage: cargo xtask pg CMD [ARGS…] (e.g. cargo xtask pg cargo test -p vecseal-storage)");
            };
            let _cluster = postgres_for_tests()?;
            let mut cmd = Command::new(program);
            with_test_env(&mut cmd);
            run(cmd.args(&args[2..]))?;
        }
        "test" => {
            let _cluster = postgres_for_tests()?;
            run(cargo().args(["test", "--workspace"]))?;
        }
        "simd" => simd_levels()?,
        "precisions" => precisions()?,
        "stores" => {
            let _cluster = postgres_for_tests()?;
            store_engines()?;
        }
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
        "serve" => {
            ensure_libclang()?;
            let mut serve = vec!["serve".to_owned()];
            serve.extend_from_slice(&args[1..]);
            run_built("vecseal", &serve)?;
        }
        "bench" if args.get(1).is_some_and(|a| a == "server") => {
            ensure_libclang()?;
            bench_server(&args[2..])?;
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
            eprintln!(
                "usage: cargo xtask <ci|test|simd|stores|precisions|sdk|pg CMD…|lint|deny|tidy|demo|serve|bench [server]|dataset>"
            );
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

    /// The reruns' left-out targets still do not read the reruns'
    /// variables (what each rerun checks before it runs anything).
    #[test]
    fn the_reruns_leave_out_only_targets_that_ignore_their_variable() {
        let index = super::root().join("crates/index");
        for rerun in [&super::ENGINES, &super::PRECISIONS] {
            for name in rerun.leave_out {
                let src = match *name {
                    "vecseal_index" => index.join("src/lib.rs"),
                    test => index.join("tests").join(format!("{test}.rs")),
                };
                assert!(src.is_file(), "{}", src.display());
                assert!(rerun.leaves_out(name, &src).unwrap(), "{name}");
            }
        }
    }

    #[test]
    fn a_left_out_target_that_reads_the_variable_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-skip-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let skip = super::Rerun {
            packages: &[],
            var: "VAR",
            leave_out: &["t", "lib"],
            markers: &["config()"],
        };
        let test = dir.join("t.rs");
        std::fs::write(&test, "fn f() { let c = IndexConfig::default(); }").unwrap();
        let plain = skip.leaves_out("t", &test);
        let other = skip.leaves_out("u", &test);
        std::fs::write(&test, "fn f() { let c = config(); }").unwrap();
        let marked = skip.leaves_out("t", &test);
        // A library's whole source folder is searched for the variable.
        std::fs::write(dir.join("src/lib.rs"), "mod m;").unwrap();
        std::fs::write(dir.join("src/m.rs"), "fn f() { let c = config(); }").unwrap();
        let lib_plain = skip.leaves_out("lib", &dir.join("src/lib.rs"));
        std::fs::write(dir.join("src/m.rs"), r#"fn f() { std::env::var("VAR"); }"#).unwrap();
        let lib_named = skip.leaves_out("lib", &dir.join("src/lib.rs"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(plain.unwrap());
        assert!(!other.unwrap(), "a target not in the list runs");
        let e = marked.unwrap_err().to_string();
        assert!(e.contains("\"config()\"") && e.contains("\"t\""), "{e}");
        assert!(
            lib_plain.unwrap(),
            "only the variable's name counts in a library"
        );
        let e = lib_named.unwrap_err().to_string();
        assert!(e.contains("m.rs") && e.contains("VAR"), "{e}");
    }

    #[test]
    fn code_after_a_test_module_declaration_is_still_checked() {
        let dir = std::env::temp_dir().join(format!("xtask-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lib.rs"), "mod a; mod b;").unwrap();
        std::fs::write(dir.join("a.rs"), "use crate::b::B;").unwrap();
        // The circle is closed below a mid-file `#[cfg(test)] mod tests;`.
        let b = "pub struct B;\n#[cfg(test)]\nmod tests;\nfn f() { crate::a::g() }\n";
        std::fs::write(dir.join("b.rs"), b).unwrap();
        let e = super::index_modules_are_layered(&dir).unwrap_err();
        // An inline test module may reach anywhere.
        let b = "pub struct B;\n#[cfg(test)]\nmod tests {\n    fn f() { crate::a::g() }\n}\n";
        std::fs::write(dir.join("b.rs"), b).unwrap();
        let inline = super::index_modules_are_layered(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.to_string().contains("a -> b -> a"), "{e}");
        inline.unwrap();
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
