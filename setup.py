"""Build the Cython core of fastmp.

Every ``fastmp/*.pyx`` becomes one extension module. NumPy is deliberately
absent: fastmp must build and import without it.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTMP_DEBUG") == "1"
# FASTMP_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build (see
# README, "Sanitizers"); the interpreter must then run with libasan preloaded.
sanitize = os.environ.get("FASTMP_SANITIZE") == "1"
extra_compile_args = ["-O0", "-g"] if debug else ["-O3"]
extra_link_args = []
if sanitize:
    sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer"]
    extra_compile_args = ["-O1", "-g"] + sanitizers
    extra_link_args = sanitizers

extensions = [
    Extension(
        "fastmp." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=["fastmp"],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
        define_macros=[("_GNU_SOURCE", "1")],
    )
    for path in sorted(glob.glob("fastmp/*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
