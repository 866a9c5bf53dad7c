"""The plaintext faiss side of `cargo xtask bench` (run by the harness).

Reads .npy files the harness wrote, runs faiss-cpu on the same machine with
the same thread count, and prints one JSON object on stdout.

  faiss_baseline.py kmeans DATA.npy K ITERS MAX_POINTS_PER_CENTROID SEED
  faiss_baseline.py ivf BASE.npy QUERIES.npy NLIST ITERS PROBES(comma list) TOPK METRIC
"""

import json
import sys
import time

import faiss
import numpy as np

# Each timed query batch runs at least REPEATS times and on until TIMED_SECS
# have passed (at most MOST_RUNS times), and the fastest counts, on both
# sides of the comparison (the harness's `best_of`): the machine is shared
# and noisy.
REPEATS = 3
TIMED_SECS = 0.3
MOST_RUNS = 200


def kmeans(path, k, iters, max_pts, seed):
    x = np.ascontiguousarray(np.load(path), dtype=np.float32)
    d = x.shape[1]
    km = faiss.Kmeans(d, k, niter=iters, seed=seed, max_points_per_centroid=max_pts,
                      verbose=False)
    t = time.perf_counter()
    km.train(x)
    train_s = time.perf_counter() - t
    # Assign every point, as vecseal-kmeans's fit does, and measure the
    # inertia of all points against the final centroids.
    t = time.perf_counter()
    dist, _ = km.index.search(x, 1)
    assign_s = time.perf_counter() - t
    return {"train_s": train_s, "assign_s": assign_s, "total_s": train_s + assign_s,
            "iterations": len(km.obj), "inertia": float(dist.astype(np.float64).sum())}


def ivf(base_path, query_path, nlist, iters, probes, topk, metric):
    xb = np.ascontiguousarray(np.load(base_path), dtype=np.float32)
    xq = np.ascontiguousarray(np.load(query_path), dtype=np.float32)
    d = xb.shape[1]
    if metric == "cosine":
        faiss.normalize_L2(xb)
        faiss.normalize_L2(xq)
        mt = faiss.METRIC_INNER_PRODUCT
        flat = faiss.IndexFlatIP(d)
    else:
        mt = faiss.METRIC_L2
        flat = faiss.IndexFlatL2(d)
    flat.add(xb)
    t = time.perf_counter()
    _, truth = flat.search(xq, topk)
    exact_s = time.perf_counter() - t
    quantizer = faiss.IndexFlatIP(d) if mt == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, mt)
    index.cp.niter = iters
    t = time.perf_counter()
    index.train(xb)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    index.add(xb)
    add_s = time.perf_counter() - t
    out = {"exact_qps": len(xq) / exact_s, "train_s": train_s, "add_s": add_s,
           "add_per_s": len(xb) / add_s, "sweep": sweep_of(index, xq, truth, probes, topk)}
    # The scalar quantizers at the same number of lists (their own training).
    for name, qt in [("sq_fp16", faiss.ScalarQuantizer.QT_fp16),
                     ("sq8", faiss.ScalarQuantizer.QT_8bit)]:
        q = faiss.IndexFlatIP(d) if mt == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
        sq = faiss.IndexIVFScalarQuantizer(q, d, nlist, qt, mt)
        sq.cp.niter = iters
        sq.train(xb)
        sq.add(xb)
        out[name] = sweep_of(sq, xq, truth, probes, topk)
    return out


def sweep_of(index, xq, truth, probes, topk):
    """Recall@topk and QPS (the fastest batch, see REPEATS) at each number
    of probes."""
    sweep = []
    for p in probes:
        index.nprobe = p
        s = float("inf")
        started, runs = time.perf_counter(), 0
        while runs < REPEATS or (time.perf_counter() - started < TIMED_SECS
                                 and runs < MOST_RUNS):
            t = time.perf_counter()
            _, got = index.search(xq, topk)
            s = min(s, time.perf_counter() - t)
            runs += 1
        hits = sum(len(set(g) & set(e)) for g, e in zip(got.tolist(), truth.tolist()))
        sweep.append({"n_probes": p, "recall_at_10": hits / (len(xq) * topk),
                      "qps": len(xq) / s})
    return sweep


def main():
    faiss.omp_set_num_threads(int(__import__("os").environ.get("FAISS_THREADS", "2")))
    mode = sys.argv[1]
    if mode == "kmeans":
        out = kmeans(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                     int(sys.argv[6]))
    elif mode == "ivf":
        probes = [int(p) for p in sys.argv[6].split(",")]
        out = ivf(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), probes,
                  int(sys.argv[7]), sys.argv[8])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
