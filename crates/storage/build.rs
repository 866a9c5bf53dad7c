//! No build step. This script exists for its `[build-dependencies]`: they
//! pin the features of crates that RocksDB's build script depends on, so
//! that `cargo test -p <any member>` resolves `librocksdb-sys` exactly as
//! the whole workspace does and does not compile RocksDB's C++ a second
//! time (`cargo xtask tidy` checks this on cargo's unit graph).
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
