"""Public names loaded on first use, so that importing a layer (and the CLI) stays fast.

torch, numba, sympy, scipy and xarray take seconds to import together; a
package that lists its public names here imports each one's module only
when the name is first read (PEP 562).
"""

from __future__ import annotations

import sys
from importlib import import_module


def lazy_exports(package: str, public: dict[str, str]):
    """(__getattr__, __dir__) for `package`, whose name -> module map is `public`.

    >>> getattr_, dir_ = lazy_exports("theory", {"Setup": "theory.setup"})
    >>> getattr_("Setup").__name__
    'Setup'
    """

    def __getattr__(name: str):
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(public[name])
        value = module if public[name] == f"{package}.{name}" else getattr(module, name)
        vars(sys.modules[package])[name] = value  # looked up once
        return value

    def __dir__():
        return sorted(set(public) | {k for k in vars(sys.modules[package]) if not k.startswith("_")})

    return __getattr__, __dir__
