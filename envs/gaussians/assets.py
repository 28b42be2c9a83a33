"""A scene's Gaussian assets on disk: one standard 3DGS .ply per rigid part and ``manifest.json``:

    {"format": "zarl-gaussian-assets", "version": 1, "scene": <env id>,
     "parts": {<part>: {"kind": "link" | "actor" | "background", "source": <link or actor name>,
                        "frame": "part" | "world", "file": <ply file>, "num_gaussians": n,
                        "heldout_psnr": dB or null}}}

A part in frame "part" is stored in its link's or actor's own frame and is posed by that body's world
pose each step; a part in frame "world" (the static background) is rendered where it is. A real
capture drops in by writing its .ply files and this manifest.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from envs.gaussians.cloud import GaussianCloud
from envs.gaussians.ply import read_ply, write_ply

MANIFEST = "manifest.json"
FORMAT = "zarl-gaussian-assets"
KINDS = ("link", "actor", "background")


@dataclass
class PartEntry:
    kind: str
    source: str
    frame: str
    file: str
    num_gaussians: int
    heldout_psnr: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"part kind {self.kind!r} is not one of {KINDS}")
        if self.frame not in ("part", "world"):
            raise ValueError(f"part frame {self.frame!r} is not 'part' or 'world'")


def save_assets(root: str | Path, scene: str, parts: dict[str, tuple[PartEntry, GaussianCloud]]) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, (entry, cloud) in parts.items():
        write_ply(root / entry.file, cloud)
        entry.num_gaussians = len(cloud)
        entries[name] = asdict(entry)
    path = root / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "version": 1, "scene": scene, "parts": entries}, indent=1))
    tmp.replace(path)  # a reader never sees half a manifest
    return path


def load_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no Gaussian assets at {root}: {path} is missing (build them with "
                                "`python -m launch.build_gs_assets --out {root}`, or drop in a real capture's .ply files "
                                "and manifest)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest (format = {manifest.get('format')!r})")
    return manifest


def load_assets(root: str | Path) -> tuple[dict, dict[str, tuple[PartEntry, GaussianCloud]]]:
    """(manifest, {part: (entry, cloud)}); every listed file must exist and hold the listed count."""
    root = Path(root)
    manifest = load_manifest(root)
    parts = {}
    for name, raw in manifest["parts"].items():
        entry = PartEntry(**raw)
        cloud = read_ply(root / entry.file)
        if len(cloud) != entry.num_gaussians:
            raise ValueError(f"{root / entry.file}: {len(cloud)} Gaussians, the manifest says {entry.num_gaussians}")
        parts[name] = (entry, cloud)
    return manifest, parts
