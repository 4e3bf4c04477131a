"""symzoo: model zoos of standard and asymmetric networks, generated on Ray and stored as Parquet.

The packages ``symzoo.zoo``, ``symzoo.pipelines``, ``symzoo.analysis`` and ``symzoo.cluster`` live in the
repository's top-level folders ``zoo/``, ``pipelines/``, ``analysis/`` and ``cluster/``; an install maps them under
this one import name (setuptools' package-dir), so nothing but ``symzoo`` lands in site-packages. Run from a source
checkout without an install (a device machine, a Ray job's working directory), the same names resolve to those
folders through this package's path.
"""

from pathlib import Path

__version__ = "0.1.0"

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "zoo" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (a package's __path__)
