"""Drives the unmodified cyborgdb==0.18.0 Python SDK against `vecseal serve`.

Run by `cargo xtask sdk` (part of `cargo xtask ci`) with VECSEAL_URL and
VECSEAL_ROOT set. Every step asserts what the SDK returns; results of the
untrained index are compared with an exact search computed here in numpy.
Exits non-zero on the first failure.
"""

import os
import sys

import numpy as np
import cyborgdb
from cyborgdb.exceptions import AuthenticationError, NotFoundError, ValidationError

URL = os.environ["VECSEAL_URL"]
ROOT = os.environ["VECSEAL_ROOT"]
D = 16


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def exact(data, ids, q, k):
    d = np.sqrt(((data - q) ** 2).sum(axis=1))
    order = sorted(range(len(ids)), key=lambda i: (d[i], ids[i]))[:k]
    return [ids[i] for i in order], [float(d[i]) for i in order]


def main():
    rng = np.random.default_rng(42)
    client = cyborgdb.Client(base_url=URL, api_key=ROOT)
    check(client.get_health()["status"] == "healthy", "get_health")
    key = client.generate_key()
    idx = client.create_index(
        index_name="sdk",
        index_key=key,
        metric="euclidean",
        metadata_schema={"title": {"filterable": True, "pattern": True}},
    )
    check("sdk" in client.list_indexes(), "create_index + list_indexes")

    # Upsert: dicts, ids + lists, ids + numpy (binary route).
    data = rng.standard_normal((300, D)).astype(np.float32)
    ids = [str(i) for i in range(300)]
    idx.upsert(
        [
            {
                "id": ids[i],
                "vector": data[i].tolist(),
                "contents": f"doc {i}",
                "metadata": {"n": i, "title": f"title-{i}", "even": i % 2 == 0},
            }
            for i in range(100)
        ]
    )
    idx.upsert(ids[100:200], data[100:200].tolist())
    idx.upsert(ids[200:], data[200:])
    check(sorted(idx.list_ids(), key=int) == ids, "upsert (dicts, lists, numpy) + list_ids")
    check(idx.dimension == D, "dimension from describe")

    # Queries: numpy 1-D, 2-D (one and many rows), lists, with include and filters.
    q = rng.standard_normal((3, D)).astype(np.float32)
    want_ids, want_d = exact(data, ids, q[0], 10)
    got = idx.query(query_vectors=q[0], top_k=10, include=["distance"])
    check([r["id"] for r in got] == want_ids, "query numpy 1-D equals exact search")
    check(
        np.allclose([r["distance"] for r in got], want_d, rtol=1e-4, atol=1e-5),
        "distances are euclidean",
    )
    got = idx.query(query_vectors=q, top_k=5)
    check(len(got) == 3 and all(len(r) == 5 for r in got), "query numpy 2-D is nested")
    for row in range(3):
        check([r["id"] for r in got[row]] == exact(data, ids, q[row], 5)[0], f"batch row {row} exact")
    got = idx.query(query_vectors=q[:1], top_k=4)
    check(isinstance(got[0], dict) and len(got) == 4, "2-D array of one row is flat")
    got = idx.query(query_vectors=q[1].tolist(), top_k=3)
    check([r["id"] for r in got] == exact(data, ids, q[1], 3)[0], "query with a list")
    got = idx.query(query_vectors=q.tolist(), top_k=2)
    check(len(got) == 3 and len(got[2]) == 2, "query with a list of lists is nested")
    got = idx.query(
        query_vectors=q[0], top_k=5, filters={"even": True}, include=["metadata", "distance"]
    )
    even = [i for i in range(100) if i % 2 == 0]
    want = exact(data[even], [ids[i] for i in even], q[0], 5)[0]
    check([r["id"] for r in got] == want, "filtered query equals exact search over the matches")
    check(all(r["metadata"]["even"] for r in got), "include metadata")
    got = idx.query(query_vectors=q[0], top_k=3)
    check(all(set(r) == {"id"} for r in got), "default include returns ids only")

    # get, delete.
    got = idx.get(["5", "nope", "150"])
    check([g["id"] for g in got] == ["5", "150"], "get skips missing ids, keeps order")
    check(got[0]["contents"] == "doc 5" and got[0]["metadata"]["n"] == 5, "get contents + metadata")
    check(np.allclose(got[1]["vector"], data[150]), "get vector")
    idx.delete(["0", "1"])
    check(len(idx.list_ids()) == 298, "delete")

    # query_metadata.
    rows = idx.query_metadata(filters={"title": {"$regex": "title-1[0-9]$"}}, order_by="n", ascending=False)
    check([r["id"] for r in rows] == [str(i) for i in range(19, 9, -1)], "query_metadata $regex, ordered")
    rows = idx.query_metadata(filters={"n": {"$lt": 10}}, top_k=3, order_by={"n": 1})
    check([r["id"] for r in rows] == ["2", "3", "4"], "query_metadata order_by dict + top_k")

    # Train (blocking) and is_trained.
    big = rng.standard_normal((10_000, D)).astype(np.float32)
    idx.upsert([f"b{i}" for i in range(10_000)], big)
    check(not idx.is_trained(), "untrained before train")
    idx.train(n_lists=32)
    check(idx.is_trained() and idx.n_lists == 32, "train + is_trained + n_lists")
    check(not idx.is_training(), "is_training after train")
    got = idx.query(query_vectors=big[7], top_k=1)
    check(got[0]["id"] == "b7", "trained query finds a stored vector")

    # Users: tokens with the root key; a read-only token is refused on upsert.
    reader = idx.create_user(["read"])
    check(reader["api_key"].startswith("cdbk_"), "create_user")
    check(any(u["user_id"] == reader["user_id"] for u in idx.list_users()), "list_users")
    ridx = cyborgdb.Client(base_url=URL, api_key=reader["api_key"]).load_index("sdk")
    check(ridx.query(query_vectors=big[7], top_k=1)[0]["id"] == "b7", "read token queries")
    try:
        ridx.upsert(["x"], np.zeros((1, D), dtype=np.float32))
        check(False, "read-only token refused on upsert")
    except AuthenticationError:
        check(True, "read-only token refused on upsert")
    idx.delete_user(reader["user_id"])
    try:
        ridx.query(query_vectors=big[7], top_k=1)
        check(False, "revoked token refused")
    except AuthenticationError:
        check(True, "revoked token refused")

    # Errors: wrong key, unknown index, bad dimension.
    try:
        client.load_index("sdk", client.generate_key())
        check(False, "wrong key refused")
    except AuthenticationError:
        check(True, "wrong key refused")
    try:
        client.load_index("missing", key)
        check(False, "unknown index")
    except NotFoundError:
        check(True, "unknown index")
    try:
        idx.query(query_vectors=np.zeros(D + 1, dtype=np.float32))
        check(False, "dimension mismatch")
    except ValidationError:
        check(True, "dimension mismatch")

    idx.delete_index()
    check("sdk" not in client.list_indexes(), "delete_index")
    print("the cyborgdb SDK passed against vecseal serve")


if __name__ == "__main__":
    main()
