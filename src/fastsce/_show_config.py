"""``fastsce.show_config()``: how this copy of fastsce was built and what it runs.

Build-time facts (compiler, flags, OpenMP) come from ``fastsce/_build_info.py``,
which setup.py writes when it compiles the kernels; run-time facts (the vector
code path chosen for this CPU, OpenMP, the thread count) are asked from the
compiled modules.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from typing import Any, Literal, overload

import numpy as np

from . import _config, _kernels
from ._version import __version__

__all__ = ["show_config"]


def _build_info() -> dict[str, Any]:
    try:
        module = importlib.import_module("fastsce._build_info")
    except ImportError:  # built by something other than setup.py
        return {}
    info = getattr(module, "BUILD_INFO", {})
    return dict(info) if isinstance(info, dict) else {}


def _config_dict() -> dict[str, dict[str, Any]]:
    build = _build_info()
    openmp = bool(_kernels.openmp_enabled())
    requested_threads = _config.get_num_threads()
    compiler = build.get("compiler_version") or build.get("compiler") or "unknown"
    if build.get("compiler_type") and build.get("compiler"):
        compiler = f"{compiler} [{build['compiler_type']}: {build['compiler']}]"
    return {
        "fastsce": {
            "version": __version__,
            "location": os.path.dirname(os.path.abspath(__file__)),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": f"{sys.platform}-{platform.machine()}",
            "numpy": np.__version__,
        },
        "build": {
            "compiler": compiler,
            "compile_flags": list(build.get("compile_args", [])),
            "link_flags": list(build.get("link_args", [])),
            "base_flags": list(build.get("base_flags", [])),
            "openmp": openmp,
            "openmp_request": build.get("openmp_request", "unknown"),
            "platform": build.get("platform", "unknown"),
            "python": build.get("python", "unknown"),
            "cython": build.get("cython", "unknown"),
            "numpy": build.get("numpy", "unknown"),
            "macosx_deployment_target": build.get("macosx_deployment_target", ""),
        },
        "runtime": {
            "simd_path": _kernels.simd_path(),
            "simd_cap": os.environ.get("FASTSCE_SIMD", ""),
            "openmp": openmp,
            "num_threads": requested_threads if openmp else 1,
            "requested_threads": requested_threads,
        },
    }


def _format(config: dict[str, dict[str, Any]]) -> str:
    build, runtime, python = config["build"], config["runtime"], config["python"]

    def flags(values: list[str]) -> str:
        return " ".join(values) if values else "(none)"

    if build["openmp"]:
        openmp = "enabled"
    elif build["openmp_request"] == "off":
        openmp = "disabled (built with FASTSCE_OPENMP=0): kernels run on one thread"
    else:
        openmp = "disabled (compiler without OpenMP support): kernels run on one thread"
    if runtime["openmp"]:
        threads = (
            f"{runtime['num_threads']} (fastsce.set_num_threads(n) changes it; inputs "
            f"below {_config.PARALLEL_MIN_ELEMENTS} elements use 1, counting "
            f"{_config.ROW_COST_ELEMENTS} more per row)"
        )
    else:
        threads = "1 (no OpenMP; set_num_threads has no effect)"
    platform_ = build["platform"]
    if build["macosx_deployment_target"]:
        platform_ += f" (MACOSX_DEPLOYMENT_TARGET={build['macosx_deployment_target']})"
    simd = runtime["simd_path"]
    if runtime["simd_cap"]:
        simd += f" (capped by FASTSCE_SIMD={runtime['simd_cap']})"
    rows = [
        ("fastsce", f"{config['fastsce']['version']} ({config['fastsce']['location']})"),
        ("python", f"{python['version']} ({python['implementation']}, {python['platform']})"),
        ("numpy", f"{python['numpy']} (built against {build['numpy']})"),
        ("", ""),
        ("build", ""),
        ("  compiler", build["compiler"]),
        ("  compile flags", flags(build["compile_flags"])),
        ("  link flags", flags(build["link_flags"])),
        ("  base flags", flags(build["base_flags"])),
        ("  platform", platform_),
        ("  cython", build["cython"]),
        ("  openmp", openmp),
        ("", ""),
        ("run time", ""),
        ("  simd path", simd),
        ("  openmp", "enabled" if runtime["openmp"] else "disabled"),
        ("  threads", threads),
    ]
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(
        f"{name + ':' if value else name:<{width}}{value}".rstrip() for name, value in rows
    )


@overload
def show_config(mode: Literal["stdout"] = ...) -> None: ...
@overload
def show_config(mode: Literal["dicts"]) -> dict[str, dict[str, Any]]: ...


def show_config(mode: str = "stdout") -> dict[str, dict[str, Any]] | None:
    """Print how fastsce was built and what it uses at run time.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, optional
        "stdout" prints; "dicts" returns the same information instead.

    Returns
    -------
    dict or None
        For "dicts": {"fastsce", "build", "runtime", ...} sections of plain values
        (version, compiler and flags, OpenMP, the vector path chosen for this CPU such
        as "avx2+fma" or "avx512", the thread count); None for "stdout".

    Raises
    ------
    ValueError
        An unknown mode.

    Examples
    --------
    >>> import fastsce
    >>> config = fastsce.show_config("dicts")
    >>> config["runtime"]["simd_path"] in {"avx512", "avx2+fma", "baseline (sse2)",
    ...                                    "baseline (neon)", "baseline", "scalar"}
    True
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"`mode` must be 'stdout' or 'dicts', got {mode!r}")
    config = _config_dict()
    if mode == "dicts":
        return config
    print(_format(config))
    return None
