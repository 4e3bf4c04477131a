"""Models, data, training and storage of symzoo's model zoos."""

from symzoo.zoo.store import Zoo, open_zoo

__all__ = ["Zoo", "open_zoo"]
