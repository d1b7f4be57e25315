"""Where NAT profiles are published and found: one interface, an embedded backend (the default).

The Mainline-DHT backend joins behind the same :class:`Directory` interface.
"""

from .directory import Directory, DirectoryError
from .embedded import DirectoryStatistics, EmbeddedDirectory

__all__ = ["Directory", "DirectoryError", "DirectoryStatistics", "EmbeddedDirectory"]
