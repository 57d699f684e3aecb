"""lanon.deploy: the deployment files (rules, units, Prometheus and Grafana configuration).

They ship inside the package so that the lab and `lanon` use them exactly as they are here.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def path(*parts: str) -> Traversable:
    """A shipped deployment file, e.g. path("prometheus", "prometheus.yml")."""
    return files(__name__).joinpath(*parts)
