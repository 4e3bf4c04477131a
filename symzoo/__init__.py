"""symzoo: model zoos of standard and asymmetric networks, generated on Ray and stored as Parquet."""

__version__ = "0.1.0"
