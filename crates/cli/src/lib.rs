//! The `.npy` files of the `vecseal` command (`upsert --npy`, `demo --npy`),
//! shared with the benchmark harness: float32 reading and writing through
//! `npyz`. Data sets are fetched by `cargo xtask` (with pip), never here.
//!
//! The command itself is the `vecseal` binary of this package.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod npy {
    //! Float32 `.npy` files of shape `(n, d)`.

    use std::path::Path;

    use anyhow::{bail, Context, Result};

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
