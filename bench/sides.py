"""The contestants: graphrunner (without records, or recording into a state DB) and the
hand-written baseline, each on its own task queue.

All hand out starters for the same seven kinds of lifetime (a sequential Task+Plan loop, the
same loop holding a lifetime state, a fan-out loop, one node that waits on
`bench.gate.GATE`, one that waits for a person's answer, then a no-op plan, and a long loop
that continues as new when Temporal suggests it, and an LLM tool conversation), and answer
the fifth; `timed` starts one
or many and measures wall time from the client until every result is in. Workers for all
run in this process for the whole benchmark.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bench.baseline_activities import (
    Answer,
    AskInput,
    AskResult,
    LongLoopInput,
    LongLoopResult,
    LoopInput,
    LoopResult,
    StateLoopInput,
    StateLoopResult,
    TalkInput,
    TalkResult,
    hold,
    noop_plan,
    noop_task,
    state_plan,
    state_task,
    tick,
    tool_bulky,
    turn,
)
from bench.baseline_workflows import (
    AskWorkflow,
    FanOutWorkflow,
    HoldWorkflow,
    LocalLoopWorkflow,
    LongLoopWorkflow,
    LoopWorkflow,
    StateLoopWorkflow,
    ToolTalkWorkflow,
)
from bench.nodes import FanOut, Hold, Loop, Noop, Tally, Tick, UntilCount
from graphrunner import AgentGraph, GraphBuilder, GraphrunnerClient, Settings, StateField
from graphrunner.activities import Recorder
from graphrunner.graph import GraphDefaults
from graphrunner.guardrails import PolicySource
from graphrunner.plugin import GraphrunnerPlugin
from graphrunner.stores import BlobStore, RecordStore, data_converter
from graphrunner.worker import build_worker

__all__ = [
    "ACTIVITY_SLOTS",
    "Baseline",
    "Graphrunner",
    "Side",
    "Starter",
    "ask_graph",
    "fan_graph",
    "graphrunner_client",
    "hold_graph",
    "long_loop_graph",
    "loop_graph",
    "state_graph",
    "talk_graph",
    "timed",
]

BASE_QUEUE = "bench-baseline"
ACTIVITY_SLOTS = 100  # build_worker's max_concurrent_activities, which the baseline copies
# Room for long loops: the default cap of 100 runs per node is a safety net, not a cost.
DEFAULTS = GraphDefaults(max_iterations=10_000)


def loop_graph(*, local: bool, steps: int) -> AgentGraph:
    """Task ``work`` -> Plan ``loop`` -> back to ``work`` until the plan finishes."""
    return (
        GraphBuilder("bench-loop-local" if local else "bench-loop", defaults=DEFAULTS)
        .task("work", Noop)
        .plan("loop", Loop, local=local, config={"steps": steps})
        .edge("work", "loop")
        .edge("loop", "work")
        .final("loop")
        .build()
    )


def state_graph(*, steps: int, big: int = 0) -> AgentGraph:
    """`loop_graph`'s loop holding a lifetime state of four small fields (`bench.nodes.Tally`
    updates them every step, `UntilCount` routes on them), and with ``big`` a fifth that the
    first task fills with ``big`` characters."""
    fields = {
        "count": StateField(type="integer", reducer="add"),
        "notes": StateField(type="array", reducer="append"),
        "best": StateField(type="number", reducer="max"),
        "last": StateField(type="string"),
    }
    if big:
        fields["doc"] = StateField(type="string")
    return (
        GraphBuilder("bench-state-big" if big else "bench-state", defaults=DEFAULTS)
        .state(fields)
        .task("work", Tally, config={"big": big} if big else {})
        .plan("loop", UntilCount, config={"steps": steps})
        .edge("work", "loop")
        .edge("loop", "work")
        .final("loop")
        .build()
    )


def long_loop_graph(iterations: int) -> AgentGraph:
    """Task ``tick`` (`bench.nodes.Tick`: one added to the state's count) -> a Plan ``route``
    without code, back to ``tick`` while ``state.count < iterations``, else FINAL.

    No ``continue_as_new_after``: the lifetime continues as new when Temporal suggests it.
    """
    defaults = GraphDefaults(max_iterations=iterations + 1)  # counted over the whole lifetime
    return (
        GraphBuilder("bench-long-loop", defaults=defaults)
        .state({"count": StateField(type="integer", reducer="add")})
        .task("tick", Tick)
        .plan("route")
        .edge("tick", "route")
        .edge("route", "tick", when=f"state.count < {iterations}")
        .final("route")
        .build()
    )


# A template over the lifetime's input ({"rounds": N}); the offline model reads N from it.
TALK_PROMPT = "Call the tool {rounds} times, read every chunk it gives you, then say 'finished'."


def talk_graph(rounds: int) -> AgentGraph:
    """An llm_task ``chat`` whose model calls the tool `bench.nodes.bulky` (~2 KiB a result)
    ``rounds`` times (as `bench.llm_turns` scripts the offline model), then a no-op Plan
    ``done`` (`bench.nodes.Loop`, a local activity) that ends the lifetime."""
    return (
        GraphBuilder("bench-tool-talk", defaults=DEFAULTS)
        .llm_task(
            "chat",
            tier="fast",
            prompt=TALK_PROMPT,
            tools=["bench.nodes:bulky"],
            max_tool_rounds=rounds,
        )
        .plan("done", Loop, local=True, config={"steps": 1})
        .edge("chat", "done")
        .final("done")
        .build()
    )


def fan_graph(branches: int, rounds: int) -> AgentGraph:
    """Plan ``fan`` fans out to ``branches`` tasks that all JOIN back into ``fan``."""
    names = [f"b{i}" for i in range(branches)]
    builder = GraphBuilder("bench-fan", defaults=DEFAULTS).plan(
        "fan", FanOut, config={"rounds": rounds}
    )
    for name in names:
        builder.task(name, Noop)
    return builder.parallel("fan", *names).join("fan", *names).final("fan").build()


def hold_graph() -> AgentGraph:
    """One Task ``hold`` that waits on the benchmark's gate, then the lifetime ends."""
    return GraphBuilder("bench-hold", defaults=DEFAULTS).task("hold", Hold).final("hold").build()


# The answer both sides' waits take: graphrunner's human task declares this schema, the
# baseline's update validator checks the same by hand.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
ANSWER = {"ok": True}
ANSWERED_BY = "bench"


def ask_graph() -> AgentGraph:
    """A human task ``ask`` (waits in the workflow for an answer), then a no-op Plan ``after``
    (an activity) that ends the lifetime."""
    return (
        GraphBuilder("bench-ask", defaults=DEFAULTS)
        .human("ask", prompt="Approve?", response=ANSWER_SCHEMA)
        .plan("after", Loop, config={"steps": 1})
        .edge("ask", "after")
        .final("after")
        .build()
    )


Starter = Callable[[], Awaitable[WorkflowHandle[Any, Any]]]


class Side(Protocol):
    """One contestant."""

    name: str
    client: Client

    def worker(self) -> Worker: ...

    def loop(self, steps: int, *, local: bool) -> Starter: ...

    def stateful(self, steps: int, *, big: int = 0) -> Starter: ...

    def fan(self, rounds: int, branches: int) -> Starter: ...

    def hold(self) -> Starter: ...

    def long_loop(self, iterations: int) -> Starter: ...

    def ask(self) -> Starter: ...

    def talk(self, rounds: int) -> Starter: ...

    async def respond(self, lifetime_id: str) -> object:
        """Answer the lifetime's waiting ``ask`` with `ANSWER`, as a client would."""
        ...


async def timed(start: Starter, count: int = 1, *, timeout_s: float = 180.0) -> float:
    """Start ``count`` lifetimes at once, wait for every result; return the wall time.

    Raises:
        TimeoutError: They did not all finish within ``timeout_s`` (a hang, not a slow run).
    """
    began = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        handles = await asyncio.gather(*(start() for _ in range(count)))
        await asyncio.gather(*(handle.result() for handle in handles))
    return time.perf_counter() - began


def graphrunner_client(client: Client, settings: Settings, blobs: BlobStore) -> Client:
    """``client``'s connection with graphrunner's data converter, as `connect_temporal` sets it.

    That is pydantic conversion plus external payload storage: payloads of
    ``settings.payload_threshold_bytes`` (256 KiB) or more go to ``blobs``.
    """
    config = client.config()
    config["data_converter"] = data_converter(settings, blobs)
    return Client(**config)


class Graphrunner:
    """graphrunner as a user runs it: GraphBuilder graphs, GraphrunnerClient, build_worker.

    ``client`` must carry graphrunner's data converter (`graphrunner_client`). With ``records``
    the worker writes every node execution to that state DB (results over the inline limit
    to ``blobs``), as a deployment with records on does; ``name`` then tells the sides apart.
    ``policies`` are the worker's guardrail layers (none by default; the guardrail
    interceptor runs either way, unless ``guardrails`` is False, a bench-only variant).
    ``cache`` is the worker's ``max_cached_workflows`` (None: the SDK's default, 1,000).
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str = "graphrunner",
        queue: str = "bench-graphrunner",
        records: RecordStore | None = None,
        blobs: BlobStore | None = None,
        policies: PolicySource | None = None,
        guardrails: bool = True,
        cache: int | None = None,
    ) -> None:
        self.name = name
        self.cache = cache
        self.policies = policies
        self.guardrails = guardrails
        self.client = client
        self.queue = queue
        settings = Settings(task_queue=self.queue)
        self.runner = GraphrunnerClient(client, settings=settings, records=records, blobs=blobs)
        self.recorder: Recorder | None = None
        if records is not None:
            if blobs is None:
                raise ValueError("a recording side needs a blob store for large results")
            self.recorder = Recorder(records, blobs, inline_limit=settings.inline_limit_bytes)
        self.graphs: dict[tuple[bool, int], AgentGraph] = {}
        self.state_graphs: dict[tuple[int, int], AgentGraph] = {}
        self.fan_graphs: dict[tuple[int, int], AgentGraph] = {}
        self.hold_graph: AgentGraph | None = None
        self.long_graphs: dict[int, AgentGraph] = {}
        self.ask_graph: AgentGraph | None = None
        self.talk_graphs: dict[int, AgentGraph] = {}

    def worker(self) -> Worker:
        options: dict[str, Any] = {} if self.cache is None else {"max_cached_workflows": self.cache}
        if self.guardrails:
            return build_worker(
                self.client,
                task_queue=self.queue,
                recorder=self.recorder,
                policies=self.policies,
                **options,
            )
        # What guardrails cost before any rule: build_worker's worker without the guardrail
        # interceptor, which no graphrunner deployment runs (build_worker always adds it).
        plugin = GraphrunnerPlugin(recorder=self.recorder, policies=self.policies)
        plugin.interceptors = []  # bench only: no deployment can
        return Worker(
            self.client,
            task_queue=self.queue,
            plugins=[plugin],
            max_concurrent_activities=ACTIVITY_SLOTS,
            max_eager_activity_reservations_per_workflow_task=10,
            **options,
        )

    def loop(self, steps: int, *, local: bool) -> Starter:
        if (local, steps) not in self.graphs:
            self.graphs[local, steps] = loop_graph(local=local, steps=steps)
        graph = self.graphs[local, steps]
        return lambda: self.runner.start(graph, None)

    def stateful(self, steps: int, *, big: int = 0) -> Starter:
        if (steps, big) not in self.state_graphs:
            self.state_graphs[steps, big] = state_graph(steps=steps, big=big)
        graph = self.state_graphs[steps, big]
        return lambda: self.runner.start(graph, None)

    def fan(self, rounds: int, branches: int) -> Starter:
        if (branches, rounds) not in self.fan_graphs:
            self.fan_graphs[branches, rounds] = fan_graph(branches, rounds)
        graph = self.fan_graphs[branches, rounds]
        return lambda: self.runner.start(graph, None)

    def hold(self) -> Starter:
        if self.hold_graph is None:
            self.hold_graph = hold_graph()
        graph = self.hold_graph
        return lambda: self.runner.start(graph, None)

    def long_loop(self, iterations: int) -> Starter:
        if iterations not in self.long_graphs:
            self.long_graphs[iterations] = long_loop_graph(iterations)
        graph = self.long_graphs[iterations]
        return lambda: self.runner.start(graph, None)

    def ask(self) -> Starter:
        if self.ask_graph is None:
            self.ask_graph = ask_graph()
        graph = self.ask_graph
        return lambda: self.runner.start(graph, None)

    def talk(self, rounds: int) -> Starter:
        if rounds not in self.talk_graphs:
            self.talk_graphs[rounds] = talk_graph(rounds)
        graph = self.talk_graphs[rounds]
        return lambda: self.runner.start(graph, {"rounds": rounds})

    async def respond(self, lifetime_id: str) -> object:
        return await self.runner.respond(lifetime_id, "ask", ANSWER, by=ANSWERED_BY)


class Baseline:
    """A hand-written temporalio workflow doing the same work with plain activities.

    ``cache`` is the worker's ``max_cached_workflows`` (None: the SDK's default, 1,000).
    """

    name = "baseline"

    def __init__(
        self, client: Client, *, queue: str = BASE_QUEUE, cache: int | None = None
    ) -> None:
        self.client = client
        self.queue = queue
        self.cache = cache

    def worker(self) -> Worker:
        options: dict[str, Any] = {} if self.cache is None else {"max_cached_workflows": self.cache}
        # The same worker tuning graphrunner's build_worker applies, so only the code differs.
        return Worker(
            self.client,
            task_queue=self.queue,
            workflows=[
                AskWorkflow,
                LoopWorkflow,
                LocalLoopWorkflow,
                StateLoopWorkflow,
                FanOutWorkflow,
                HoldWorkflow,
                LongLoopWorkflow,
                ToolTalkWorkflow,
            ],
            activities=[noop_task, noop_plan, state_task, state_plan, hold, tick, turn, tool_bulky],
            max_concurrent_activities=ACTIVITY_SLOTS,
            max_eager_activity_reservations_per_workflow_task=10,
            **options,
        )

    def _start(
        self, workflow: str, inp: BaseModel, result_type: type[BaseModel] = LoopResult
    ) -> Starter:
        def start() -> Awaitable[WorkflowHandle[Any, Any]]:
            return self.client.start_workflow(
                workflow,
                inp,
                id=f"{workflow}-{uuid.uuid4().hex[:12]}",
                task_queue=self.queue,
                result_type=result_type,
            )

        return start

    def loop(self, steps: int, *, local: bool) -> Starter:
        workflow = "BenchLocalLoop" if local else "BenchLoop"
        return self._start(workflow, LoopInput(steps=steps))

    def stateful(self, steps: int, *, big: int = 0) -> Starter:
        return self._start("BenchStateLoop", StateLoopInput(steps=steps, big=big), StateLoopResult)

    def fan(self, rounds: int, branches: int) -> Starter:
        return self._start("BenchFanOut", LoopInput(rounds=rounds, branches=branches))

    def hold(self) -> Starter:
        return self._start("BenchHold", LoopInput(steps=1))

    def long_loop(self, iterations: int) -> Starter:
        return self._start("BenchLongLoop", LongLoopInput(iterations=iterations), LongLoopResult)

    def ask(self) -> Starter:
        return self._start("BenchAsk", AskInput(question="Approve?"), AskResult)

    def talk(self, rounds: int) -> Starter:
        inp = TalkInput(prompt=TALK_PROMPT.format(rounds=rounds), rounds=rounds)
        return self._start("BenchToolTalk", inp, TalkResult)

    async def respond(self, lifetime_id: str) -> object:
        handle = self.client.get_workflow_handle(lifetime_id)
        answer = Answer(node="ask", data=ANSWER, by=ANSWERED_BY)
        return await handle.execute_update(AskWorkflow.answer, answer)
