//! Integration tests of the `vecseal` command: every command, its error
//! paths and exit codes (0 success, 2 usage, 1 other), and that the key never
//! appears in any output or log.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use npyz::WriterBuilder;
use predicates::prelude::*;
use serde_json::Value;

/// A data folder and an owner key file, both in a temporary directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        };
        env.cmd()
            .args(["keygen", "--out"])
            .arg(env.path("owner.key"))
            .assert()
            .success();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `vecseal --data DIR` with no key.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("vecseal").unwrap_or_else(|e| panic!("{e}"));
        c.env_remove("VECSEAL_KEY")
            .arg("--data")
            .arg(self.path("data"));
        c
    }

    /// `vecseal --data DIR --key-file owner.key`.
    fn owner(&self) -> Command {
        let mut c = self.cmd();
        c.arg("--key-file").arg(self.path("owner.key"));
        c
    }

    /// `vecseal --data DIR --key-file KEY --user-id USER`: acting as an
    /// RBAC user whose key is in file `key` of the directory.
    fn as_user(&self, user: &str, key: &str) -> Command {
        let mut c = self.cmd();
        c.arg("--key-file")
            .arg(self.path(key))
            .args(["--user-id", user]);
        c
    }

    /// A new key in file `key` of the directory, and RBAC user `user` of
    /// index "team" holding it, with permission `perm` (`--read`, `--write`).
    fn add_user(&self, user: &str, key: &str, perm: &str) {
        self.cmd()
            .args(["keygen", "--out"])
            .arg(self.path(key))
            .assert()
            .success();
        self.owner()
            .args([
                "users",
                "add",
                "team",
                "--user-id",
                user,
                perm,
                "--user-key-file",
            ])
            .arg(self.path(key))
            .assert()
            .success();
    }

    /// Index "team" (dimension 2) with two vectors; returns their `.npy`.
    fn team(&self) -> PathBuf {
        self.owner()
            .args(["create", "team", "--dim", "2"])
            .assert()
            .success();
        let data = self.write_npy("v.npy", &[vec![0.0, 1.0], vec![1.0, 0.0]]);
        self.owner()
            .args(["upsert", "team", "--vectors"])
            .arg(&data)
            .assert()
            .success();
        data
    }

    fn write_npy(&self, name: &str, rows: &[Vec<f32>]) -> PathBuf {
        let p = self.path(name);
        let d = rows.first().map_or(0, Vec::len);
        let f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows.len() as u64, d as u64])
            .writer(std::io::BufWriter::new(f))
            .begin_nd()
            .unwrap_or_else(|e| panic!("{e}"));
        w.extend(rows.iter().flatten().copied())
            .unwrap_or_else(|e| panic!("{e}"));
        w.finish().unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }
}

fn stdout_of(c: &mut Command) -> String {
    let out = c.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

fn json_of(c: &mut Command) -> Value {
    serde_json::from_str(&stdout_of(c)).unwrap_or_else(|e| panic!("{e}"))
}

/// 10 000 points of dimension 4 on a grid (enough to train).
fn grid(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            vec![
                (i % 10) as f32,
                ((i / 10) % 10) as f32,
                ((i / 100) % 10) as f32,
                (i / 1000) as f32,
            ]
        })
        .collect()
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let env = Env::new();
    let key = env.path("owner.key");
    assert_eq!(std::fs::read(&key).map(|k| k.len()).unwrap_or(0), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.unwrap_or(0), 0o600);
    }
    let before = std::fs::read(&key).unwrap_or_default();
    env.cmd()
        .args(["keygen", "--out"])
        .arg(&key)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("must not exist"));
    assert_eq!(std::fs::read(&key).unwrap_or_default(), before);
}

#[test]
fn the_whole_lifecycle_from_the_command_line() {
    let env = Env::new();
    env.owner()
        .args([
            "create",
            "docs",
            "--metric",
            "euclidean",
            "--cipher",
            "chacha20-poly1305",
        ])
        .assert()
        .success();
    assert_eq!(stdout_of(env.owner().arg("list")).trim(), "docs");

    let vectors = env.write_npy("v.npy", &grid(10_000));
    env.owner()
        .args(["upsert", "docs", "--vectors"])
        .arg(&vectors)
        .assert()
        .success();
    let info = json_of(env.owner().args(["info", "docs", "--json"]));
    assert_eq!(info["count"], 10_000);
    assert_eq!(info["dimension"], 4);
    assert_eq!(info["state"], "untrained");
    assert_eq!(info["metric"], "euclidean");
    assert_eq!(info["cipher"], "chacha20-poly1305");
    let text = stdout_of(env.owner().args(["info", "docs"]));
    assert!(text.contains("count:     10000"), "{text}");

    // Exact query before training: the query point itself comes first.
    let q = env.write_npy(
        "q.npy",
        &[vec![3.0, 4.0, 5.0, 6.0], vec![0.0, 0.0, 0.0, 0.0]],
    );
    let out = env
        .owner()
        .args(["query", "docs", "--top-k", "3", "--vectors"])
        .arg(&q)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 queries in").and(predicate::str::contains("QPS")))
        .get_output()
        .stdout
        .clone();
    let lines: Vec<Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0][0]["id"], "6543");
    assert_eq!(lines[0][0]["distance"], 0.0);
    assert_eq!(lines[0].as_array().map(Vec::len), Some(3));
    assert_eq!(lines[1][0]["id"], "0");

    env.owner()
        .args([
            "train",
            "docs",
            "--n-lists",
            "20",
            "--max-iters",
            "10",
            "--tolerance",
            "0.0001",
        ])
        .args(["--batch-size", "0", "--max-memory", "64"])
        .assert()
        .success();
    let info = json_of(env.owner().args(["info", "docs", "--json"]));
    assert_eq!(info["state"], "trained");
    assert_eq!(info["n_lists"], 20);

    let file = env.path("results.json");
    env.owner()
        .args([
            "query",
            "docs",
            "--top-k",
            "1",
            "--n-probes",
            "20",
            "--include",
            "distance,metadata",
        ])
        .arg("--vectors")
        .arg(&q)
        .arg("--out")
        .arg(&file)
        .assert()
        .success();
    let all: Value = serde_json::from_slice(&std::fs::read(&file).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all[0][0]["id"], "6543");
    assert_eq!(all[1][0]["id"], "0");

    let got = stdout_of(env.owner().args(["get", "docs", "6543"]));
    let item: Value = serde_json::from_str(got.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(item["vector"], serde_json::json!([3.0, 4.0, 5.0, 6.0]));
    env.owner()
        .args(["delete", "docs", "6543", "nope"])
        .assert()
        .success()
        .stderr(predicate::str::contains("deleted 1 of 2"));
    env.owner()
        .args(["get", "docs", "6543"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found: 6543"));

    env.owner().args(["drop", "docs"]).assert().success();
    assert_eq!(stdout_of(env.owner().arg("list")).trim(), "");
}

#[test]
fn jsonl_upsert_with_metadata_and_filters() {
    let env = Env::new();
    env.owner()
        .args(["create", "kb", "--metric", "cosine"])
        .assert()
        .success();
    let mut rows = String::new();
    for i in 0..30 {
        rows.push_str(&format!(
            "{{\"id\": \"d{i}\", \"vector\": [1.0, {}.0], \"contents\": \"text {i}\", \"metadata\": {{\"tenant\": {}, \"tags\": [\"t{}\"]}}}}\n",
            i + 1,
            i % 3,
            i % 2
        ));
    }
    let jsonl = env.write("items.jsonl", &rows);
    env.owner()
        .args(["upsert", "kb", "--jsonl"])
        .arg(&jsonl)
        .assert()
        .success();
    let ids = json_of(env.owner().args([
        "query-metadata",
        "kb",
        "--filter",
        r#"{"tenant": 1, "tags": "t0"}"#,
    ]));
    assert_eq!(
        ids,
        serde_json::json!({"ids": ["d10", "d16", "d22", "d28", "d4"], "count": 5})
    );
    let limited = json_of(env.owner().args([
        "query-metadata",
        "kb",
        "--filter",
        r#"{"tenant": {"$in": [0, 2]}}"#,
        "--limit",
        "2",
    ]));
    assert_eq!(limited["ids"], serde_json::json!(["d0", "d11"]));
    assert!(limited["count"].as_u64().unwrap() > 2, "{limited}");

    let q = env.write_npy("q.npy", &[vec![1.0, 1.0]]);
    let out = stdout_of(
        env.owner()
            .args([
                "query",
                "kb",
                "--top-k",
                "2",
                "--include",
                "metadata,contents",
            ])
            .args(["--filter", r#"{"tenant": 2}"#, "--vectors"])
            .arg(&q),
    );
    let hits: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits[0]["id"], "d2");
    assert_eq!(hits[0]["metadata"]["tenant"], 2);
    assert_eq!(hits[0]["contents"], "text 2");
    assert_eq!(hits[1]["id"], "d5");
    assert!(hits[0].get("distance").is_none());

    // A malformed filter is a usage error naming the operator and position.
    env.owner()
        .args([
            "query-metadata",
            "kb",
            "--filter",
            r#"{"tenant": {"$near": 1}}"#,
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("$near").and(predicate::str::contains("$.tenant")));
}

#[test]
fn users_and_permissions() {
    let env = Env::new();
    let data = env.team();
    let alice = "00112233445566778899aabbccddeeff";
    env.add_user(alice, "alice.key", "--read");
    let users = stdout_of(env.owner().args(["users", "list", "team"]));
    let u: Value = serde_json::from_str(users.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u["user_id"], alice);
    assert_eq!(u["read"], true);
    assert_eq!(u["write"], false);

    let as_alice = || env.as_user(alice, "alice.key");
    assert_eq!(
        json_of(as_alice().args(["info", "team", "--json"]))["count"],
        2
    );
    as_alice()
        .args(["upsert", "team", "--vectors"])
        .arg(&data)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("permission"));
    as_alice()
        .args(["delete", "team", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("permission"));
    as_alice().args(["users", "list", "team"]).assert().code(1);

    env.owner()
        .args(["users", "remove", "team", "--user-id", alice])
        .assert()
        .success();
    as_alice().args(["info", "team"]).assert().code(1);
    env.owner()
        .args(["users", "remove", "team", "--user-id", alice])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no access"));
}

/// The same commands on PostgreSQL (`--store URL`), in a schema of its own
/// on the server `VECSEAL_TEST_PG` names (`cargo xtask ci` starts one;
/// without it there is nothing to run this on).
#[test]
fn the_cli_runs_on_postgres() {
    let Ok(url) = std::env::var("VECSEAL_TEST_PG") else {
        eprintln!("VECSEAL_TEST_PG is not set: no PostgreSQL to run on");
        return;
    };
    let schema = format!("vs_cli_{}", std::process::id());
    let mut admin =
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"));
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let env = Env::new();
    let pg = || {
        let mut c = env.owner();
        c.args(["--store", &store]);
        c
    };
    pg().args(["create", "team", "--dim", "2"])
        .assert()
        .success();
    let data = env.write_npy("v.npy", &[vec![0.0, 1.0], vec![1.0, 0.0]]);
    pg().args(["upsert", "team", "--vectors"])
        .arg(&data)
        .assert()
        .success();
    assert_eq!(json_of(pg().args(["info", "team", "--json"]))["count"], 2);
    assert_eq!(stdout_of(pg().arg("list")).trim(), "team");
    // The local data folder was not used, and the table of items holds
    // the two items under blinded keys (index id and a 32-byte blinding).
    assert!(!env.path("data").exists());
    let rows = admin
        .query(&format!("SELECT k FROM {schema}.vecseal_items"), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.get::<_, Vec<u8>>(0).len() == 48));
    pg().args(["drop", "team"]).assert().success();
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn key_rotation_from_the_command_line() {
    let env = Env::new();
    let data = env.team();
    let (alice, bob) = (
        "00112233445566778899aabbccddeeff",
        "ffeeddccbbaa99887766554433221100",
    );
    env.add_user(alice, "alice.key", "--read");
    env.add_user(bob, "bob.key", "--write");

    // Revoking with --rotate re-seals everything under a new data key.
    env.owner()
        .args(["users", "remove", "team", "--user-id", alice, "--rotate"])
        .assert()
        .success()
        .stderr(predicate::str::contains("rotated the data key"));
    env.as_user(alice, "alice.key")
        .args(["info", "team"])
        .assert()
        .code(1);
    assert_eq!(
        json_of(env.as_user(bob, "bob.key").args(["info", "team", "--json"]))["count"],
        2
    );

    // Nothing to rotate is a usage error that says what to give.
    env.owner()
        .args(["rotate-key", "team"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--data-key"));

    // A new data key and a new owner key at once: the old owner key stops
    // working, the new one and the remaining user's key work.
    env.cmd()
        .args(["keygen", "--out"])
        .arg(env.path("new.key"))
        .assert()
        .success();
    env.owner()
        .args(["rotate-key", "team", "--data-key", "--new-key-file"])
        .arg(env.path("new.key"))
        .assert()
        .success();
    env.owner().args(["info", "team"]).assert().code(1);
    let mut new_owner = env.cmd();
    new_owner.arg("--key-file").arg(env.path("new.key"));
    assert_eq!(
        json_of(new_owner.args(["info", "team", "--json"]))["count"],
        2
    );
    env.as_user(bob, "bob.key")
        .args(["upsert", "team", "--vectors"])
        .arg(&data)
        .assert()
        .success();
}

/// A compressed index from the command line: the precision is fixed at
/// creation, shown by `info`, and queries rerank exactly (the point itself
/// comes first at distance 0); a precision that is none is a usage error.
#[test]
fn storage_precision_from_the_command_line() {
    let env = Env::new();
    env.owner()
        .args(["create", "small", "--storage-precision", "tq4"])
        .assert()
        .success();
    let vectors = env.write_npy("v.npy", &grid(2_000));
    env.owner()
        .args(["upsert", "small", "--vectors"])
        .arg(&vectors)
        .assert()
        .success();
    let info = json_of(env.owner().args(["info", "small", "--json"]));
    assert_eq!(info["storage_precision"], "tq4");
    assert!(stdout_of(env.owner().args(["info", "small"])).contains("precision: tq4"));
    let q = env.write_npy("q.npy", &[vec![3.0, 4.0, 5.0, 1.0]]);
    let out = stdout_of(
        env.owner()
            .args([
                "query",
                "small",
                "--top-k",
                "2",
                "--rerank-mult",
                "8",
                "--vectors",
            ])
            .arg(&q),
    );
    let hits: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits[0]["id"], "1543", "{hits}");
    assert_eq!(hits[0]["distance"], 0.0, "{hits}");
    assert_eq!(hits[1]["distance"], 1.0, "{hits}");
    env.owner()
        .args(["create", "x", "--storage-precision", "tq6"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tq6").and(predicate::str::contains("not supported")));
}

#[test]
fn errors_say_what_was_wrong_with_the_right_exit_code() {
    let env = Env::new();
    env.owner()
        .args(["create", "ix", "--dim", "3"])
        .assert()
        .success();
    // Usage errors: exit code 2.
    env.cmd().assert().code(2);
    env.owner().args(["frobnicate"]).assert().code(2);
    env.owner()
        .args(["create", "x", "--metric", "manhattan"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("manhattan"));
    env.owner()
        .args(["query", "ix", "--vectors", "q.npy", "--include", "colour"])
        .assert()
        .code(2);
    // A SIMD level that is none is a usage error; a real one works.
    env.owner()
        .env("VECSEAL_SIMD", "avx9")
        .args(["info", "ix"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("avx9").and(predicate::str::contains("scalar, v3 or v4")));
    env.owner()
        .env("VECSEAL_SIMD", "scalar")
        .args(["info", "ix"])
        .assert()
        .success();
    // Everything else: exit code 1 and a message.
    env.owner()
        .args(["create", "ix"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    env.owner()
        .args(["info", "ghost"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"ghost\" does not exist"));
    env.cmd()
        .args(["info", "ix"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no key"));
    let wrong = env.path("wrong.key");
    env.cmd()
        .args(["keygen", "--out"])
        .arg(&wrong)
        .assert()
        .success();
    env.cmd()
        .arg("--key-file")
        .arg(&wrong)
        .args(["info", "ix"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("key"));
    let short = env.write("short.key", "too short");
    env.cmd()
        .arg("--key-file")
        .arg(&short)
        .args(["info", "ix"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("32"));
    let v = env.write_npy("v.npy", &[vec![1.0, 2.0]]);
    env.owner()
        .args(["upsert", "ix", "--vectors"])
        .arg(&v)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("dimension 3, got 2"));
    env.owner()
        .args(["upsert", "ix", "--vectors", "/no/such/file.npy"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/no/such/file.npy"));
    env.owner()
        .args(["train", "ix"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("10000"));
}

/// Runs every kind of command with the key in `VECSEAL_KEY` and `-vv` logs,
/// and checks that the key shows up in no output in any spelling.
#[test]
fn the_key_never_appears_in_output_or_logs() {
    let env = Env::new();
    let raw = std::fs::read(env.path("owner.key")).unwrap_or_default();
    let hex_key = hex::encode(&raw);
    let spellings = [hex_key.clone(), hex_key.to_uppercase()];
    let mut seen = Vec::new();
    let mut run = |args: &[&str], extra: Option<&Path>| {
        let mut c = env.cmd();
        c.env("VECSEAL_KEY", &hex_key).arg("-vv").args(args);
        if let Some(p) = extra {
            c.arg(p);
        }
        let out = c.output().unwrap_or_else(|e| panic!("{e}"));
        seen.extend(out.stdout);
        seen.extend(out.stderr);
    };
    let v = env.write_npy("v.npy", &[vec![1.0, 2.0], vec![3.0, 4.0]]);
    run(&["create", "s"], None);
    run(&["upsert", "s", "--vectors"], Some(&v));
    run(&["query", "s", "--vectors"], Some(&v));
    run(&["info", "s", "--json"], None);
    run(&["get", "s", "0", "1"], None);
    run(&["users", "list", "s"], None);
    run(&["train", "s"], None);
    run(&["query-metadata", "s", "--filter", "{}"], None);
    run(&["delete", "s", "0"], None);
    run(&["drop", "s"], None);
    run(&["list"], None);
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("training needs"),
        "the commands did run: {text}"
    );
    for s in &spellings {
        assert!(!text.contains(s.as_str()), "the key leaked");
    }
    assert!(
        !seen.windows(raw.len()).any(|w| w == raw.as_slice()),
        "the raw key bytes leaked"
    );
}

/// `vecseal query … | head -1`: the reader closes the pipe early, and the
/// query still exits 0 (no "Broken pipe" error).
#[test]
fn query_into_a_closed_pipe_exits_zero() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let rows: Vec<Vec<f32>> = (0..200).map(|i| vec![i as f32, 1.0]).collect();
    let v = env.write_npy("v.npy", &rows);
    env.owner().args(["create", "p"]).assert().success();
    env.owner()
        .args(["upsert", "p", "--vectors"])
        .arg(&v)
        .assert()
        .success();
    // 4000 queries × 100 hits: megabytes, far more than a pipe buffers.
    let q = env.write_npy("q.npy", &vec![vec![0.5, 0.5]; 4000]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("vecseal"))
        .env_remove("VECSEAL_KEY")
        .arg("--data")
        .arg(env.path("data"))
        .arg("--key-file")
        .arg(env.path("owner.key"))
        .args(["query", "p", "--vectors"])
        .arg(&q)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('['), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_regex_contains_and_ordered_query_metadata() {
    let env = Env::new();
    env.owner()
        .args([
            "create",
            "kb",
            "--schema",
            r#"{"title": {"pattern": true}, "ssn": {"filterable": false}}"#,
        ])
        .assert()
        .success();
    let info = json_of(env.owner().args(["info", "kb", "--json"]));
    assert_eq!(info["fields"]["title"]["pattern"], true, "{info}");
    assert_eq!(info["fields"]["ssn"]["filterable"], false, "{info}");
    let mut rows = String::new();
    for (i, title) in ["red apple", "green apple", "blue sky", "apple pie"]
        .iter()
        .enumerate()
    {
        rows.push_str(&format!(
            "{{\"id\": \"d{i}\", \"vector\": [1.0, {i}.0], \"metadata\": {{\"title\": \"{title}\", \"rank\": {}, \"ssn\": \"{i}\"}}}}\n",
            10 - i
        ));
    }
    let jsonl = env.write("items.jsonl", &rows);
    env.owner()
        .args(["upsert", "kb", "--jsonl"])
        .arg(&jsonl)
        .assert()
        .success();
    let m = json_of(env.owner().args([
        "query-metadata",
        "kb",
        "--filter",
        r#"{"title": {"$regex": "apple$"}}"#,
        "--order-by",
        "rank",
        "--limit",
        "1",
    ]));
    assert_eq!(m, serde_json::json!({"ids": ["d1"], "count": 2}));
    let m = json_of(env.owner().args([
        "query-metadata",
        "kb",
        "--filter",
        r#"{"title": {"$contains": "apple"}}"#,
        "--order-by",
        "rank",
        "--descending",
    ]));
    assert_eq!(
        m,
        serde_json::json!({"ids": ["d0", "d1", "d3"], "count": 3})
    );
    // Refused by the schema, with the field named.
    env.owner()
        .args(["query-metadata", "kb", "--filter", r#"{"ssn": "1"}"#])
        .assert()
        .failure()
        .stderr(predicate::str::contains("\"ssn\"").and(predicate::str::contains("filterable")));
    env.owner()
        .args([
            "query-metadata",
            "kb",
            "--filter",
            r#"{"rank": {"$contains": 1}}"#,
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("\"rank\"").and(predicate::str::contains("pattern")));
    // A bad schema is refused before anything is created.
    env.owner()
        .args([
            "create",
            "bad",
            "--schema",
            r#"{"x": {"filterable": false, "pattern": true}}"#,
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("metadata schema"));
    env.owner()
        .args(["create", "bad", "--schema", r#"{"x": {"patern": true}}"#])
        .assert()
        .failure()
        .stderr(predicate::str::contains("patern"));
    assert_eq!(stdout_of(env.owner().arg("list")).trim(), "kb");
}
