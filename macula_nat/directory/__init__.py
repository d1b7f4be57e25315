"""Where nodes publish their records and find each other and the relays: one interface, an
embedded backend (the default) and the Mainline DHT (:mod:`.mainline`, imported on demand).
"""

from .directory import Directory, DirectoryError
from .embedded import DirectoryStatistics, EmbeddedDirectory
from .record import NodeRecord, RecordError

__all__ = [
    "Directory",
    "DirectoryError",
    "DirectoryStatistics",
    "EmbeddedDirectory",
    "NodeRecord",
    "RecordError",
]
