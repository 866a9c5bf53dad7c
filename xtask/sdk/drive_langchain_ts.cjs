// Drives the LangChain integration of the unmodified `cyborgdb`
// JavaScript/TypeScript SDK (0.14.0), `CyborgVectorStore`, against
// `vecseal serve`, with @langchain/core's deterministic synthetic embeddings
// (no model, no network). Run by `cargo xtask sdk` with VECSEAL_URL,
// VECSEAL_ROOT and NODE_PATH set; exits non-zero on the first failure.

"use strict";

const { CyborgVectorStore } = require("cyborgdb");
const { SyntheticEmbeddings } = require("@langchain/core/utils/testing");

const URL = process.env.VECSEAL_URL;
const ROOT = process.env.VECSEAL_ROOT;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function main() {
  const embeddings = new SyntheticEmbeddings({ vectorSize: 16 });
  const store = new CyborgVectorStore(embeddings, {
    baseUrl: URL,
    apiKey: ROOT,
    indexName: "ts-langchain",
    indexKey: CyborgVectorStore.generateKey(),
    metric: "euclidean",
    dimension: 16,
  });
  const texts = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "encrypted vectors at rest",
    "nearest neighbours, exactly",
  ];
  const ids = await store.addDocuments(
    texts.map((t, i) => ({ pageContent: t, metadata: { n: i, odd: i % 2 === 1 } })),
  );
  check(Array.isArray(ids) && ids.length === 4, "addDocuments returns an id per document");
  check((await store.listIds()).length === 4, "listIds");

  // Each text finds itself first (synthetic embeddings are deterministic).
  for (const [i, t] of texts.entries()) {
    const [[doc, score]] = await store.similaritySearchWithScore(t, 1);
    check(doc.pageContent === t && doc.metadata.n === i && score === 1, `search finds "${t}" first`);
  }
  const odd = await store.similaritySearch(texts[0], 4, { odd: { $eq: true } });
  check(
    odd.length === 2 && odd.every((d) => d.metadata.odd === true),
    "a filtered search returns only matching documents",
  );
  const got = await store.get([ids[2]]);
  check(got.length === 1 && got[0].pageContent === texts[2], "get by id");
  const retrieved = await store.asRetriever({ k: 2 }).invoke(texts[3]);
  check(retrieved[0].pageContent === texts[3], "asRetriever().invoke");

  await store.delete({ ids: [ids[0]] });
  check((await store.listIds()).length === 3, "delete");
  await store.index.deleteIndex();
}

main().then(() => console.log("the cyborgdb JavaScript/TypeScript LangChain integration passed against vecseal serve")).catch((e) => {
  console.error("FAIL:", e);
  process.exit(1);
});
