"""Build the fastsce extension modules.

Each Cython kernel module is compiled together with the C row helpers in
csrc/.  Flags: -O3 (or /O2), never -march=native: the vector code paths are
chosen at run time (csrc/fsce_rows.c).  OpenMP is used when the compiler
accepts it; set FASTSCE_OPENMP=0 to build without it (the kernels then run on
one thread).
"""
import os
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_MODULES = ["_softmax_kernels", "_loss_kernels"]
C_HELPERS = ["csrc/fsce_rows.c"]


def compiler_accepts(compiler, flags):
    """True when `compiler` compiles and links an OpenMP program with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        compile_args = ["/O2"] if msvc else ["-O3", "-fno-math-errno"]
        openmp_args = ["/openmp"] if msvc else ["-fopenmp"]
        use_openmp = os.environ.get("FASTSCE_OPENMP", "1") != "0" and compiler_accepts(
            self.compiler, openmp_args
        )
        if not use_openmp:
            print("fastsce: building without OpenMP (kernels run single-threaded)", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += compile_args + (openmp_args if use_openmp else [])
            if use_openmp and not msvc:
                ext.extra_link_args += openmp_args
        super().build_extensions()


extensions = [
    Extension(
        f"fastsce.{name}",
        sources=[f"src/fastsce/{name}.pyx", *C_HELPERS],
        include_dirs=["csrc", np.get_include()],
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
