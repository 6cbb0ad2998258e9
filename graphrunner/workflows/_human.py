"""The lifetime's desk for human-input steps: what waits, what was answered, what was refused.

Pure workflow-side bookkeeping (no awaits): the lifetime workflow asks through it, its
``graphrunner.respond`` update validator and handler and its ``graphrunner.answer`` signal
check answers through it, and the memo and the Web UI's current details are drawn from it.
Everything here derives from the workflow input and handler inputs, so replay rebuilds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from graphrunner._answers import (
        HumanAnswer,
        HumanOutcome,
        HumanRequest,
        RefusedAnswer,
    )
    from graphrunner._types import execution_id
    from graphrunner._values import BadValue, check_value, clip
    from graphrunner.graph._human import (
        MAX_ANSWER_BYTES,
        HumanSpec,
        TimeoutResponse,
        answer_problems,
        answer_size,
    )

__all__ = ["ANSWER_REFUSED", "HumanDesk", "markdown_escape"]

ANSWER_REFUSED: Final = "AnswerRefused"
"""``ApplicationError.type`` of an answer the lifetime refused."""
_REFUSED_KEPT: Final = 20  # refused signals kept (the newest)
_MEMO_REQUESTS: Final = 20  # pending requests described in the memo (the oldest first)
_AHEAD: Final = 50  # iterations of a node an early answer (a reset run's) may be for
_MARKDOWN: Final = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def markdown_escape(text: str) -> str:
    """``text`` as literal markdown: no markup, links or HTML of its own."""
    return _MARKDOWN.sub(r"\\\1", text).replace("<", "&lt;")


class Refused(ApplicationError):
    """An answer the lifetime does not take (non-retryable; its message says why)."""

    def __init__(self, message: str) -> None:
        super().__init__(clip(message, 4096), type=ANSWER_REFUSED, non_retryable=True)


@dataclass
class _Waiting:
    request: HumanRequest
    spec: HumanSpec


@dataclass
class HumanDesk:
    """The requests a lifetime waits on, the outcomes of settled ones, refused signals.

    An answer that names (``request_id``) a request the lifetime has not asked yet, the
    next few of each human node (`expect`), is held as the request's outcome, and the
    request is settled the moment it is asked. That is how a run made by a reset takes the
    answers received after the reset point: the server hands them over in its first workflow
    task, before the steps that ask again have run. Request ids name the lifetime's first
    run, so they are the same in every run. An answer without a request id is for a request
    waiting now, as before.
    """

    pending: dict[str, _Waiting] = field(default_factory=dict)
    outcomes: dict[str, HumanOutcome] = field(default_factory=dict)
    refused: list[RefusedAnswer] = field(default_factory=list)
    chain: tuple[str, str] = ("", "")  # workflow id, first run id: what request ids derive from
    upcoming: dict[str, tuple[int, HumanSpec]] = field(default_factory=dict)  # node -> next

    # -- asking ---------------------------------------------------------------------------

    def expect(self, node: str, iteration: int, spec: HumanSpec) -> None:
        """The next request ``node`` will make is for ``iteration`` (early answers' target)."""
        self.upcoming[node] = (iteration, spec)

    def request_id(self, node: str, iteration: int) -> str:
        """The id of ``node``'s request for ``iteration``, the same in every run."""
        return execution_id(*self.chain, node, iteration)

    def ask(self, request: HumanRequest, spec: HumanSpec) -> None:
        """Start waiting on ``request`` (unless an early answer settled it already)."""
        self.expect(request.node, request.iteration + 1, spec)
        if request.request_id not in self.outcomes:
            self.pending[request.request_id] = _Waiting(request, spec)

    def held(self) -> list[HumanOutcome]:
        """Answers held for requests not asked yet (what a next run must take along)."""
        asked = {w.request.request_id for w in self.pending.values()}
        return [
            outcome
            for rid, outcome in self.outcomes.items()
            if rid not in asked and outcome.iteration >= self.upcoming.get(outcome.node, (0,))[0]
        ]

    def withdraw(self, request_id: str) -> None:
        """Stop waiting on a request nobody answered (the lifetime was cancelled)."""
        self.pending.pop(request_id, None)

    def time_out(self, request_id: str, now: datetime) -> HumanOutcome | None:
        """Settle a request whose deadline passed: its default answer, or None (fail)."""
        waiting = self.pending.pop(request_id, None)
        if waiting is None:
            return self.outcomes.get(request_id)
        default = waiting.spec.on_timeout
        outcome = self._outcome(
            waiting.request,
            default.respond if isinstance(default, TimeoutResponse) else None,
            by="timeout",
            via="timeout",
            now=now,
        )
        self.outcomes[request_id] = outcome
        return outcome if isinstance(default, TimeoutResponse) else None

    # -- answering ------------------------------------------------------------------------

    def check(self, answer: HumanAnswer) -> str:
        """The request ``answer`` settles (its id); `Refused` saying why when there is none.

        A request already settled is accepted: settling it again returns its first outcome.
        """
        rid = answer.request_id
        if rid is not None and rid in self.outcomes:
            return rid
        if rid is not None:
            found = self.pending.get(rid)
            ahead = self._ahead(answer.node, rid)
            if found is None and ahead is not None:
                self._check_data(answer.node, ahead[1], answer.data)
                return rid
            if found is None:
                raise Refused(
                    f"request '{rid}' is not waiting for an answer (a stale or unknown request "
                    f"id); {self._waiting_text()}"
                )
            if found.request.node != answer.node:
                raise Refused(
                    f"request '{rid}' belongs to node '{found.request.node}', not '{answer.node}'"
                )
        else:
            at_node = [w for w in self.pending.values() if w.request.node == answer.node]
            if not at_node:
                raise Refused(
                    f"node '{answer.node}' is not waiting for an answer; " + self._waiting_text()
                )
            if len(at_node) > 1:
                ids = ", ".join(w.request.request_id for w in at_node)
                raise Refused(
                    f"{len(at_node)} requests of node '{answer.node}' are waiting; say which "
                    f"with request_id (one of {ids})"
                )
            found = at_node[0]
        self._check_data(found.request.node, found.spec, answer.data)
        return found.request.request_id

    def _ahead(self, node: str, rid: str) -> tuple[int, HumanSpec] | None:
        """The not-yet-asked request ``rid`` of ``node`` (iteration, spec), if it is one."""
        if node not in self.upcoming:
            return None
        first, spec = self.upcoming[node]
        for iteration in range(first, first + _AHEAD):
            if self.request_id(node, iteration) == rid:
                return iteration, spec
        return None

    def _waiting_text(self) -> str:
        if not self.pending:
            return "the lifetime is not waiting for any answer"
        nodes = sorted({w.request.node for w in self.pending.values()})
        return "waiting: " + ", ".join(f"'{n}'" for n in nodes)

    @staticmethod
    def _check_data(node: str, spec: HumanSpec, data: Any) -> None:
        try:
            check_value(data, "the answer")
        except BadValue as exc:
            raise Refused(f"the answer for node '{node}' cannot be carried: {exc}") from None
        size = answer_size(data)
        if size > MAX_ANSWER_BYTES:
            raise Refused(
                f"the answer for node '{node}' is {size:,} bytes; at most "
                f"{MAX_ANSWER_BYTES:,} are taken"
            )
        problems = answer_problems(spec.schema_or_any(), data)
        if problems:
            raise Refused(
                f"the answer does not fit node '{node}''s response schema: " + "; ".join(problems)
            )

    def settle(
        self, request_id: str, answer: HumanAnswer, *, via: str, now: datetime
    ) -> HumanOutcome:
        """Take ``answer`` for a request `check` accepted; its outcome (the first one's, again)."""
        settled = self.outcomes.get(request_id)
        if settled is not None:
            return settled.model_copy(update={"duplicate": True})
        waiting = self.pending.pop(request_id, None)
        if waiting is None:  # ahead of its question (`check` found it upcoming)
            node_ahead = self._ahead(answer.node, request_id)
            outcome = HumanOutcome(
                request_id=request_id,
                node=answer.node,
                iteration=node_ahead[0] if node_ahead else 0,
                data=answer.data,
                by=answer.by,
                via=via,
                answered_at=now,
            )
            self.outcomes[request_id] = outcome
            return outcome
        outcome = self._outcome(waiting.request, answer.data, by=answer.by, via=via, now=now)
        self.outcomes[request_id] = outcome
        return outcome

    def refuse(self, payload: Any, reason: str, now: datetime) -> RefusedAnswer:
        """Keep a refused signal (the newest `_REFUSED_KEPT`)."""
        node = request_id = by = None
        if isinstance(payload, dict):
            node, request_id, by = payload.get("node"), payload.get("request_id"), payload.get("by")
        refused = RefusedAnswer(
            node=clip(node, 64) if isinstance(node, str) else "",
            request_id=clip(request_id, 64) if isinstance(request_id, str) else None,
            by=clip(by, 255) if isinstance(by, str) else "",
            reason=clip(reason, 2000),
            at=now,
        )
        self.refused = [*self.refused, refused][-_REFUSED_KEPT:]
        return refused

    @staticmethod
    def parse(payload: Any) -> HumanAnswer:
        """A signalled payload as an answer; `Refused` when it is not one."""
        try:
            return HumanAnswer.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise Refused("not an answer ({node, request_id?, data, by?}): " + problems) from None

    @staticmethod
    def _outcome(
        request: HumanRequest, data: Any, *, by: str, via: str, now: datetime
    ) -> HumanOutcome:
        return HumanOutcome(
            request_id=request.request_id,
            node=request.node,
            iteration=request.iteration,
            data=data,
            by=by,
            via=via,
            answered_at=now,
            waited_ms=max((now - request.since).total_seconds() * 1000, 0.0),
        )

    # -- what others see ------------------------------------------------------------------

    def requests(self) -> list[HumanRequest]:
        """The requests waiting now, oldest first."""
        return [w.request for w in self.pending.values()]

    def memo(self) -> dict[str, Any]:
        """The memo fields a pending list reads across lifetimes (no worker needed)."""
        requests = self.requests()
        memo: dict[str, Any] = {
            "pending": [r.model_dump(mode="json") for r in requests[:_MEMO_REQUESTS]],
            "refused": [r.model_dump(mode="json") for r in self.refused[-3:]],
        }
        if len(requests) > _MEMO_REQUESTS:
            memo["pending_more"] = len(requests) - _MEMO_REQUESTS
        return memo

    def details(self, lifetime_id: str) -> str:
        """The Web UI's current details while the lifetime waits (markdown, escaped)."""
        lines: list[str] = []
        for request in self.requests()[:5]:
            head = (
                f"**waiting for an answer** at **{markdown_escape(request.node)}** · iteration "
                f"{request.iteration}"
            )
            lines.append(head)
            lines.append("")
            lines.extend("> " + markdown_escape(line) for line in request.question.splitlines())
            lines.append("")
            facts = [f"request {request.request_id}"]
            if request.assignee:
                facts.append(f"assignee {markdown_escape(request.assignee)}")
            if request.deadline:
                when = request.deadline.isoformat(sep=" ", timespec="seconds")
                facts.append(f"deadline {when} (then: {request.on_timeout})")
            lines.append(" · ".join(facts))
            lines.append("")
            lines.append(
                f"answer: `graphrunner respond {lifetime_id.replace('`', '')} --node "
                f"{request.node} --data '...'`, or update `graphrunner.respond` / signal "
                "`graphrunner.answer` (More Actions)"
            )
            lines.append("")
        if self.refused:
            last = self.refused[-1]
            lines.append(
                f"**refused answer** ({len(self.refused)} so far), the last at "
                f"{last.at.isoformat()}: {markdown_escape(last.reason)}"
            )
        return clip("\n".join(lines), 16_000)
