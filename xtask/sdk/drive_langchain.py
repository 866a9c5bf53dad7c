"""Drives the cyborgdb==0.18.0 SDK's LangChain integration (CyborgVectorStore)
against `vecseal serve`, unmodified.

Run by `cargo xtask sdk` (part of `cargo xtask ci`) after drive_sdk.py, with
VECSEAL_URL and VECSEAL_ROOT set. Embeddings come from langchain-core's
DeterministicFakeEmbedding (one fixed vector per text), so a text queried
for is its own nearest neighbour. Exits non-zero on the first failure.
"""

import os
import sys

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from cyborgdb import Client
from cyborgdb.integrations.langchain import CyborgVectorStore

URL = os.environ["VECSEAL_URL"]
ROOT = os.environ["VECSEAL_ROOT"]


def check(cond, what):
    if not cond:
        print(f"FAIL: langchain: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: langchain: {what}")


def main():
    texts = [f"document number {i} about topic {i % 3}" for i in range(30)]
    store = CyborgVectorStore(
        index_name="langchain",
        index_key=CyborgVectorStore.generate_key(),
        api_key=ROOT,
        base_url=URL,
        embedding=DeterministicFakeEmbedding(size=32),
        metric="cosine",
    )
    ids = store.add_texts(texts[:20], metadatas=[{"topic": i % 3, "n": i} for i in range(20)])
    ids += store.add_documents(
        [Document(page_content=t, metadata={"topic": i % 3, "n": 20 + i}) for i, t in enumerate(texts[20:])]
    )
    check(len(ids) == 30 and sorted(store.list_ids()) == sorted(ids), "add_texts + add_documents")

    docs = store.similarity_search(texts[7], k=3)
    check(docs[0].page_content == texts[7] and docs[0].metadata["n"] == 7, "similarity_search finds the text")
    scored = store.similarity_search_with_score(texts[25], k=2)
    check(scored[0][0].page_content == texts[25], "similarity_search_with_score finds the document")
    check(scored[0][1] >= scored[1][1], "scores are ordered best first")

    hits = store.similarity_search(texts[4], k=5, filter={"topic": 1})
    check(len(hits) == 5 and all(d.metadata["topic"] == 1 for d in hits), "filter on metadata")
    check(hits[0].page_content == texts[4], "filtered search still finds the text")
    hits = store.similarity_search(texts[4], k=30, filter={"topic": 1, "n": {"$gte": 10}})
    check(all(d.metadata["topic"] == 1 and d.metadata["n"] >= 10 for d in hits), "two-field filter")
    check(len(hits) == 7, "two-field filter finds every match")

    got = store.get([ids[3], ids[28]])
    check([d.page_content for d in got] == [texts[3], texts[28]], "get by id")

    retriever = store.as_retriever(search_kwargs={"k": 1})
    check(retriever.invoke(texts[12])[0].page_content == texts[12], "as_retriever().invoke")

    check(store.delete(ids=[ids[0], ids[1]]), "delete ids")
    check(len(store.list_ids()) == 28, "deleted ids are gone")
    check(store.delete(delete_index=True), "delete the index")
    check("langchain" not in Client(base_url=URL, api_key=ROOT).list_indexes(), "index is gone")
    print("the cyborgdb LangChain integration passed against vecseal serve")


if __name__ == "__main__":
    main()
