"""The ``models`` command: tiers, their fallback chains and each model's cooldown.

Reads the models file and the state DB's ``gr_model_cooldowns`` (what every worker on that
database shares); it never imports litellm.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from graphrunner.client._cli import (
    JsonFlag,
    _fail,
    _row,
    _settings,
    _state_db,
    _table,
    _text,
    app,
    out,
)
from graphrunner.errors import GraphrunnerError
from graphrunner.llm._config import load_models
from graphrunner.llm._cooldowns import ModelCooldown, now_utc
from graphrunner.llm._runtime import provider_keys_set
from graphrunner.stores._cooldowns import SqlCooldowns

__all__: list[str] = []


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None


def _model_json(configured: str, called: str, state: ModelCooldown | None) -> dict[str, Any]:
    now = now_utc()
    return {
        "model": configured,
        "calls": called,
        "cooling": bool(state and state.cooling(now)),
        "cooling_until": _iso(state.cooling_until) if state else None,
        "failures": state.failures if state else 0,
        "last_error": state.last_error if state else None,
        "last_message": state.last_message if state else None,
    }


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """Show the LLM tiers, their fallback chains and each model's cooldown state."""
    settings = _settings()
    try:
        config = load_models(settings.models)
    except GraphrunnerError as exc:
        _fail(str(exc), 2)
    offline = settings.llm == "offline" or (settings.llm == "auto" and not provider_keys_set())

    def called(model: str) -> str:
        return model if not offline or model.startswith("offline/") else "offline/" + model

    states: dict[str, ModelCooldown] = {}
    if settings.record:
        with _state_db(settings) as store:
            store.ensure_schema()
            every = sorted({called(m) for chain in config.tiers.values() for m in chain})
            states = asyncio.run(SqlCooldowns(store).get(every))
    tiers = {
        tier: [_model_json(m, called(m), states.get(called(m))) for m in chain]
        for tier, chain in config.tiers.items()
    }
    if as_json:
        shown = {
            "models_file": str(settings.models) if settings.models else None,
            "offline": offline,
            "cooldowns": "state DB" if settings.record else "per worker process (not shown)",
            "tiers": tiers,
        }
        print(json.dumps(shown, indent=2))
        return
    source = str(settings.models) if settings.models else "default (offline)"
    title = f"LLM tiers ({source}{', offline' if offline else ''})"
    table = _table(title, ["tier", "#", "model", "state", "failures", "last error"], ("failures",))
    for tier, chain in tiers.items():
        for place, entry in enumerate(chain, 1):
            state = f"cooling until {entry['cooling_until']}" if entry["cooling"] else "ready"
            name = (
                entry["model"]
                if entry["model"] == entry["calls"]
                else (f"{entry['model']} -> {entry['calls']}")
            )
            last = entry["last_error"] or ""
            if entry["last_message"]:
                last += f": {entry['last_message']}"
            _row(table, tier, place, name, state, entry["failures"], last)
    out.print(table)
    if not settings.record:
        out.print(_text("cooldowns are kept by each worker process (GRAPHRUNNER_RECORD=0)"))
