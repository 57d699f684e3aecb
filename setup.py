"""Everything else is in setup.cfg; cffi's compiled modules can only be named here."""

import cffi  # noqa: F401 (a build without cffi must fail here, not install without the module)
from setuptools import setup

setup(
    cffi_modules=[
        "build_backend/native_build.py:drain",
        "build_backend/native_build.py:pacer",
        "build_backend/native_build.py:native",
    ]
)
