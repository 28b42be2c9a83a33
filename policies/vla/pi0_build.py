"""Which pi0 class a config or a directory asks for: openpi's layout (openpi_checkpoint.py), or a Pi0Model /
SmallPi0 that this project saved with save_pretrained (config.json with ``model_type`` "zarl_pi0")."""
from __future__ import annotations

import json
from pathlib import Path

from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.modeling_pi0 import Pi0Model


def build_pi0(config: Pi0Config) -> Pi0Model:
    if config.prefix == "small":
        from policies.vla.small_pi0 import SmallPi0

        return SmallPi0(config)
    return Pi0Model(config)


def load_pi0(directory: str | Path, asset_id: str | None = None) -> Pi0Model:
    """A pi0 / pi0.5 from a local directory in either layout."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no config.json: not a pi0 checkpoint")
    if json.loads(path.read_text()).get("model_type") != Pi0Config.model_type:
        return Pi0Model.from_pretrained(directory, asset_id=asset_id)  # openpi's layout
    config = Pi0Config.from_pretrained(directory)
    if config.prefix == "small":
        from policies.vla.small_pi0 import SmallPi0

        return SmallPi0.from_pretrained(directory)
    return Pi0Model.from_pretrained(directory)
