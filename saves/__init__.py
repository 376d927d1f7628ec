"""Save files: the append-only `.wzs` world format (and PLY import/export in `saves.ply`).

Owns: reading, validating and writing world files; see saves/FORMAT.md for the byte layout.
Does not own: the world model (`engine`), generation or UI. Imports engine, never the reverse.
"""

from saves.errors import SaveFormatError, WorldBusyError
from saves.format import (FORMAT_VERSION, LoadedWorld, WorldInfo, WorldWriter, load_world,
                          read_world_info, save_world)
from saves.limits import LoadLimits

__all__ = ["FORMAT_VERSION", "LoadLimits", "LoadedWorld", "SaveFormatError", "WorldBusyError",
           "WorldInfo", "WorldWriter", "load_world", "read_world_info", "save_world"]
