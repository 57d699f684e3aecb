"""Everything else is in setup.cfg; cffi's compiled module can only be named here."""

from setuptools import setup

setup(cffi_modules=["member/inbound_drain_build.py:ffibuilder"])
