// Drives the unmodified `cyborgdb` JavaScript/TypeScript SDK (0.14.0, the
// version on npm) against `vecseal serve`.
//
// Run by `cargo xtask sdk` (part of `cargo xtask ci`) with VECSEAL_URL,
// VECSEAL_ROOT and NODE_PATH set. Every step asserts what the SDK returns;
// results are compared with an exact search computed here. Exits non-zero on
// the first failure.
//
// This SDK version base64-decodes the `contents` that `get` returns, while
// the v1 protocol (and the reference service 0.18) return the stored string
// verbatim: contents given to it as bytes (which it base64-encodes) come
// back intact, plain strings do not. docs/SERVER.md says so.

"use strict";

const { Client } = require("cyborgdb");

const URL = process.env.VECSEAL_URL;
const ROOT = process.env.VECSEAL_ROOT;
const D = 8;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

// A seeded generator (mulberry32), so runs are reproducible.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

// Rows as float32 values (what the server stores), so distances compare.
function rows(n, seed) {
  const r = rng(seed);
  return Array.from({ length: n }, () =>
    Array.from({ length: D }, () => Math.fround(r())),
  );
}

function exact(data, ids, q, k) {
  const d = data.map((v) =>
    Math.sqrt(v.reduce((s, x, j) => s + (x - q[j]) * (x - q[j]), 0)),
  );
  const order = ids
    .map((_, i) => i)
    .sort((a, b) => d[a] - d[b] || (ids[a] < ids[b] ? -1 : ids[a] > ids[b] ? 1 : 0));
  return order.slice(0, k).map((i) => [ids[i], d[i]]);
}

// Awaits `promise`, which must fail with an error naming HTTP `status`.
async function rejects(promise, status, what) {
  try {
    await promise;
  } catch (e) {
    check(String(e.message).includes(String(status)), `${what}: ${e.message}`);
    return;
  }
  check(false, `${what}: no error`);
}

async function main() {
  const client = new Client({ baseUrl: URL, apiKey: ROOT });
  check((await client.getHealth()).status === "healthy", "getHealth");
  const key = client.generateKey();
  const index = await client.createIndex({
    indexName: "ts-sdk",
    indexKey: key,
    metric: "euclidean",
  });
  check((await client.listIndexes()).includes("ts-sdk"), "createIndex + listIndexes");

  // Upsert: items with metadata and byte contents, then ids + vectors.
  const data = rows(300, 7);
  const ids = data.map((_, i) => String(i));
  await index.upsert({
    items: data.slice(0, 100).map((v, i) => ({
      id: ids[i],
      vector: v,
      contents: Buffer.from(`doc ${i}`),
      metadata: { n: i, even: i % 2 === 0 },
    })),
  });
  await index.upsert({ ids: ids.slice(100), vectors: data.slice(100) });
  const listed = await index.listIds();
  check(
    JSON.stringify([...listed.ids].sort((a, b) => a - b)) === JSON.stringify(ids) &&
      listed.count === 300,
    "upsert (items, ids + vectors) + listIds",
  );
  const config = await index.getIndexConfig();
  check(config.dimension === D, `dimension ${config.dimension} from describe`);
  check((await index.isTrained()) === false, "isTrained before train");

  // Queries: one vector, a batch, with include and a filter.
  const qs = rows(3, 11);
  const want = exact(data, ids, qs[0], 10);
  const one = await index.query({ queryVectors: qs[0], topK: 10, include: ["distance"] });
  check(
    JSON.stringify(one.results.map((r) => r.id)) === JSON.stringify(want.map((w) => w[0])),
    "query of one vector equals exact search",
  );
  check(
    one.results.every((r, i) => Math.abs(r.distance - want[i][1]) <= 1e-4 * (1 + want[i][1])),
    "distances are euclidean",
  );
  const batch = await index.query({ queryVectors: qs, topK: 5 });
  check(
    batch.results.length === 3 &&
      batch.results.every(
        (row, i) =>
          JSON.stringify(row.map((r) => r.id)) ===
          JSON.stringify(exact(data, ids, qs[i], 5).map((w) => w[0])),
      ),
    "batch query is nested, each row exact",
  );
  const evens = data.slice(0, 100).filter((_, i) => i % 2 === 0);
  const evenIds = ids.slice(0, 100).filter((_, i) => i % 2 === 0);
  const filtered = await index.query({
    queryVectors: qs[1],
    topK: 5,
    filters: { even: { $eq: true } },
    include: ["metadata"],
  });
  check(
    JSON.stringify(filtered.results.map((r) => r.id)) ===
      JSON.stringify(exact(evens, evenIds, qs[1], 5).map((w) => w[0])) &&
      filtered.results.every((r) => r.metadata.even === true),
    "filtered query ($eq) equals exact search over the matches, with metadata",
  );

  // Get: vectors, byte contents and metadata.
  const got = await index.get({ ids: ["3", "150"], include: ["vector", "contents", "metadata"] });
  check(
    got.length === 2 &&
      got[0].id === "3" &&
      JSON.stringify(got[0].vector) === JSON.stringify(data[3]) &&
      got[0].contents === "doc 3" &&
      got[0].metadata.n === 3 &&
      JSON.stringify(got[1].vector) === JSON.stringify(data[150]),
    "get returns vectors, byte contents and metadata",
  );

  // Delete.
  await index.delete({ ids: ["0", "1"] });
  check((await index.listIds()).count === 298, "delete");

  // Train (vecseal trains on at least 10 000 vectors), then query again.
  const more = rows(10000, 13);
  for (let s = 0; s < more.length; s += 2500) {
    await index.upsert({
      ids: more.slice(s, s + 2500).map((_, i) => `m${s + i}`),
      vectors: more.slice(s, s + 2500),
    });
  }
  await index.train({ nLists: 16, maxIters: 10 });
  check((await index.isTrained()) === true, "train + isTrained");
  // This SDK sends no API key on training-status, an admin route: with a
  // root key configured it is refused, as by the reference service.
  await rejects(client.isTraining(), 401, "isTraining (no API key sent) is 401");
  const allIds = ids.slice(2).concat(more.map((_, i) => `m${i}`));
  const allData = data.slice(2).concat(more);
  const trained = await index.query({ queryVectors: qs[2], topK: 10, nProbes: 16 });
  check(
    JSON.stringify(trained.results.map((r) => r.id)) ===
      JSON.stringify(exact(allData, allIds, qs[2], 10).map((w) => w[0])),
    "trained query probing every list equals exact search",
  );

  // Keys: the right one loads, a wrong one is refused.
  const again = await client.loadIndex({ indexName: "ts-sdk", indexKey: key });
  check((await again.listIds()).count === 10298, "loadIndex with the key");
  await rejects(
    client.loadIndex({ indexName: "ts-sdk", indexKey: client.generateKey() }),
    401,
    "loadIndex with a wrong key is 401",
  );

  await index.deleteIndex();
  check(!(await client.listIndexes()).includes("ts-sdk"), "deleteIndex");
}

main().then(() => console.log("the cyborgdb JavaScript/TypeScript SDK passed against vecseal serve")).catch((e) => {
  console.error("FAIL:", e);
  process.exit(1);
});
