//! A throwaway PostgreSQL cluster for the tests: Debian's `postgresql`
//! package (installed when missing), a cluster in a temporary folder
//! owned by an unprivileged user (PostgreSQL refuses to run as root),
//! reachable only through a Unix socket in that folder, stopped and
//! removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The environment variable the tests read: a connection string of a
/// PostgreSQL server they may create schemas in. Set it to use a server of
/// your own instead of a throwaway cluster.
pub(crate) const TEST_PG: &str = "VECSEAL_TEST_PG";

/// The environment variable of the same server reached over TCP with TLS
/// (its certificate's authority in the URL's `sslrootcert`): throwaway
/// clusters only.
pub(crate) const TEST_PG_TLS: &str = "VECSEAL_TEST_PG_TLS";

/// The environment variable of a program that restarts the tests' server
/// (set for a throwaway cluster only: the restart test runs with it).
pub(crate) const TEST_PG_RESTART: &str = "VECSEAL_TEST_PG_RESTART";

/// A running throwaway cluster.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    user: Option<String>,
    /// Its connection string (socket, port, superuser `postgres`).
    pub(crate) url: String,
    /// A script that restarts it (fast shutdown: open connections end).
    pub(crate) restart: PathBuf,
    /// Its connection string over TCP on 127.0.0.1 with TLS, when the
    /// `openssl` tool could make it a certificate.
    pub(crate) tls_url: Option<String>,
}

impl Cluster {
    /// Installs PostgreSQL if needed and starts a cluster.
    pub(crate) fn start() -> Result<Self> {
        crate::ensure_apt("postgresql")?;
        let bin = server_bin()?;
        // As root, run the server as `nobody`; otherwise as ourselves.
        let user = is_root().then(|| "nobody".to_owned());
        let dir = std::env::temp_dir().join(format!("vecseal-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if let Some(u) = &user {
            crate::run(Command::new("chown").arg(u).arg(&dir))?;
        }
        let port = free_port()?;
        // A URL (what `vecseal --store` takes), the socket folder
        // percent-encoded as its host.
        let host = dir.display().to_string().replace('/', "%2F");
        let mut cluster = Self {
            url: format!("postgresql://postgres@{host}:{port}/postgres"),
            restart: dir.join("restart.sh"),
            tls_url: None,
            bin,
            dir,
            user,
        };
        let data = cluster.dir.join("data");
        cluster.as_owner(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let mut options = format!(
            "-c listen_addresses= -c unix_socket_directories={} -p {port} -c max_connections=200",
            cluster.dir.display()
        );
        // TLS on 127.0.0.1 too, with a certificate of its own (the TLS
        // test's): the socket stays the others' way in.
        let (cert, key) = (
            cluster.dir.join("server.crt"),
            cluster.dir.join("server.key"),
        );
        let ca = cluster.dir.join("ca.crt");
        let made = make_certificates(&cluster.dir, &ca, &cert, &key);
        if made {
            if let Some(u) = &cluster.user {
                crate::run(Command::new("chown").arg(u).arg(&cert).arg(&key))?;
            }
            crate::run(Command::new("chmod").arg("600").arg(&key))?;
            options = options.replace("listen_addresses=", "listen_addresses=127.0.0.1");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
            let ca = ca.display().to_string().replace('/', "%2F");
            cluster.tls_url = Some(format!(
                "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
            ));
        }
        cluster.as_owner(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &cluster.dir.join("log").to_string_lossy(),
                "-w",
                "start",
            ],
        )?;
        let pg_ctl = cluster.bin.join("pg_ctl");
        let run_as = match &cluster.user {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        std::fs::write(
            &cluster.restart,
            format!(
                "#!/bin/sh\nexec {run_as}{} -D {} -m fast -w restart >/dev/null\n",
                pg_ctl.display(),
                data.display()
            ),
        )?;
        crate::run(Command::new("chmod").arg("755").arg(&cluster.restart))?;
        eprintln!("xtask: PostgreSQL running for the tests at {}", cluster.url);
        Ok(cluster)
    }

    /// Runs `tool` of the server's binaries as the cluster's owner.
    fn as_owner(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(&self.dir);
        let out = cmd
            .output()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} failed with {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.as_owner(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority (`ca`) and a server certificate it signed for
/// 127.0.0.1 and localhost (`cert`, `key`), made with the `openssl` tool in
/// `dir`; whether that worked.
fn make_certificates(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> bool {
    let (ca_key, csr, ext) = (
        dir.join("ca.key"),
        dir.join("server.csr"),
        dir.join("ext.cnf"),
    );
    let openssl = |args: &[&std::ffi::OsStr]| {
        Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let os = std::ffi::OsStr::new;
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").is_ok()
        && openssl(&[
            os("req"),
            os("-x509"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-days"),
            os("2"),
            os("-subj"),
            os("/CN=vecseal test authority"),
            os("-keyout"),
            ca_key.as_os_str(),
            os("-out"),
            ca.as_os_str(),
        ])
        && openssl(&[
            os("req"),
            os("-newkey"),
            os("rsa:2048"),
            os("-nodes"),
            os("-subj"),
            os("/CN=localhost"),
            os("-keyout"),
            key.as_os_str(),
            os("-out"),
            csr.as_os_str(),
        ])
        && openssl(&[
            os("x509"),
            os("-req"),
            os("-in"),
            csr.as_os_str(),
            os("-CA"),
            ca.as_os_str(),
            os("-CAkey"),
            ca_key.as_os_str(),
            os("-CAcreateserial"),
            os("-days"),
            os("2"),
            os("-extfile"),
            ext.as_os_str(),
            os("-out"),
            cert.as_os_str(),
        ])
}

/// The newest installed server's `bin` folder (`/usr/lib/postgresql/N/bin`).
fn server_bin() -> Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .with_context(|| format!("no PostgreSQL server under {}", base.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("no initdb under {}", base.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port no one listens on now (the socket file's name carries it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
