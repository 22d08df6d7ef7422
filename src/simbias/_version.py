"""The package version (its own module, so storage and the CLI read it without importing the package)."""

__version__ = "0.1.0"
