//! Seal and open throughput at 256 B, 4 KiB and 64 KiB for both suites.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vecseal_envelope::{Sealer, SecretKey, Suite};

fn bench(c: &mut Criterion) {
    let key = SecretKey::from_bytes(&[7u8; 32]).unwrap_or_else(|_| unreachable!());
    let mut g = c.benchmark_group("envelope");
    for suite in [Suite::Aes256Gcm, Suite::XChaCha20Poly1305] {
        let s = Sealer::new(&key, suite);
        for size in [256usize, 4096, 65536] {
            let pt = vec![0xA5u8; size];
            let sealed = s.seal(b"aad", &pt).unwrap_or_default();
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("seal/{suite}"), size),
                &pt,
                |b, pt| b.iter(|| s.seal(b"aad", pt)),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("open/{suite}"), size),
                &sealed,
                |b, ct| b.iter(|| s.open(b"aad", ct)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
