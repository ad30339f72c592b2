"""setuptools recipe: a C extension that consumes extensibletype slots."""

import subprocess
import sys
from pathlib import Path

import extensibletype
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent

# Compile-time ids from the key list.
subprocess.run(
    [sys.executable, "-m", "extensibletype", "header", str(HERE / "keys.txt"), "-o", str(HERE / "scale_ids.h")],
    check=True,
)

setup(
    ext_modules=[
        Extension(
            "scale_consumer",
            ["scale_consumer.c"],
            include_dirs=[extensibletype.get_include(), str(HERE)],
        )
    ]
)
