"""The ``vist3a`` command: thin wrappers over the library packages (no logic lives here)."""
