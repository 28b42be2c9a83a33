"""The standard 3DGS .ply file: one vertex element per Gaussian with float properties

    x y z  nx ny nz  f_dc_0..2  f_rest_0..f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

as the original 3DGS code, gsplat and nerfstudio write them: opacity is a logit, scales are logs, rot is
a quaternion w x y z (not necessarily normalised), the normals are unused zeros, and f_rest is stored
channel-major (all red coefficients 1..K-1, then green, then blue). Reading takes the properties by name
in any order, as float32 or float64, in binary little- or big-endian files; writing is binary
little-endian float32, so a cloud of float32 tensors round-trips bit for bit. numpy only: no plyfile.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from envs.gaussians.cloud import GaussianCloud, sh_degree_of

_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
              "char": "i1", "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
              "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4"}


def property_names(num_sh_coeffs: int) -> list[str]:
    rest = 3 * (num_sh_coeffs - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(path: str | Path, cloud: GaussianCloud) -> None:
    c = cloud.detach().to("cpu")
    n, k = len(c), c.sh.shape[1]
    rest = c.sh[:, 1:].transpose(1, 2).reshape(n, 3 * (k - 1))  # channel-major, as 3DGS writes it
    columns = [c.means, torch.zeros(n, 3), c.sh[:, 0], rest, c.opacity_logits[:, None], c.log_scales, c.quats]
    data = torch.cat([t.to(torch.float32) for t in columns], 1).numpy().astype("<f4")
    names = property_names(k)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())


def read_ply(path: str | Path) -> GaussianCloud:
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path} is not a .ply file (no 'ply' magic or no end_header)")
    body_start = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", "replace").splitlines()
    fmt, count, props, element = None, None, [], None
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif count is None:
                raise ValueError(f"{path}: element {element!r} before the vertex element is not supported")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list":
                raise ValueError(f"{path}: list property {words[-1]!r} in the vertex element is not a 3DGS layout")
            if words[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: unknown property type {words[1]!r}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: format {fmt!r} is not supported (binary_little_endian or binary_big_endian)")
    if count is None:
        raise ValueError(f"{path}: no vertex element")
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + t) for name, t in props])
    if len(raw) - body_start < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated ({len(raw) - body_start} bytes of vertex data, "
                         f"{count * dtype.itemsize} expected for {count} Gaussians)")
    table = np.frombuffer(raw, dtype, count, body_start)
    names = set(table.dtype.names)
    rest = sorted((p for p in names if p.startswith("f_rest_")), key=lambda p: int(p.split("_")[-1]))
    if len(rest) % 3:
        raise ValueError(f"{path}: {len(rest)} f_rest properties is not a multiple of 3")
    k = len(rest) // 3 + 1
    sh_degree_of(k)
    needed = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in needed if p not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS file, missing properties {missing}")

    def cols(keys):
        return torch.from_numpy(np.stack([table[key].astype(np.float32) for key in keys], 1)) if keys else None

    n = count
    sh = torch.zeros(n, k, 3)
    sh[:, 0] = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        sh[:, 1:] = cols(rest).reshape(n, 3, k - 1).transpose(1, 2)
    return GaussianCloud(cols(["x", "y", "z"]), cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
                         cols(["scale_0", "scale_1", "scale_2"]), cols(["opacity"])[:, 0], sh)
