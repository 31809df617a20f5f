"""Exceptions raised by skysift; each message names the file or key at fault."""

from __future__ import annotations

__all__ = ["ConfigError", "InputDataError", "ProductError", "SkysiftError"]


class SkysiftError(Exception):
    """Base class: an error the CLI reports as one clear line (exit status 2)."""


class ConfigError(SkysiftError, ValueError):
    """The configuration is invalid: a wrong type, an unknown key or a missing path."""


class InputDataError(SkysiftError, ValueError):
    """An input file is unusable: unreadable, corrupt, wrong shape, no WCS, all NaN..."""


class ProductError(SkysiftError):
    """A skysift data product is unreadable or does not follow the product format."""
