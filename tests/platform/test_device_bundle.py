"""The GPU machine's bundle (scripts/device_bundle.py lays it out here, scripts/device_install.sh puts it together
there): the parts fit the calls, cut files join back to their bytes only once every piece is there and intact,
wheels install, and requirements are read with the machine's markers."""
from __future__ import annotations

import base64
import hashlib
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import device_bundle  # noqa: E402

KIB = 1 << 10


def _wheel(directory: Path, name: str, version: str, requires: list[str]) -> Path:
    """A complete wheel (METADATA, WHEEL, RECORD with hashes) of one pure-Python module."""
    files = {f"{name}.py": f"VERSION = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                 + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{name}-{version}.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(text.encode())}")
    files[record] = "\n".join(lines + [f"{record},,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture()
def bundle(tmp_path, monkeypatch):
    """A checkout with a payload of one wheel and two files bigger than a part, laid out for calls of 64 KiB."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "scripts").mkdir()
    for script in ("device_install.sh",):
        (root / "scripts" / script).write_bytes((REPO / "scripts" / script).read_bytes())
    subprocess.run(["git", "-C", str(root), "add", "scripts"], check=True)
    cache = tmp_path / "cache"
    (cache / "payload").mkdir(parents=True)
    rng = random.Random(0)
    payload = {"big.tar.gz": rng.randbytes(150 * KIB), "other.tar.xz": rng.randbytes(70 * KIB)}
    for name, data in payload.items():
        (cache / "payload" / name).write_bytes(data)
    _wheel(cache / "payload", "tinymod", "1.0", [])
    monkeypatch.setattr(device_bundle, "CALL_LIMIT", 64 * KIB + device_bundle.tree_size(root))
    monkeypatch.setattr(device_bundle, "PART_LIMIT", 60 * KIB)
    monkeypatch.setattr(device_bundle, "MARGIN", 2 * KIB)
    device_bundle.layout(cache, root, base=[])
    return root, payload, tmp_path


def _install(root: Path, tmp: Path) -> None:
    env = {**os.environ, "BUNDLE_DIR": str(tmp / "bundle"), "SITE": str(tmp / "site"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["bash", "scripts/device_install.sh"], cwd=root, env=env, check=True, capture_output=True)


def test_parts_fit_the_calls_and_cut_files_join_only_when_whole(bundle):
    root, payload, tmp = bundle
    parts = sorted(root.glob(".dev_*"))
    assert len(parts) >= 4  # 150 + 70 + a wheel, at most 60 KiB a part
    for part in parts:
        assert sum(p.stat().st_size for p in part.iterdir()) <= 64 * KIB
    pieces = sorted(p.name for p in root.glob(".dev_*/*.part-*"))
    assert {p.split(".part-")[0] for p in pieces} == set(payload)

    # The calls arrive one after another: nothing is joined before its last piece is there.
    holder = {p.name: p.parent.name for p in root.glob(".dev_*/big.tar.gz.part-*")}
    held_back = root.parent / "held_back"
    held_back.mkdir()
    last = max(holder.values(), key=lambda d: int(d.split("_")[1]))
    (root / last).rename(held_back / last)
    _install(root, tmp)
    assert not (tmp / "bundle" / "files" / "big.tar.gz").exists()
    (held_back / last).rename(root / last)
    _install(root, tmp)
    for name, data in payload.items():
        assert (tmp / "bundle" / "files" / name).read_bytes() == data
    assert (tmp / "site" / "tinymod.py").read_text() == "VERSION = '1.0'\n"
    assert (tmp / "site" / "tinymod-1.0.dist-info" / "METADATA").exists()


def test_a_damaged_piece_is_not_joined(bundle):
    root, payload, tmp = bundle
    piece = sorted(root.glob(".dev_*/other.tar.xz.part-*"))[0]
    data = bytearray(piece.read_bytes())
    data[100] ^= 0xFF
    piece.unlink()  # a hard link to the cache's copy: write a new file
    piece.write_bytes(bytes(data))
    _install(root, tmp)
    assert not (tmp / "bundle" / "files" / "other.tar.xz").exists()
    assert (tmp / "bundle" / "files" / "big.tar.gz").read_bytes() == payload["big.tar.gz"]
    stamps = [p.name for p in (tmp / "bundle" / "done").iterdir() if p.name.startswith("part-")]
    assert len(stamps) == len(list(root.glob(".dev_*"))) - 1  # every part but the damaged one checked out


def test_requirements_are_read_with_the_machines_markers(tmp_path):
    wheel = _wheel(tmp_path, "needs", "2.0", ["numpy>=1.22", 'colorama>=0.4; sys_platform == "win32"',
                                             'typing_extensions>=4.6; python_version < "3.12"',
                                             'mplib==0.1.1; platform_system == "Linux"', 'pytest; extra == "dev"'])
    assert device_bundle.requirement_names(wheel) == [("numpy", "numpy>=1.22"),
                                                      ("mplib", 'mplib==0.1.1; platform_system == "Linux"')]


def test_the_lists_name_the_bundle_and_the_machine():
    bundle = device_bundle.read_names(REPO / "scripts" / "device_bundle.txt")
    machine = device_bundle.read_names(REPO / "scripts" / "device_packages.txt")
    assert {"mani-skill", "sapien", "pybullet", "gsplat", "ipython", "pytorch-kinematics"} <= bundle
    assert {"torch", "numpy", "scipy", "setuptools", "wheel", "ninja"} <= machine
    assert not bundle & machine  # the bundle carries only what the machine lacks
