"""The RAG integrations inside real pipelines: a LangChain RAG chain over a BM25
retriever (langchain-community + rank_bm25) and a LlamaIndex query engine over a BM25
retriever (llama-index-retrievers-bm25) and a vector index, reporting every retrieval
through the SDK to a real server (uvicorn); the events and rollups land in the DB."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_community.retrievers import BM25Retriever as LangChainBM25
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from llama_index.core import MockEmbedding, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode
from llama_index.retrievers.bm25 import BM25Retriever as LlamaBM25
from pydantic import Field
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.integrations.chunks import MissingChunkMetadataWarning
from api.integrations.langchain import RetrieverRun, UsefirstCallbackHandler
from api.integrations.llamaindex import instrument
from api.sdk import AsyncUsageReporter, AsyncUsefirstClient, UsageReporter, UsefirstClient
from tests.api.conftest import ApiPrincipal
from tests.api.support import LiveServer, team_with_model
from tests.ledger import factories

# A tiny corpus: two registered datasets, one confirmed for training only, and pages
# from the open web that carry no usefirst metadata.
ASTRONOMY = [
    "The Moon orbits the Earth every 27 days and shows phases as it moves.",
    "Mars is a red planet with two small moons named Phobos and Deimos.",
    "Jupiter is the largest planet and has a great red storm.",
    "Saturn has bright rings made of ice and rock.",
]
GARDENING = [
    "Tomatoes need full sun and regular watering to grow well.",
    "Roses are pruned in late winter before new growth starts.",
    "Compost improves soil and feeds the plants in the garden.",
]
TRAIN_ONLY = ["Comets have icy nuclei and long tails that point away from the Sun."]
WEB = ["A blog post about planets, moons and the red planet Mars."]
QUESTIONS = [
    "Which planet has rings of ice?",
    "How often does the Moon orbit the Earth?",
    "When are roses pruned?",
    "What do tomatoes need to grow?",
    "What are the moons of the red planet Mars?",
    "How does compost help the garden soil?",
]


@dataclass
class World:
    team: ApiPrincipal
    model_id: uuid.UUID
    astronomy: uuid.UUID
    gardening: uuid.UUID
    train_only: uuid.UUID

    def corpus(self) -> list[tuple[str, dict[str, Any]]]:
        """(text, metadata) pairs; LangChain and LlamaIndex build their documents from it."""
        out: list[tuple[str, dict[str, Any]]] = []
        for dataset, texts, key in (
            (self.astronomy, ASTRONOMY, "usefirst"),
            (self.gardening, GARDENING, "plain"),
            (self.train_only, TRAIN_ONLY, "usefirst"),
        ):
            for i, body in enumerate(texts):
                # Both spellings of the metadata keys are accepted.
                metadata = (
                    {"usefirst_dataset_id": str(dataset), "usefirst_chunk_id": f"c{i}"}
                    if key == "usefirst"
                    else {"dataset_id": str(dataset), "chunk_id": f"c{i}"}
                )
                out.append((body, metadata))
        out.extend((body, {"source": "https://example.org/blog"}) for body in WEB)
        return out


@pytest.fixture
def world(principal: Callable[..., ApiPrincipal], db_engine: Engine) -> World:
    uses = (factories.BOTH, factories.RAG, factories.TRAIN)
    made = team_with_model(principal, db_engine, uses)
    return World(made.team, made.model_id, *made.datasets)


@pytest.fixture(scope="module")
def server(database: Any) -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


@pytest.fixture
def reporter(server: LiveServer, world: World) -> Iterator[UsageReporter]:
    with (
        UsefirstClient(server.url, world.team.key) as sdk,
        UsageReporter(sdk, world.model_id, flush_interval_s=0.1) as usage,
    ):
        yield usage


def stored_retrievals(db_engine: Engine, model_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """query_id → {chunk_ids, dataset_ids, scores} of the stored retrieval events."""
    with Session(db_engine) as session:
        rows = session.execute(
            text(
                "SELECT query_id, chunk_ids, dataset_ids, chunk_scores "
                "FROM usage_retrieval_event WHERE model_id = :m"
            ),
            {"m": model_id},
        ).all()
    return {
        r.query_id: {
            "chunks": list(zip([str(d) for d in r.dataset_ids], r.chunk_ids, strict=True)),
            "scores": r.chunk_scores,
        }
        for r in rows
    }


def rag_hits(db_engine: Engine, model_id: uuid.UUID) -> dict[str, int]:
    with Session(db_engine) as session:
        rows = session.execute(
            text(
                "SELECT dataset_id, sum(quantity) FROM usage_rollup "
                "WHERE model_id = :m AND kind = 'rag' GROUP BY dataset_id"
            ),
            {"m": model_id},
        ).all()
    return {str(dataset): int(hits) for dataset, hits in rows}


def quarantined(db_engine: Engine, model_id: uuid.UUID) -> list[str]:
    with Session(db_engine) as session:
        return list(
            session.execute(
                text("SELECT reason_code FROM usage_quarantine WHERE model_id = :m"),
                {"m": model_id},
            ).scalars()
        )


def usefirst_chunks(metadatas: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What the handlers should report for retrieved documents, in rank order."""
    out = []
    for m in metadatas:
        dataset = m.get("usefirst_dataset_id") or m.get("dataset_id")
        chunk = m.get("usefirst_chunk_id") or m.get("chunk_id")
        if dataset and chunk:
            out.append((dataset, chunk))
    return out


# --- LangChain -------------------------------------------------------------------------


class RetrieverRuns(BaseCallbackHandler):
    """Records what each retriever run returned, to compare with what was reported."""

    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, Any]]] = {}

    def on_retriever_end(self, documents: Any, *, run_id: uuid.UUID, **kwargs: Any) -> None:
        self.runs[str(run_id)] = [dict(d.metadata) for d in documents]


def rag_chain(world: World) -> Runnable[str, str]:
    documents = [Document(page_content=t, metadata=m) for t, m in world.corpus()]
    retriever = LangChainBM25.from_documents(documents, k=3)
    prompt = PromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    llm = FakeListLLM(responses=["An answer from the context."])

    def join(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    return (
        {"context": retriever | RunnableLambda(join), "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )


def test_langchain_chain_reports_each_retrieval(
    reporter: UsageReporter, world: World, db_engine: Engine
) -> None:
    chain = rag_chain(world)
    runs = RetrieverRuns()
    handler = UsefirstCallbackHandler(reporter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for question in QUESTIONS:
            assert chain.invoke(question, config={"callbacks": [handler, runs]})
        # Concurrent runs (threads) and an async run go through the same handler.
        chain.batch(QUESTIONS[:3], config={"callbacks": [handler, runs]})
        asyncio.run(chain.ainvoke(QUESTIONS[4], config={"callbacks": [handler, runs]}))
    assert reporter.flush(timeout_s=20)

    expected = {run: usefirst_chunks(metas) for run, metas in runs.runs.items()}
    assert len(expected) == len(QUESTIONS) + 4
    reported = {run: chunks for run, chunks in expected.items() if chunks}
    train_only = {run for run, chunks in reported.items() if str(world.train_only) in str(chunks)}
    stored = stored_retrievals(db_engine, world.model_id)
    # Query id = the retriever's run id; chunks in retrieval order, unlabelled ones skipped.
    assert {q: s["chunks"] for q, s in stored.items()} == {
        run: chunks for run, chunks in reported.items() if run not in train_only
    }
    stats = reporter.stats
    assert stats.accepted == len(reported) - len(train_only)
    # A retrieval that used a train-only dataset is rejected and kept for review.
    assert stats.rejected == len(train_only)
    assert quarantined(db_engine, world.model_id) == ["use_not_allowed"] * len(train_only)
    hits = rag_hits(db_engine, world.model_id)
    assert sum(hits.values()) == sum(len(c) for c in stored.values())
    assert set(hits) <= {str(world.astronomy), str(world.gardening)}
    # The web page was retrieved for the Mars questions and never silently dropped.
    skipped = [w for w in caught if issubclass(w.category, MissingChunkMetadataWarning)]
    assert skipped and "have no usefirst metadata" in str(skipped[0].message)
    assert any(m.get("source") for metas in runs.runs.values() for m in metas), (
        "the corpus should make BM25 return the unlabelled page"
    )


def test_langchain_custom_query_id_and_nothing_to_report(
    reporter: UsageReporter, world: World, db_engine: Engine
) -> None:
    web_only = LangChainBM25.from_documents(
        [Document(page_content=t, metadata={}) for t in [*WEB, "Another page."]], k=2
    )
    handler = UsefirstCallbackHandler(
        reporter, query_id=lambda run: f"{run.metadata.get('conversation')}:{run.query}"
    )
    with pytest.warns(MissingChunkMetadataWarning, match="nothing was reported"):
        web_only.invoke("Mars", config={"callbacks": [handler]})
    assert reporter.flush(timeout_s=20) and reporter.stats.enqueued == 0

    retriever = LangChainBM25.from_documents(
        [Document(page_content=t, metadata=m) for t, m in world.corpus()[:4]], k=2
    )
    config: Any = {"callbacks": [handler], "metadata": {"conversation": "conv-7"}}
    retriever.invoke("Which planet has rings?", config=config)
    assert reporter.flush(timeout_s=20)
    assert list(stored_retrievals(db_engine, world.model_id)) == ["conv-7:Which planet has rings?"]
    assert isinstance(RetrieverRun(uuid.uuid4(), None, "q"), RetrieverRun)


def test_langchain_with_the_async_reporter(
    server: LiveServer, world: World, db_engine: Engine
) -> None:
    chain = rag_chain(world)

    async def scenario() -> tuple[int, int]:
        async with (
            AsyncUsefirstClient(server.url, world.team.key) as sdk,
            AsyncUsageReporter(sdk, world.model_id, flush_interval_s=0.1) as usage,
        ):
            handler = UsefirstCallbackHandler(usage)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MissingChunkMetadataWarning)
                for question in QUESTIONS[:4]:
                    await chain.ainvoke(question, config={"callbacks": [handler]})
            assert await usage.flush(timeout_s=20)
            return usage.stats.accepted, usage.stats.rejected

    accepted, rejected = asyncio.run(scenario())
    assert accepted + rejected == 4 and accepted >= 1
    assert accepted == len(stored_retrievals(db_engine, world.model_id))


# --- LlamaIndex ------------------------------------------------------------------------


class RetrievalEnds(BaseEventHandler):
    """Records what each LlamaIndex retrieval returned."""

    ends: list[RetrievalEndEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RetrievalEnds"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RetrievalEndEvent):
            self.ends.append(event)


def llama_nodes(world: World) -> list[TextNode]:
    return [
        TextNode(text=body, id_=f"node-{i}", metadata=metadata)
        for i, (body, metadata) in enumerate(world.corpus())
    ]


def test_llamaindex_query_engine_reports_each_retrieval(
    reporter: UsageReporter, world: World, db_engine: Engine
) -> None:
    nodes = llama_nodes(world)
    engine = RetrieverQueryEngine.from_args(
        LlamaBM25.from_defaults(nodes=nodes, similarity_top_k=3), llm=MockLLM(max_tokens=8)
    )
    recorder = RetrievalEnds()
    get_dispatcher().add_event_handler(recorder)
    handler = instrument(reporter)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for question in QUESTIONS:
                assert str(engine.query(question))
            # An async retrieval from a vector index (local deterministic embeddings).
            index = VectorStoreIndex(nodes[:4], embed_model=MockEmbedding(embed_dim=8))
            asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve("the Moon"))
    finally:
        handler.detach()
        get_dispatcher().event_handlers.remove(recorder)
    assert reporter.flush(timeout_s=20)

    assert len(recorder.ends) == len(QUESTIONS) + 1
    stored = stored_retrievals(db_engine, world.model_id)
    expected: dict[str, list[tuple[str, str]]] = {}
    for end in recorder.ends:
        chunks = usefirst_chunks([n.node.metadata for n in end.nodes])
        if chunks and str(world.train_only) not in str(chunks):
            expected[str(end.span_id)] = chunks
    assert {q: s["chunks"] for q, s in stored.items()} == expected
    # Node scores travel with the chunks.
    for end in recorder.ends:
        if str(end.span_id) in stored:
            scored = [n.score for n in end.nodes if "dataset_id" in str(n.node.metadata)]
            assert stored[str(end.span_id)]["scores"] == pytest.approx(scored)
    assert any(issubclass(w.category, MissingChunkMetadataWarning) for w in caught)
    assert reporter.stats.rejected == len(quarantined(db_engine, world.model_id))

    # Detached: further retrievals are not reported.
    before = reporter.stats.enqueued
    engine.query(QUESTIONS[0])
    assert reporter.stats.enqueued == before
