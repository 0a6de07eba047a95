"""Config and study files: `path/to/file.py[:variant]` from any directory, or a shipped one by
name (`cnn:quick`, `dropout:reduced`).

The shipped configs are the top-level configs/ directory, installed as the `mnist_jax.configs`
package, and the shipped studies experiments/, installed as `mnist_jax.experiments`: a name
finds the same file in a checkout (an editable install maps the packages onto those
directories) and in an installed wheel. Every config's `get_config(variant)` takes an optional
variant (e.g. 'quick'), every study's `get_study(variant)` too.
"""

import importlib
import importlib.util
import os
import pkgutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

from mnist_jax.core.checks import closest
from mnist_jax.core.errors import ConfigError


def import_file(path: Path, prefix: str) -> types.ModuleType:
    """Runs a Python file as a module of its own, as ml_collections' --config=path does."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{path} failed to load ({_describe(e, path)})") from None
    return module


def call_file_function(path: Path, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, a function of a user's file (get_config, get_study): any error it raises
    becomes one line naming the file and the line, not a traceback."""
    try:
        return fn(*args)
    except ConfigError:
        raise
    except Exception as e:
        call = f"{fn.__name__}({', '.join(map(repr, args))})"
        raise ConfigError(f"{path}: {call} failed ({_describe(e, path)})") from None


def _describe(error: BaseException, path: Path) -> str:
    """'line N: Type: first line of the message' (the line: the file's deepest frame)."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    tb, target = error.__traceback__, os.path.realpath(path)
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return (f"line {line}: " if line else "") + f"{type(error).__name__}: {first}"


def load(spec: str) -> ml_collections.ConfigDict:
    """`path/to/config.py[:variant]`, or the name of a shipped config (`cnn`, `cnn:quick`)."""
    path_str, _, variant = spec.partition(":")
    path = Path(path_str)
    if not path.suffix and not path.exists():  # a name: the installed mnist_jax.configs.<name>
        names = shipped_names()
        if path_str not in names:
            raise ConfigError(f"config {path_str!r}: {_not_found(path_str, 'config')}")
        module = importlib.import_module(f"mnist_jax.configs.{path_str}")
    else:
        if not path.is_file():
            raise ConfigError(f"config {path_str!r}: {_not_found(path_str, 'config')}")
        module = import_file(path, "_config")
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path_str} defines no get_config(variant) function")
    if variant:
        return call_file_function(Path(module.__file__), module.get_config, variant)
    return call_file_function(Path(module.__file__), module.get_config)


# What a name may stand for: the package the shipped files of that kind are installed as.
_PACKAGES = {"config": "mnist_jax.configs", "study": "mnist_jax.experiments"}


def shipped_names(kind: str = "config") -> list[str]:
    """The configs (or studies) that ship with the package, each loadable by its NAME."""
    package = importlib.import_module(_PACKAGES[kind])
    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )


def resolve(spec: str, kind: str = "config") -> str:
    """`spec` (`path[:variant]` or `NAME[:variant]`) with a file path before the colon: a file
    as given, a shipped name as its installed file. Raises ConfigError naming the shipped ones.

    For what wants a file (ml_collections' --config flag, study files), so that a shipped name
    works from any directory and in an installed package.
    """
    path_str, colon, variant = spec.partition(":")
    if Path(path_str).is_file():
        return spec
    if path_str in shipped_names(kind):
        package = importlib.import_module(_PACKAGES[kind])
        return f"{Path(package.__path__[0]) / path_str}.py{colon}{variant}"
    raise ConfigError(f"{kind} {path_str!r}: {_not_found(path_str, kind)}")


def _not_found(path_str: str, kind: str) -> str:
    """'no such file or shipped config; did you mean X?' or '...; shipped: a, b, ...'."""
    names = shipped_names(kind)
    stem = Path(path_str).stem if path_str.endswith(".py") else path_str
    guess = closest(stem, names)
    hint = f"did you mean {guess!r}?" if guess else f"shipped: {', '.join(names)}"
    return f"no such file or shipped {kind}; {hint} (or the path of a .py file)"
