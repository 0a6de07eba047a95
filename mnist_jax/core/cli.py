"""One way to run an absl binary: help on stdout with exit 0, one-line errors, quiet interrupts.

absl's `app.run` exits 1 after `--help`, answers a bad flag with a "FATAL Flags parsing error"
line and a hint, and lets ml_collections' config flag raise from inside flag parsing, so a
missing config file, a typo in a `--config.key` or a config that fails to import ends in a
traceback. `run` parses the flags itself and turns every such failure into one line,
`error: ...`, naming the bad flag or value and what would be valid, with exit status 1.

Exit statuses of every binary: 0 success (and --help), 1 bad input (flags, config, data, ...),
130 interrupted (Ctrl-C), 75 training preempted by SIGTERM/SIGINT after saving a checkpoint
(rerun to resume); anything else is a crash or the status of a failed child process.
"""

import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from absl import app, flags, logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags

from mnist_jax.core import configuration, lifeline, logs
from mnist_jax.core.checks import closest
from mnist_jax.core.errors import DISK_ERRNOS, ConfigError, UserError

EXIT_ERROR = 1
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a checkpoint was saved; rerun (or requeue) to resume
EXIT_INTERRUPTED = 130

_SHORT_HELP = {"-h", "-?", "--help", "-help", "--helpshort", "-helpshort"}
_FULL_HELP = {"--helpfull", "-helpfull"}
_LIST_AT_MOST = 12  # valid names listed in an error message; beyond that, point to --help
_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string"}


def run(main: Callable[[list[str]], Any], flags_parser: Callable[[list[str]], Any] | None = None):
    """`app.run(main)` with `parse_flags` (or `flags_parser`) and one-line errors from main.

    main's app.UsageError and UserError become `error: <message>` and exit status 1, and so
    does an OSError of a full or read-only disk;
    KeyboardInterrupt becomes `interrupted` and exit status 130, without a traceback; a closed
    stdout pipe ends the program quietly.
    """

    def guarded_main(argv: Any) -> Any:
        try:
            return main(argv)
        except (app.UsageError, UserError) as e:
            exit_with(f"error: {e}")
        except OSError as e:  # one not caught nearer, where the directory is known
            if e.errno not in DISK_ERRNOS:
                raise
            where = f" {e.filename}" if e.filename else ""
            exit_with(f"error: cannot write{where} ({e.strerror}); free space or choose another "
                      "directory, and run the command again")  # fmt: skip

    lifeline.die_with_parent()
    try:
        app.run(guarded_main, flags_parser=flags_parser or parse_flags)
    except KeyboardInterrupt:
        exit_with("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `prog ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)


def exit_with(message: str, status: int = EXIT_ERROR) -> NoReturn:
    """Prints `message` to stderr and exits; in a multi-process JAX run, at once.

    jax.distributed's orderly shutdown waits at a barrier for every other process, which may be
    blocked waiting for this one (see platform.user_errors_exit), so such a process leaves
    without it.
    """
    print(message, file=sys.stderr, flush=True)
    jax = sys.modules.get("jax")
    if jax is not None and jax.distributed.is_initialized():
        logging.flush()
        logs.restore_stdout()
        sys.stdout.flush()
        os._exit(status)
    sys.exit(status)


def help_requested(argv: Sequence[str]) -> str | None:
    """'short' for -h/--help/--helpshort, 'full' for --helpfull, else None (up to a `--`)."""
    for arg in argv[1:]:
        if arg == "--":
            return None
        if arg in _SHORT_HELP:
            return "short"
        if arg in _FULL_HELP:
            return "full"
    return None


def usage(flag_values: flags.FlagValues = flags.FLAGS, full: bool = False) -> str:
    """The module docstring of the program, then its flags (all of them with `full`).

    The short form lists the flags of the program's own module and of mnist_jax's modules
    (e.g. the multi-process flags of platform.py), not absl's logging and debugging flags.
    """
    doc = (getattr(sys.modules["__main__"], "__doc__", None) or "").strip()
    if full:
        flag_text = flag_values.get_help()
    else:
        by_module = flag_values.flags_by_module_dict()
        modules = [sys.argv[0], *sorted(m for m in by_module if m.startswith("mnist_jax"))]
        flag_text = "\n".join(flag_values.module_help(m) for m in modules if m in by_module)
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None:  # `python -m mnist_jax.main`: its name rather than its file path
            flag_text = flag_text.replace(f"\n{sys.argv[0]}:", f"\n{spec.name}:", 1)
    more = "" if full else "\n\nabsl's own flags (logging, debugging) too: --helpfull"
    return f"{doc}\n\nflags:{flag_text.rstrip()}{more}\n"


def print_help(text: str) -> NoReturn:
    """Help goes to stdout, exit status 0 (`prog --help | less` may close the pipe early)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(0)


def parse_flags(
    argv: list[str],
    flag_values: flags.FlagValues = flags.FLAGS,
    help_text: Callable[[bool], str] | None = None,
) -> list[str]:
    """`flag_values(argv)`, with help and errors handled; returns the positional arguments.

    Prints `help_text(full)` (default: `usage`) and exits 0 when help is asked for; exits 1 with
    one line for any flag the program cannot use.
    """
    mode = help_requested(argv)
    if mode is not None:
        print_help(help_text(mode == "full") if help_text else usage(flag_values, mode == "full"))
    given = argv
    argv = _with_config_files(argv, _config_flag_names(flag_values))
    try:
        rest = flag_values(argv)
    except Exception as e:  # every failure of parsing is the user's input, not a crash
        exit_with(_as_given(f"error: {explain(e, argv, flag_values)}", argv, given))
    for name in _config_flag_names(flag_values):
        value = flag_values[name].value
        if type(value).__name__ == "_ErrorConfig":  # ml_collections defers load errors
            error = object.__getattribute__(value, "_error")
            line = f"error: --{name}={_argv_value(name, argv)}: {_first_line(error)}"
            exit_with(_as_given(line, argv, given))
    return rest


def explain(error: BaseException, argv: Sequence[str], flag_values: flags.FlagValues) -> str:
    """One line for a failure of `flag_values(argv)`: the bad flag or value, and what is valid."""
    message = str(error)
    if isinstance(error, flags.UnrecognizedFlagError):
        return _unknown_flag(error.flagname, flag_values)
    if "must have a value other than None" in message:
        missing = [n for n in _required(flag_values) if flag_values[n].value is None]
        names = ", ".join(f"--{n}" for n in missing) or message
        return f"missing required flag{'s' if len(missing) > 1 else ''} {names} (see --help)"
    if message.startswith("Missing value for flag "):
        flag = message.removeprefix("Missing value for flag ")
        return f"{flag} needs a value, e.g. {flag}=VALUE"
    config_names = _config_flag_names(flag_values)
    name = _flag_in_message(message, flag_values)
    if name in config_names:
        return f"--{name}={_argv_value(name, argv)}: {_config_file_error(error, name, argv)}"
    if name is not None:
        return _bad_value(name, message, argv, flag_values)
    for config_name in config_names:
        spec = _argv_value(config_name, argv)
        if spec is None:
            continue
        path = spec.split(":", 1)[0]
        if _touches_file(error, path):
            return f"--{config_name}={spec}: {_config_file_error(error, config_name, argv)}"
        if "has no attribute 'get_config'" in str(_root(error)):  # raised by ml_collections
            return f"--{config_name}={spec}: {path} defines no get_config() function"
        key_error = _override_key_error(config_name, spec, argv, flag_values)
        if key_error:
            return key_error
    return _first_line(_root(error))


# --- Reading argv and FlagValues -------------------------------------------------------------


def _argv_value(name: str, argv: Sequence[str]) -> str | None:
    """The value given to --name on the command line (last one wins), or None."""
    value = None
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for prefix in (f"--{name}", f"-{name}"):
            if arg.startswith(prefix + "="):
                value = arg[len(prefix) + 1 :]
            elif arg == prefix and i + 1 < len(args):
                value = args[i + 1]
    return value


def _config_flag_names(flag_values: flags.FlagValues) -> list[str]:
    return [n for n in flag_values if config_flags.is_config_flag(flag_values[n])]


def _required(flag_values: flags.FlagValues) -> list[str]:
    return [
        name
        for name in flag_values
        if any("must have a value other than None" in str(getattr(v, "message", ""))
               for v in flag_values[name].validators)
    ]  # fmt: skip


def _flag_in_message(message: str, flag_values: flags.FlagValues) -> str | None:
    """absl wraps a parser's error as 'flag --NAME=VALUE: detail'; the NAME, if it is a flag."""
    match = re.match(r"flag --([^=\s]+)=", message)
    return match.group(1) if match and match.group(1) in flag_values else None


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    if isinstance(error, BaseException):
        text = text or type(error).__name__
    return (text.splitlines() or [""])[0]


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        suppressed = current.__suppress_context__  # `raise ... from None`
        current = current.__cause__ or (None if suppressed else current.__context__)


def _root(error: BaseException) -> BaseException:
    *_, last = _chain(error)
    return last


def _help_names(flag_values: flags.FlagValues) -> list[str]:
    """The flags --help shows (the program's own and mnist_jax's), in definition order."""
    by_module = flag_values.flags_by_module_dict()
    own = [m for m in by_module if m == sys.argv[0] or m.startswith("mnist_jax")]
    names = [f.name for m in own for f in by_module[m]]
    return names or [n for n in flag_values if len(n) > 1]


# --- The messages ----------------------------------------------------------------------------


def _unknown_flag(name: str, flag_values: flags.FlagValues) -> str:
    shown = _help_names(flag_values)
    head, dot, tail = name.partition(".")
    guess = closest(name, list(flag_values))
    if guess is None and dot:  # --confg.num_epochs: the config flag misspelt
        base = closest(head, _config_flag_names(flag_values))
        guess = f"{base}.{tail}" if base else None
    if guess is not None:
        return f"unknown flag --{name}; did you mean --{guess}?"
    if len(shown) <= _LIST_AT_MOST:
        return f"unknown flag --{name}; valid: {', '.join('--' + n for n in shown)}"
    return f"unknown flag --{name} (see --help for the valid flags)"


def _bad_value(name: str, message: str, argv: Sequence[str], fv: flags.FlagValues) -> str:
    flag = fv[name]
    value = _argv_value(name, argv)
    if value is None:
        value = message.split("=", 1)[1].split(": ", 1)[0]
    prefix = f"flag --{name}={value}: "
    detail = message[len(prefix) :] if message.startswith(prefix) else message.split(": ", 1)[-1]
    detail = _first_line(detail)
    expected = _TYPES.get(flag.parser.flag_type())
    if expected and ("invalid literal" in detail or "could not convert" in detail
                     or "Non-boolean" in detail):  # fmt: skip
        detail = f"{value!r} is not {expected}"
        if flag.default not in (None, ""):
            detail += f", e.g. --{name}={flag.default}"
    return f"--{name}={value}: {detail}"


def _with_config_files(argv: list[str], names: Sequence[str]) -> list[str]:
    """argv with each config flag's value as a file: a shipped name (`cnn:quick`) becomes its
    installed file, which ml_collections' config flag needs; a missing file is one line here,
    before ml_collections turns it into a deferred error."""
    argv = list(argv)
    for name in names:
        spec = _argv_value(name, argv)
        if spec is None:
            continue
        try:
            resolved = configuration.resolve(spec)
        except ConfigError as e:
            exit_with(f"error: --{name}={spec}: {_missing_config(spec, e)}")
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            for prefix in (f"--{name}=", f"-{name}="):
                if arg == prefix + spec:
                    argv[i] = prefix + resolved
            if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv) and argv[i + 1] == spec:
                argv[i + 1] = resolved
    return argv


def _missing_config(spec: str, error: ConfigError) -> str:
    """Why `spec` names no config: beside a folder of configs, the closest file in it; else
    the closest shipped name or the list of them."""
    path = spec.split(":", 1)[0]
    folder = Path(path).parent
    if folder != Path() and folder.is_dir() and any(folder.glob("*.py")):
        candidates = [
            os.path.relpath(p) if p.is_relative_to(Path.cwd()) else str(p)
            for p in sorted(folder.glob("*.py"))
            if p.name != "__init__.py"
        ]
        guess = closest(path, candidates)
        valid = f"did you mean {guess}?" if guess else f"valid: {', '.join(candidates)}"
        return f"no such config file {path!r}; {valid}"
    return str(error).split(": ", 1)[1]


def _as_given(line: str, argv: Sequence[str], given: Sequence[str]) -> str:
    """An error line naming the config flags' values as the user typed them."""
    for original, used in zip(given, argv, strict=True):
        if original != used:
            line = line.replace(used.split("=", 1)[-1], original.split("=", 1)[-1])
    return line


def _touches_file(error: BaseException, path: str) -> bool:
    """Whether the error (or one it came from) was raised while running the file at `path`."""
    target = os.path.realpath(path)
    for e in _chain(error):
        if isinstance(e, SyntaxError) and e.filename and os.path.realpath(e.filename) == target:
            return True
        tb = e.__traceback__
        while tb is not None:
            if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
                return True
            tb = tb.tb_next
    return False


def _config_file_error(error: BaseException, name: str, argv: Sequence[str]) -> str:
    """What went wrong in the config file: its own error message, or the error and its line."""
    spec = _argv_value(name, argv) or ""
    path, _, variant = spec.partition(":")
    errors = list(_chain(error))
    user = [e for e in errors if isinstance(e, UserError)]
    if user:  # e.g. the config's get_config(variant) rejecting the variant: its own words
        return _first_line(user[-1])
    root = errors[-1]
    if isinstance(root, SyntaxError):
        return f"{path} line {root.lineno}: SyntaxError: {root.msg}"
    if variant and isinstance(root, TypeError) and "get_config()" in str(root):
        return f"{path} has no variants (its get_config() takes no argument); use --{name}={path}"
    line = None
    target = os.path.realpath(path)
    tb = root.__traceback__
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f"{path} line {line}: " if line else f"{path}: "
    return f"{where}{type(root).__name__}: {_first_line(root)}"


def _override_key_error(name: str, spec: str, argv: Sequence[str], fv: flags.FlagValues) -> str:
    """For --name.key=value overrides: the first key the config does not have, with a guess."""
    pattern = re.compile(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)")
    keys = [m.group(1) for arg in argv[1:] if (m := pattern.match(arg))]
    if not keys:
        return ""
    try:
        config = fv[name].parser.parse(spec)
    except Exception:  # the file itself is broken: reported elsewhere
        return ""
    if not isinstance(config, config_dict.ConfigDict):
        return ""
    paths = list(_key_paths(config))
    for key in keys:
        node, parent = config, ""
        for part in key.split("."):
            if not (isinstance(node, config_dict.ConfigDict) and part in node):
                break
            node, parent = node[part], f"{parent}.{part}".lstrip(".")
        else:
            continue
        guess = closest(key, paths)
        if guess:
            hint = f"did you mean {guess!r}?"
        else:
            where = f" of {parent!r}" if parent else ""
            valid = sorted(node.keys()) if isinstance(node, config_dict.ConfigDict) else []
            hint = f"valid keys{where}: {', '.join(valid)}" if valid else f"{parent!r} has no keys"
            hint += " (configs/default.py describes every key)"
        return f"--{name}.{key}: the config has no key {key!r}; {hint}"
    return ""


def _key_paths(config: config_dict.ConfigDict, prefix: str = "") -> Iterator[str]:
    for key, value in config.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, config_dict.ConfigDict):
            yield from _key_paths(value, path + ".")
