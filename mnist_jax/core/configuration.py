"""Config files: `path/to/config.py[:variant]` from any directory, or a shipped config by name.

The shipped configs are the top-level configs/ directory, installed as the `mnist_jax.configs`
package; every config's `get_config(variant)` takes an optional variant (e.g. 'quick').
"""

import importlib.util
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

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
        module = _shipped(path_str)
    else:
        if not path.is_file():
            raise ConfigError(f"config file {path_str!r} does not exist (e.g. configs/mlp.py)")
        module = import_file(path, "_config")
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path_str} defines no get_config(variant) function")
    if variant:
        return call_file_function(Path(module.__file__), module.get_config, variant)
    return call_file_function(Path(module.__file__), module.get_config)


def shipped_names() -> list[str]:
    """The configs that ship with the package: configs/NAME.py, loadable by NAME."""
    import pkgutil

    from mnist_jax import configs

    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__))


def _shipped(name: str) -> types.ModuleType:
    import importlib

    names = shipped_names()
    if name not in names:
        raise ConfigError(f"unknown config {name!r}; shipped: {', '.join(names)} (or a path)")
    return importlib.import_module(f"mnist_jax.configs.{name}")
