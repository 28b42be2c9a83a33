"""The registry of pipelines: `algo` name -> the Builder that makes its roles (core.roles.Builder).

A pipeline is a module (or a folder) with one Builder, plus one line in REGISTRY below. Entries are
"module:Class" strings, imported only when a run asks for that algorithm: the replay process of a SAC
run imports pipelines.sac, which imports torch only inside the methods that build networks.

An algorithm defined outside this package registers itself with `register(name, BuilderClass)` in a
module that the run config's `imports` lists (launch/run_config.py imports them in every process first).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import zlib
from pathlib import Path

from core.config import ConfigError
from core.roles import Builder

REGISTRY: dict[str, str | type[Builder]] = {
    "sac": "pipelines.sac:SACBuilder",
    "ppo": "pipelines.ppo:PPOBuilder",
    "grpo": "pipelines.grpo:GRPOBuilder",
    "vla_ppo": "pipelines.vla:VLAPPOBuilder",
    "vla_grpo": "pipelines.vla:VLAGRPOBuilder",
    "vla_sft": "pipelines.vla:VLASFTBuilder",
}


def register(name: str, builder: str | type[Builder]) -> None:
    """Make `algo: name` run `builder` (a Builder subclass, or "module:Class"); a later registration replaces."""
    REGISTRY[name] = builder


def get(name: str) -> Builder:
    """The builder of algorithm `name`, imported now if it is registered by its module path."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown algo '{name}'.{hint} Registered: {', '.join(sorted(REGISTRY))} "
                          "(an algorithm of your own: register it in a module that the config's `imports` lists)")
    target = REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target()


def import_modules(names: list[str]) -> None:
    """Import each dotted module name or .py file path (once per process), so that it can register pipelines."""
    for name in names:
        if not name.endswith(".py"):
            importlib.import_module(name)
            continue
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"imports: no file {path}")
        module_name = f"zarl_imports.{path.stem}_{zlib.crc32(str(path).encode()):08x}"
        if module_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
