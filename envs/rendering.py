"""Headless offscreen rendering of MuJoCo cameras, with the OpenGL backend chosen automatically.

MuJoCo's Python package reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and PyOpenGL
reads ``PYOPENGL_PLATFORM`` once, when ``OpenGL`` is first imported. So the backend has to be
chosen before either import: ``envs/franka/__init__.py`` calls :func:`choose_gl_backend` before it
imports anything that imports mujoco. The rule:

* the user's ``MUJOCO_GL``, if set, always wins;
* otherwise ``egl`` when an NVIDIA GPU is visible and libEGL loads (hardware-accelerated, no X
  server; Debian/Ubuntu packages ``libegl1 libopengl0`` beside the NVIDIA driver);
* otherwise ``osmesa`` when libOSMesa loads (software rendering on the CPU; ``libosmesa6``);
* otherwise ``disable``: ``import mujoco`` and the state envs still work, and rendering raises
  an error that names the packages to install. (With ``MUJOCO_GL=egl`` and no libEGL, ``import
  mujoco`` itself fails, which would take the state envs down with it.)

:class:`OffscreenRenderer` creates its GL context from the chosen backend's own module
(``mujoco.egl`` / ``mujoco.osmesa``) rather than through ``mujoco.Renderer``, so it still works if
some other module imported mujoco before the choice was made. It also renders several cameras
into preallocated arrays and exposes the expensive effects as switches (:class:`RenderOptions`):
shadows, reflections and multisampling cost about 10x on a CPU, so they are off by default.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import pathlib
import shutil
import subprocess
import weakref
from dataclasses import dataclass

import numpy as np

HEADLESS_BACKENDS = ("egl", "osmesa")
# Shared-library file names to try, newest first; dlopen searches LD_LIBRARY_PATH too.
_LIBRARY_NAMES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}
MISSING_GL_HELP = ("no headless OpenGL library could be loaded: install the Debian/Ubuntu packages "
                   "'libegl1 libopengl0' (NVIDIA GPU, with its driver) or 'libosmesa6' (CPU), "
                   "or set MUJOCO_GL")

# Renderers still open. They are closed at exit, while PyOpenGL and the GL display still work:
# left to the garbage collector during interpreter shutdown, freeing a GL context raises errors.
_open_renderers: "weakref.WeakSet[OffscreenRenderer]" = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_renderers() -> None:
    for renderer in list(_open_renderers):
        renderer.close()


def _register_exit_hook() -> None:
    """Close open renderers at exit, before the GL backend's own exit hook runs.

    ``mujoco.egl`` registers an exit hook that terminates the EGL display when its first context
    is created; exit hooks run last-registered-first, so ours is registered after that moment.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_open_renderers)
        _exit_hook_registered = True


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA GPU can be used: a device node exists, or nvidia-smi lists a GPU."""
    if pathlib.Path("/dev/nvidia0").exists():
        return True
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return False
    try:
        result = subprocess.run([nvidia_smi, "-L"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and b"GPU" in result.stdout


def gl_library_loadable(backend: str) -> bool:
    """True when the shared library behind ``backend`` ("egl" or "osmesa") can be opened."""
    for name in _LIBRARY_NAMES[backend]:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return True
        except OSError:
            continue
    return False


def choose_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (and a matching ``PYOPENGL_PLATFORM``) unless the user already did; return it.

    Must run before ``mujoco`` is imported for the choice to reach ``mujoco.Renderer``; this
    module's own :class:`OffscreenRenderer` only needs it before ``OpenGL`` is imported.
    """
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        if nvidia_gpu_present() and gl_library_loadable("egl"):
            backend = "egl"
        elif gl_library_loadable("osmesa"):
            backend = "osmesa"
        else:
            backend = "disable"
        os.environ["MUJOCO_GL"] = backend
    if backend in HEADLESS_BACKENDS:
        # PyOpenGL must talk to the same library as MuJoCo's context, or every GL call fails.
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def _gl_context_class(backend: str):
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    elif backend in ("glfw", "glx", "enable", "enabled", "on", "true", "1"):
        from mujoco.glfw import GLContext  # needs a display
    elif backend in ("disable", "disabled", "off", "false", "0"):
        raise RuntimeError(f"cannot render with MUJOCO_GL={backend!r}: {MISSING_GL_HELP}")
    else:
        raise ValueError(f"unknown MUJOCO_GL backend {backend!r}; use one of egl, osmesa, glfw")
    return GLContext


@dataclass(frozen=True)
class RenderOptions:
    """Image size and the expensive visual effects (all off by default: they cost ~10x on a CPU)."""

    width: int = 128
    height: int = 128
    shadows: bool = False
    reflections: bool = False
    multisamples: int = 0  # offscreen anti-aliasing samples per pixel; 0 = off

    def __post_init__(self) -> None:
        sizes = (self.width, self.height)
        if not all(isinstance(size, int) and size >= 1 for size in sizes):
            raise ValueError(f"render size must be positive integers, got {self.width}x{self.height}")
        if not isinstance(self.multisamples, int) or self.multisamples < 0:
            raise ValueError(f"multisamples must be an integer >= 0, got {self.multisamples!r}")


class OffscreenRenderer:
    """Renders named MuJoCo cameras of one model to uint8 RGB arrays (height, width, 3).

    One GL context per renderer; it is made current before every render, so renderers of several
    environments can share a thread. Not safe to use from two threads at once.
    """

    def __init__(self, model, options: RenderOptions = RenderOptions()):
        import mujoco  # imported here so that importing this module never fixes the GL backend

        self._gl_context = None
        self._mjr_context = None
        self._mujoco = mujoco
        self.options = options
        self.backend = choose_gl_backend()
        # The offscreen framebuffer is sized and multisampled from the model's visual settings
        # when the MjrContext is created, so set them first.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, options.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, options.height)
        model.vis.quality.offsamples = options.multisamples
        self._model = model

        self._gl_context = _gl_context_class(self.backend)(options.width, options.height)
        _register_exit_hook()
        self._gl_context.make_current()
        self._mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr_context)

        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = options.shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = options.reflections
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False  # never in view; saves a pass
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._viewport = mujoco.MjrRect(0, 0, options.width, options.height)
        # mjr_readPixels returns rows bottom-up; read into a scratch buffer, then flip into `out`.
        self._upside_down = np.empty((options.height, options.width, 3), dtype=np.uint8)
        _open_renderers.add(self)

    def render(self, data, camera_id: int, out: np.ndarray | None = None) -> np.ndarray:
        """Render camera ``camera_id`` for the state in ``data``; write into ``out`` if given."""
        mujoco = self._mujoco
        if self._mjr_context is None:
            raise RuntimeError("render() called on a closed OffscreenRenderer")
        if out is None:
            out = np.empty_like(self._upside_down)
        self._gl_context.make_current()
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._viewport, self._scene, self._mjr_context)
        mujoco.mjr_readPixels(self._upside_down, None, self._viewport, self._mjr_context)
        np.copyto(out, self._upside_down[::-1])
        return out

    def close(self) -> None:
        """Free the GL resources (the MjrContext while its GL context is still current)."""
        if self._mjr_context is not None:
            self._gl_context.make_current()
            self._mjr_context.free()
            self._mjr_context = None
        if self._gl_context is not None:
            self._gl_context.free()
            self._gl_context = None
        _open_renderers.discard(self)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down GL already
            pass
