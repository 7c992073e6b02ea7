"""``python -m training <command>``: the training toolkit's commands (train, distill, prune, eval, export, ...).

This module only parses and dispatches: each command lives in the module that does the
work (a ``COMMANDS`` table there: name -> (help, add_args, run)). Every job prints one JSON
object per line on stdout; errors are one ``error`` event and a non-zero exit code, never
a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable

from training.config import ConfigError, check_inputs
from training.jobs.engine import CancelFlag, Cancelled, DivergedError, TrainingError

EXIT_ERROR, EXIT_DIVERGED = 2, 3

# The modules that hold the commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("training.jobs.train", "training.jobs.export", "training.distill.job", "training.prune.job",
                   "training.evaluation.evaluate", "training.evaluation.label_offset", "training.evaluation.bench",
                   "training.evaluation.ablations", "training.jobs.ship", "training.data.pseudolabel",
                   "training.evaluation.quantize")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable], dict[str, str]]:
    """The parser, each command's runner, and the command modules left out because a third-party package they
    import is missing (module -> package): ``train`` still runs where only ``prune``'s torch-pruning is absent."""
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="subcommand", required=True)
    runners: dict[str, Callable] = {}
    unavailable: dict[str, str] = {}
    for modname in COMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # a command module this checkout does not have
                continue
            if (exc.name or "").split(".")[0] in ("training", "kpdesk"):
                raise
            unavailable[modname] = exc.name or "?"
            continue
        for name, (help_, add_args, run) in getattr(mod, "COMMANDS", {}).items():
            p = sub.add_parser(name, help=help_)
            add_args(p)
            runners[name] = run
    if unavailable:
        ap.epilog = "not loaded (a package is missing): " + ", ".join(f"{m} needs {p}" for m, p in unavailable.items())
    return ap, runners, unavailable


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures reported as one line (``--debug`` shows the traceback)."""
    import pickle
    import zipfile

    from kpdesk.inference.install import ModelInstallError
    from kpdesk.inference.model import ModelLoadError
    from training.jobs.onnx_export import ExportError

    return (TrainingError, ConfigError, ValueError, OSError, ModelLoadError, ModelInstallError, ExportError,
            pickle.UnpicklingError, zipfile.BadZipFile)


def error_line(exc: BaseException) -> str:
    """One line for an expected failure; an OS error says which file and why
    (``runs/x/config.json: No space left on device``, not ``[Errno 28] ...``)."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror and type(exc).__str__ is OSError.__str__:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        return f"{where}: {exc.strerror}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    ap, runners, unavailable = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    asked = next((a for a in argv if not a.startswith("-")), None)
    if asked and asked not in runners and unavailable:
        print(f"python -m training: unknown command {asked!r}; not loaded here: "
              + ", ".join(f"{m} (the package {p} is missing)" for m, p in unavailable.items()), file=sys.stderr)
        return EXIT_ERROR
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    cancel = CancelFlag()
    cancel.listen()
    try:
        check_inputs(args)
        runners[args.subcommand](args, None, cancel)
        return 0
    except Cancelled:
        return 0
    except DivergedError as exc:
        print(json.dumps({"event": "error", "kind": "diverged", "message": str(exc)}), flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except Exception as exc:
        if args.debug or not isinstance(exc, _expected_errors()):
            raise
        msg = error_line(exc)
        print(json.dumps({"event": "error", "kind": type(exc).__name__, "message": msg}), flush=True)
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
