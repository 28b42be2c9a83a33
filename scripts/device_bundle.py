"""The payload that brings ManiSkill 3, pybullet and gsplat to the GPU machine, which has no network.

Driven by scripts/device_bundle.sh (which downloads); three commands, each printing plain lines:

  layout CACHE ROOT      packs the downloaded files of CACHE into part folders ROOT/.dev_<call>/, one per device
                         call (a call carries at most 64 MiB, the working tree included), splitting files too big
                         for one call with `split -b`; writes SHA256SUMS and JOINS in each part and prints the plan
  requires CACHE         every Requires-Dist of the bundle's wheels that neither the machine
                         (scripts/device_packages.txt), the base wheel set (.whl/) nor the bundle provides
  trace [--step ENV_ID]  the distributions that `import envs.maniskill...` (and, with --step, one ManiSkill step
                         on the CPU) load, and those of them that nothing on the machine provides

The machine side (joining, installing, building) is scripts/device_install.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as md
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # what one device call may carry, the working tree included (device README, Limits)
PART_LIMIT = 58 * MIB  # a part folder: the call's limit less the ~6 MB working tree that travels each time
MARGIN = 1 * MIB  # kept free in every call: each part's SHA256SUMS and JOINS, and a working tree grown a little
PREFIX = ".dev_"  # part folders are ROOT/.dev_<call>/, ignored through `/.dev_*/` in .git/info/exclude
HERE = Path(__file__).resolve().parent
# One distribution that provides another's import name (the machine has OpenCV's headless build).
PROVIDED_AS = {"opencv-python": "opencv-python-headless"}
# The machine as pip markers see it (Python 3.12 on x86-64 Linux).
DEVICE_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                  "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def normalise(name: str) -> str:
    """PEP 503's normal form, so that `PyYAML`, `pyyaml` and `py_yaml` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: Path) -> set[str]:
    """The first word of each non-comment line of a list file."""
    return {normalise(line.split()[0].split("==")[0]) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def wheel_name(path: Path) -> str:
    return normalise(path.name.split("-")[0])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def tree_size(root: Path) -> int:
    """Bytes of the working tree that travels with every call: tracked and untracked-but-not-ignored files."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    listed = sum((root / p).stat().st_size for p in out.decode().split("\0") if p and (root / p).is_file())
    return listed + (folder_size(root / "shared") if not (root / "shared").is_symlink() else 0)  # travels, ignored or not


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def first_fit(items: list[tuple[str, int]], rooms: list[int]) -> list[list[tuple[str, int]]] | None:
    """First-fit decreasing: bin i has room rooms[i] (the last room repeats); None if an item fits no bin."""
    bins: list[list[tuple[str, int]]] = []
    free: list[int] = []
    for name, size in sorted(items, key=lambda item: -item[1]):
        for i, left in enumerate(free):
            if size <= left:
                bins[i].append((name, size))
                free[i] -= size
                break
        else:
            room = rooms[min(len(bins), len(rooms) - 1)]
            while size > room:  # a bin too small for this item (the first call's) stays empty
                if room == rooms[-1]:
                    return None
                bins.append([])
                free.append(room)
                room = rooms[min(len(bins), len(rooms) - 1)]
            bins.append([(name, size)])
            free.append(room - size)
    return bins


def plan_parts(files: dict[str, int], rooms: list[int]) -> tuple[dict[str, int], list[list[tuple[str, int]]]]:
    """How many equal pieces each big file is cut into, and the calls' contents: the fewest calls, then the
    fewest pieces. Files bigger than a part are cut into n pieces for the n (up to 8 more than the least) that
    packs best, so that pieces also fill the room left beside whole files."""
    big = [name for name, size in files.items() if size > rooms[-1]]
    best = None
    for extra in range(9):
        cuts = {name: math.ceil(files[name] / rooms[-1]) + extra for name in big}
        items = [(name, size) for name, size in files.items() if name not in cuts]
        for name, n in cuts.items():
            piece = math.ceil(files[name] / n)
            items += [(f"{name}.part-{i:02d}", min(piece, files[name] - i * piece)) for i in range(n)]
        bins = first_fit(items, rooms)
        if bins is not None and (best is None or len(bins) < len(best[1])):
            best = (cuts, bins)
    if best is None:
        raise SystemExit("no layout fits: a file is larger than the calls can carry")
    return best


def layout(cache: Path, root: Path, base: list[str]) -> None:
    payload = sorted(p for p in (cache / "payload").iterdir() if p.is_file())
    files = {p.name: p.stat().st_size for p in payload}
    tree = tree_size(root)
    carried_first = sum(folder_size(root / b) for b in base)
    part_room = min(PART_LIMIT, CALL_LIMIT - tree - MARGIN)
    first_room = CALL_LIMIT - tree - carried_first - MARGIN
    cuts, bins = plan_parts(files, [first_room, part_room])
    # The call that completes the pybullet source comes as early as possible: its build runs for minutes in the
    # background while later calls carry the rest. The first call keeps its place (it also carries the base set).
    def last_piece_of_sdist(content: list[tuple[str, int]]) -> int:
        return 0 if any(n.startswith("pybullet") for n, _ in content) else 1
    bins = bins[:1] + sorted(bins[1:], key=last_piece_of_sdist)

    for old in root.glob(PREFIX + "*"):
        shutil.rmtree(old)
    pieces_dir = cache / "pieces"
    shutil.rmtree(pieces_dir, ignore_errors=True)
    pieces_dir.mkdir()
    for name, n in cuts.items():
        piece = math.ceil(files[name] / n)
        # `split -b` writes NAME.part-00, NAME.part-01, ... (numeric suffixes keep the order of `ls`).
        subprocess.run(["split", "-b", str(piece), "-d", "-a", "2", str(cache / "payload" / name),
                        str(pieces_dir / f"{name}.part-")], check=True)
    holders = {name: [] for name in cuts}
    for call, content in enumerate(bins, start=1):
        for item, _ in content:
            if ".part-" in item:
                if f"{PREFIX}{call}" not in holders[item.split(".part-")[0]]:
                    holders[item.split(".part-")[0]].append(f"{PREFIX}{call}")
    whole_sums = {name: sha256(cache / "payload" / name) for name in cuts}

    print(f"working tree that travels with every call: {tree / MIB:.1f} MiB")
    for call, content in enumerate(bins, start=1):
        part = root / f"{PREFIX}{call}"
        part.mkdir()
        for item, _ in content:
            source = pieces_dir / item if ".part-" in item else cache / "payload" / item
            try:
                os.link(source, part / item)  # the same bytes twice would double the disk it takes
            except OSError:
                shutil.copy2(source, part / item)
        (part / "SHA256SUMS").write_text("".join(f"{sha256(part / item)}  {item}\n" for item, _ in content))
        joins = sorted({item.split(".part-")[0] for item, _ in content if ".part-" in item})
        (part / "JOINS").write_text("".join(
            f"{whole_sums[n]} {n} {cuts[n]} {','.join(holders[n])}\n" for n in joins))
        size = folder_size(part)
        with_base = [*base, part.name] if call == 1 else [part.name]
        total = tree + size + (carried_first if call == 1 else 0)
        print(f"call {call}: carry {with_base}  ({total / MIB:.1f} MiB with the working tree, limit 64)")
        for item, item_size in content:
            print(f"    {item}  {item_size / MIB:.1f} MiB")
        if total > CALL_LIMIT:
            raise SystemExit(f"call {call} would carry {total / MIB:.1f} MiB, more than 64 MiB")
    print(f"{len(bins)} calls, back to back (the machine keeps carried folders only while warm, 30 s after a "
          f"call); start each command with `bash scripts/device_install.sh`")


def requirement_names(wheel: Path) -> list[tuple[str, str]]:
    """(name, the whole requirement) for each Requires-Dist of a wheel that applies on the machine."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    needs = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is None or req.marker.evaluate({**DEVICE_MARKERS, "extra": ""}):
            needs.append((normalise(req.name), str(req)))
    return needs


def provided(root: Path) -> set[str]:
    """Every distribution the machine will have: its own, the base wheel set's and the bundle's."""
    have = read_names(HERE / "device_packages.txt") | read_names(HERE / "device_bundle.txt")
    have |= {wheel_name(p) for p in (root / ".whl").glob("*.whl")}
    return have


def requires(cache: Path, root: Path) -> int:
    have = provided(root)
    uncovered = 0
    for wheel in sorted((cache / "wheels").glob("*.whl")):
        for name, req in requirement_names(wheel):
            if PROVIDED_AS.get(name, name) not in have:
                print(f"{wheel.name}: needs {req}, which neither the machine nor the bundle has")
                uncovered += 1
            elif "[" in req.split(";")[0]:
                print(f"{wheel.name}: needs {req}; {name} is there, the needs of the extra are not checked")
    print(f"{uncovered} requirements not met there (the import trace, `trace`, says which of them are loaded)")
    return uncovered


def trace(modules: list[str], step: str | None, root: Path) -> int:
    """Imports MODULES (and steps STEP once on the CPU), then maps every loaded module's file to the
    distribution that installed it."""
    before = set(sys.modules)
    for module in modules:
        importlib.import_module(module)
    if step:
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the tasks)

        env = gym.make(step, num_envs=1, obs_mode="state", sim_backend="cpu")
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()
        print(f"{step}: one step on the CPU done")
    owner = {}
    for dist in md.distributions():
        for f in dist.files or []:
            owner[os.path.realpath(dist.locate_file(f))] = (dist.metadata["Name"], dist.version)
    loaded = {}
    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None)
        if path and os.path.realpath(path) in owner:
            loaded.setdefault(owner[os.path.realpath(path)], []).append(name)
    sources = [("on the machine", read_names(HERE / "device_packages.txt")),
               ("in .whl", {wheel_name(p) for p in (root / ".whl").glob("*.whl")}),
               ("in the bundle", read_names(HERE / "device_bundle.txt")), ("the project", {"zarl"})]
    missing = 0
    for (dist, version), names in sorted(loaded.items(), key=lambda kv: kv[0][0].lower()):
        key = PROVIDED_AS.get(normalise(dist), normalise(dist))
        where = next((label for label, names_there in sources if key in names_there), None)
        if where is None:
            missing += 1
            # Who asked for it here: a newer version of a package the machine has may need what its own does not.
            wanted_by = sorted(d for d, _ in loaded if any(normalise(re.split(r"[ ;<>=!~\[(]", r)[0]) == key
                                                            for r in md.requires(d) or []))
            where = f"NOT THERE (needed here by {', '.join(wanted_by) or 'nothing listed'})"
        print(f"{dist} {version}: {len(names)} modules, {where}")
    print(f"{len(loaded)} distributions loaded, {missing} of them not on the machine nor in the bundle")
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("layout")
    p.add_argument("cache", type=Path)
    p.add_argument("root", type=Path)
    p.add_argument("--base", nargs="*", default=[".whl", ".gl"], help="folders the first call carries too")
    p = sub.add_parser("requires")
    p.add_argument("cache", type=Path)
    p.add_argument("--root", type=Path, default=HERE.parent)
    p = sub.add_parser("trace")
    p.add_argument("modules", nargs="*", default=["envs.maniskill", "envs.maniskill.put_on_plate",
                                                  "envs.maniskill.vector", "envs.maniskill.expert",
                                                  "envs.maniskill.demos"])
    p.add_argument("--step", help="a ManiSkill task to step once, e.g. PickCube-v1")
    p.add_argument("--root", type=Path, default=HERE.parent)
    args = parser.parse_args()
    if args.command == "layout":
        layout(args.cache, args.root, args.base)
    elif args.command == "requires":
        requires(args.cache, args.root)
    else:
        sys.exit(1 if trace(args.modules, args.step, args.root) else 0)


if __name__ == "__main__":
    main()
