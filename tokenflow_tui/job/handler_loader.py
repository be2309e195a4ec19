"""A user's handler (`[handler] path = "file.py:function"`), imported from its file by path.

Whatever goes wrong becomes a Problem with a place (the handler file's line for an error raised
while importing it, else the job file's `path =` line), never a traceback.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import re
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from .model import Job
from .problems import JobError, Problem, did_you_mean
from .toml_positions import KeyPositions

Handler = Callable[..., Awaitable[Any]]

_imports = itertools.count(1)


def load_handler(job: Job) -> Handler:
    """Import the job's handler file under a fresh module name and return its async callable.

    The job's folder is on sys.path only while the file is imported, so that it can import its
    neighbours. No bytecode is written. Raises JobError.
    """
    if job.handler is None:
        raise ValueError("the job has no [handler]")
    section = job.handler
    location = section.file.resolve()
    name = f"tokenflow_handler_{next(_imports)}_" + re.sub(r"\W", "_", section.file.stem)
    spec = importlib.util.spec_from_file_location(name, location)
    if spec is None or spec.loader is None:
        raise JobError([_at_path(job, f"{section.file} cannot be imported as a Python file")])
    module = importlib.util.module_from_spec(spec)
    folder = str(job.job_dir.resolve())
    sys.modules[name] = module  # as a normal import does: dataclasses and pickle look modules up there
    sys.path.insert(0, folder)
    wrote_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # validating writes nothing, not even __pycache__ beside the job
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        del sys.modules[name]
        raise JobError([_import_problem(str(section.file), str(location), error)]) from None
    finally:
        sys.dont_write_bytecode = wrote_bytecode
        try:
            sys.path.remove(folder)
        except ValueError:
            pass  # the handler took it out itself
    handler = getattr(module, section.function, None)
    if handler is None:
        candidates = [key for key, value in vars(module).items() if callable(value) and not key.startswith("_")]
        hint = did_you_mean(section.function, candidates)
        raise JobError([_at_path(job, f'{section.file} has no "{section.function}"{hint}')])
    if not _is_async_callable(handler):
        raise JobError(
            [_at_path(job, f'"{section.spec}" is {_what(handler)}; a handler is an async function (async def)')]
        )
    refusal = _signature_problem(handler)
    if refusal is not None:
        raise JobError([_at_path(job, f'"{section.spec}" {refusal}; a handler is async def handler(trajectory)')])
    return handler


def _signature_problem(handler: Any) -> str | None:
    """Why `handler` cannot be called with the trajectory alone, as the engine calls it; None when it can."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None  # a callable Python cannot describe (a C extension): its first call will tell
    try:
        signature.bind(object())
    except TypeError:
        return f"takes {_parameters(signature)}"
    return None


def _parameters(signature: inspect.Signature) -> str:
    names = list(signature.parameters)
    if not names:
        return "no argument"
    return "(" + ", ".join(names) + ")"


def _is_async_callable(value: Any) -> bool:
    if inspect.isclass(value):
        return False  # calling a class makes an instance, not a coroutine
    if inspect.iscoroutinefunction(value):
        return True
    return inspect.iscoroutinefunction(getattr(type(value), "__call__", None))


def _what(value: Any) -> str:
    if inspect.isfunction(value) or inspect.ismethod(value):
        return "a plain function (def)"
    if inspect.isclass(value):
        return "a class"
    if callable(value):
        return f"an object of type {type(value).__name__} whose __call__ is not async"
    return f"a value of type {type(value).__name__}, not a function"


def _import_problem(file: str, location: str, error: BaseException) -> Problem:
    """The error's first line, placed at the handler file's line that raised it when there is one."""
    kind = f"cannot import the handler: {type(error).__name__}"
    if isinstance(error, SyntaxError) and error.filename == location:
        return Problem(file, error.lineno, error.offset, f"{kind}: {error.msg}")
    message = str(error).strip().split("\n")[0]
    text = f"{kind}: {message}" if message else kind
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == location]
    if not frames:
        return Problem(file, None, None, text)
    last = frames[-1]
    return Problem(file, last.lineno, (last.colno or 0) + 1, text)


def _at_path(job: Job, message: str) -> Problem:
    """A problem at the job file's `[handler] path` line."""
    try:
        text = job.job_path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        where = None  # the file changed since it was loaded; the message still says what is wrong
    else:
        where = KeyPositions(text).nearest(("handler", "path"))
    line, col = where or (None, None)
    return Problem(str(job.job_path), line, col, message)
