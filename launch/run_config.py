"""A run's config with its pipeline's sections: what the launcher and every role process load.

core.config knows the sections every run has; the run's pipeline (pipelines/, picked by `algo`, after the
config's `imports` are imported) adds its own (e.g. `sac` and `policy`) and checks them.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import pipelines
from core import config
from core.roles import Builder


def _sections(algo: str, imports: list[str]) -> config.Sections:
    pipelines.import_modules(imports)
    return pipelines.get(algo).config_sections


def load_config(preset: str | os.PathLike, overrides: list[str] | None = None) -> DictConfig:
    """Preset + overrides, with the sections of the run's pipeline, validated (core.config.load_config)."""
    cfg = config.load_config(preset, overrides, sections=_sections)
    # Files in `imports` as absolute paths: the roles run in another working directory.
    cfg.imports = [str(Path(m).resolve()) if m.endswith(".py") else m for m in cfg.imports]
    builder(cfg).validate(cfg)
    return cfg


def read_run_config(run_dir: str | os.PathLike) -> DictConfig:
    """The config the launcher wrote into `run_dir`, with its pipeline's sections."""
    return config.read_run_config(run_dir, sections=_sections)


def builder(cfg) -> Builder:
    """The run's pipeline builder (the config's `imports` imported first)."""
    pipelines.import_modules(list(cfg.imports))
    return pipelines.get(cfg.algo)


def typed(cfg: DictConfig):
    """The run's config as dataclasses (RunConfig with the pipeline's sections): what roles receive."""
    return OmegaConf.to_object(cfg)
