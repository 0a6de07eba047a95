"""Config files: `path/to/config.py[:variant]` from any directory, or a shipped config by name.

The shipped configs are the top-level configs/ directory, installed as the `mnist_jax.configs`
package; every config's `get_config(variant)` takes an optional variant (e.g. 'quick').
"""

import importlib.util
import types
from pathlib import Path

import ml_collections

from mnist_jax.errors import ConfigError


def import_file(path: Path, prefix: str) -> types.ModuleType:
    """Runs a Python file as a module of its own, as ml_collections' --config=path does."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"{path} failed to load ({type(e).__name__}: {first})") from None
    return module


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
    return module.get_config(variant) if variant else module.get_config()


def _shipped(name: str) -> types.ModuleType:
    import importlib
    import pkgutil

    from mnist_jax import configs

    names = sorted(m.name for m in pkgutil.iter_modules(configs.__path__))
    if name not in names:
        raise ConfigError(f"unknown config {name!r}; shipped: {', '.join(names)} (or a path)")
    return importlib.import_module(f"mnist_jax.configs.{name}")
