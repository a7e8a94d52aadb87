"""Build the fastsce extension modules.

The one kernel module (fastsce._kernels) is compiled together with the C row helpers in
csrc/.  Flags: -O3 (or /O2), never -march=native: the vector code paths are
chosen at run time (csrc/fsce_dispatch.c).

OpenMP, per platform:

* GCC / Clang with libgomp or libomp (Linux, MinGW): ``-fopenmp``;
* Apple Clang (macOS): ``-Xpreprocessor -fopenmp -lomp`` with libomp from
  Homebrew (``brew install libomp``); its prefix is taken from
  FASTSCE_LIBOMP_PREFIX, else /opt/homebrew/opt/libomp or /usr/local/opt/libomp;
* MSVC (Windows): ``/openmp``;
* any other compiler: set FASTSCE_OPENMP_CFLAGS (and FASTSCE_OPENMP_LDFLAGS) to
  the flags it needs; they are then the only ones tried.

FASTSCE_OPENMP selects what happens: unset or "auto" uses OpenMP when the
compiler accepts it and builds without it otherwise; "0" builds without it
(the kernels then run on one thread); "1" requires it (the build fails when
the compiler does not accept any of the flags above: wheel builds use this).

The compiler, flags and OpenMP choice are written to fastsce/_build_info.py
in the build directory (and next to the sources for an in-place or editable
build); fastsce.show_config() prints them.
"""

import os
import pathlib
import platform
import pprint
import shlex
import subprocess
import sys
import sysconfig
import tempfile

import Cython
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: the one extension module: every kernel, with the C row helpers compiled into it once
KERNEL_MODULES = ["_kernels"]
#: Cython files it includes or cimports (a change rebuilds it)
CYTHON_DEPENDS = sorted(
    str(path)
    for pattern in ("*.pxd", "*.pxi")
    for path in pathlib.Path("src/fastsce").glob(pattern)
)
#: the row helpers: one translation unit per instruction set, and the dispatcher; then
#: fsce_xla_ffi.c, the XLA FFI side of fastsce.jax's handler, against the pinned C API
#: header in csrc/third_party/xla_ffi/ (so the build never needs jax)
C_HELPERS = [
    "csrc/fsce_dispatch.c",
    "csrc/fsce_rows_baseline.c",
    "csrc/fsce_rows_avx2.c",
    "csrc/fsce_rows_avx512.c",
    "csrc/fsce_xla_ffi.c",
]
#: the extensions are rebuilt when any of these change
C_HEADERS = sorted(str(path) for path in pathlib.Path("csrc").glob("**/*.h"))
BUILD_INFO_MODULE = "_build_info.py"


def log(message):
    print(f"fastsce: {message}", file=sys.stderr, flush=True)


def openmp_mode():
    value = os.environ.get("FASTSCE_OPENMP", "auto").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("1", "on", "true", "yes", "require"):
        return "require"
    raise SystemExit(f"fastsce: FASTSCE_OPENMP must be auto, 0 or 1, got {value!r}")


def openmp_candidates(compiler_type):
    """(compile_args, link_args) pairs to try, in order."""
    custom = os.environ.get("FASTSCE_OPENMP_CFLAGS")
    if custom:  # the caller knows the flags (another compiler, another libomp)
        return [(shlex.split(custom), shlex.split(os.environ.get("FASTSCE_OPENMP_LDFLAGS", "")))]
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        prefixes = [
            os.environ.get("FASTSCE_LIBOMP_PREFIX", ""),
            "/opt/homebrew/opt/libomp",
            "/usr/local/opt/libomp",
        ]
        for prefix in dict.fromkeys(p for p in prefixes if p and os.path.isdir(p)):
            candidates.append(
                (
                    ["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                    [f"-L{prefix}/lib", "-lomp"],
                )
            )
    return candidates


def compiler_accepts(compiler, compile_args, link_args):
    """True when `compiler` compiles and links an OpenMP program with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        except Exception:
            return False
    return True


def compiler_description(compiler):
    """(type, command, version line) of the C compiler, as well as can be told."""
    kind = compiler.compiler_type
    if kind == "msvc":
        if not getattr(compiler, "initialized", True):
            try:
                compiler.initialize()
            except Exception:
                pass
        command = getattr(compiler, "cc", "cl.exe")
        version_args = [command]
        base_flags = list(getattr(compiler, "compile_options", []))
    else:
        command_line = list(getattr(compiler, "compiler_so", None) or ["cc"])
        command = command_line[0]
        version_args = [command, "--version"]
        base_flags = command_line[1:]
    version = ""
    try:
        result = subprocess.run(version_args, capture_output=True, text=True, timeout=30)
        lines = (result.stdout + result.stderr).strip().splitlines()
        version = lines[0].strip() if lines else ""
    except Exception:
        pass
    return kind, command, version, base_flags


class BuildExt(build_ext):
    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        # -ffp-contract=fast: a * b + c may become one FMA, which changes bits, so the
        # choice is pinned (GCC's default for GNU C; a -std=c11 build or Clang would not
        # contract across statements); the FMA paths spell their one necessary fused
        # step with intrinsics anyway
        # -falign-functions=64 -falign-loops=64: the row helpers' hot loops start on a cache
        # line, so their speed does not move with the size of unrelated code linked before
        # them (a 16-byte shift cost 5% on AMD Zen; the padding runs once per loop entry)
        compile_args = (
            ["/O2"]
            if msvc
            else [
                "-O3",
                "-fno-math-errno",
                "-ffp-contract=fast",
                "-falign-functions=64",
                "-falign-loops=64",
            ]
        )
        link_args = []
        mode = openmp_mode()
        openmp = None
        if mode != "off":
            for candidate in openmp_candidates(self.compiler.compiler_type):
                if compiler_accepts(self.compiler, *candidate):
                    openmp = candidate
                    break
        if openmp is not None:
            log(
                f"building with OpenMP (compile: {' '.join(openmp[0])}; "
                f"link: {' '.join(openmp[1]) or '-'})"
            )
            compile_args += openmp[0]
            link_args += openmp[1]
        elif mode == "require":
            raise SystemExit(
                "fastsce: FASTSCE_OPENMP=1 but the compiler accepts no OpenMP flag "
                "(on macOS: brew install libomp, or set FASTSCE_LIBOMP_PREFIX)"
            )
        else:
            reason = "FASTSCE_OPENMP=0" if mode == "off" else "the compiler does not accept OpenMP"
            log(f"building without OpenMP ({reason}): kernels run single-threaded")
        for ext in self.extensions:
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
        kind, command, version, base_flags = compiler_description(self.compiler)
        self.build_info = {
            "compiler_type": kind,
            "compiler": command,
            "compiler_version": version,
            "base_flags": base_flags,
            "compile_args": compile_args,
            "link_args": link_args,
            "openmp": openmp is not None,
            "openmp_request": mode,
            "platform": sysconfig.get_platform(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cython": Cython.__version__,
            "numpy": np.__version__,
            "macosx_deployment_target": os.environ.get("MACOSX_DEPLOYMENT_TARGET", ""),
        }
        super().build_extensions()

    def run(self):
        super().run()
        info = getattr(self, "build_info", None)
        if info is None:  # nothing was compiled (no extensions)
            return
        targets = [os.path.join(self.build_lib, "fastsce")]
        if self.inplace:  # --inplace, or an editable install
            build_py = self.get_finalized_command("build_py")
            targets.append(build_py.get_package_dir("fastsce"))
        text = (
            '"""Build configuration, written by setup.py at build time (not tracked)."""\n\n'
            f"BUILD_INFO = {pprint.pformat(info, sort_dicts=False)}\n"
        )
        for directory in targets:
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, BUILD_INFO_MODULE), "w", encoding="utf-8") as f:
                f.write(text)


extensions = [
    Extension(
        f"fastsce.{name}",
        sources=[f"src/fastsce/{name}.pyx", *C_HELPERS],
        include_dirs=["csrc", np.get_include()],
        depends=C_HEADERS + CYTHON_DEPENDS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    )
    for name in KERNEL_MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
