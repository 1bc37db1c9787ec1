"""numpy code written by sympy's lambdify, kept on disk so that a later process runs it instead of
writing it again.

Printing numpy code for a large expression (lambdify, with its common subexpressions) and the
symbolic work before it (a Jacobian, a derivative) can take far longer than the numbers computed
with it. A stored function is its source exactly as lambdify wrote it, executed in lambdify's own
namespace, so a process that reads it gets the numbers of one that wrote it, bit for bit (a
process that writes the code executes the stored source too). Each file carries the SHA-256 of
its content: a damaged or half-written file is never executed, it is written again. The callers
(theory.regime_store, theory.exact_fit) name their files by digests of everything the code depends
on, so deleting any of them is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path

import sympy as sp

from theory import storage


def lambdify(args, expr, cse: bool = True) -> Callable:
    """numpy function of expr (common subexpressions computed once unless cse is False); no expression
    in its docstring (printing it there was a third of the time of deriving a closed form's regime)."""
    return sp.lambdify(args, expr, "numpy", cse=cse, docstring_limit=0)


def digest(*parts) -> str:
    """A short name for everything in parts (bytes, or anything str() spells)."""
    out = hashlib.sha256()
    for part in parts:
        out.update(part if isinstance(part, bytes) else str(part).encode())
        out.update(b"\0")
    return out.hexdigest()[:20]


def read(path: Path) -> bytes | None:
    """The payload of a file `write` wrote, or None if it is missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    checksum, _, payload = data.partition(b"\n")
    return payload if hashlib.sha256(payload).hexdigest().encode() == checksum else None


def write(path: Path, payload: bytes) -> None:
    """payload with its checksum, written atomically (a reader never sees half a file)."""
    sealed = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    storage.write_atomically(path, lambda tmp: Path(tmp).write_bytes(sealed))


@functools.cache
def _namespace() -> dict:
    """The globals lambdify gives numpy code (numpy's names, `numpy`, `builtins`, `range`)."""
    return dict(lambdify((), 0).__globals__)


def function(source: str, name: str) -> Callable:
    """The function `source` (lambdify's output, one `def`) defines; name labels its tracebacks."""
    local: dict = {}
    exec(compile(source, name, "exec"), dict(_namespace()), local)  # noqa: S102 (our own cache)
    (defined,) = local.values()
    return defined


def stored_function(path: Path, make: Callable[[], Callable]) -> Callable:
    """The function whose source is stored at path; make() (a lambdified function) is called and its
    source stored there only when the file is missing or damaged."""
    payload = read(path)
    if payload is None:
        payload = inspect.getsource(make()).encode()
        write(path, payload)
    return function(payload.decode(), f"<stored code {path.parent.name}/{path.name}>")
