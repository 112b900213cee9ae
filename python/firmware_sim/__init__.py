"""Boot a firmware-sim virtual storage subsystem from Python tests.

- :class:`Client`: the control API (volumes, maps, groups, sessions, events).
- :class:`Subsystem`: one running daemon on a fresh data directory and free
  ports, with ``uri(volume)``, ``api_url``, ``run(*cli_args)``, ``crash()``,
  ``ipl()`` and ``reset()``.
- The pytest plugin (``firmware_sim.pytest_plugin``, registered on install)
  provides the ``subsystem`` and ``subsystem_factory`` fixtures.
"""

from .client import ApiError, ApiUnreachable, Client
from .daemon import BootError, Subsystem, find_binary

__all__ = ["ApiError", "ApiUnreachable", "BootError", "Client", "Subsystem", "find_binary"]
__version__ = "0.1.0"
