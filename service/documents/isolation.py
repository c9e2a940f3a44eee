"""Run a CPU-bound function in a child process with a hard time limit.

Extraction may take long (a hostile PDF) or much memory (a zip bomb): it never runs on the
worker's event loop, and a thread could not be stopped at the limit. Each call gets its
own child, forked by a forkserver that has the extraction code imported (a fork of the
worker itself would copy its threads and sockets): the child is killed when the time is
up or the job's task is cancelled, and its memory is capped.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from service.documents.extract import DocumentError

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["service.documents.chunks", "pypdf"])
MEMORY_LIMIT_BYTES = 2 * 1024**3  # address space of one extraction child


class IsolatedTimeout(Exception):
    """The child did not finish in time and was killed."""


async def run_isolated(func: Callable[..., Any], *args: Any, timeout_s: float, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)` in a child process; DocumentError raised there is raised
    here; past `timeout_s` (or when the caller is cancelled) the child is killed."""
    loop = asyncio.get_running_loop()
    receiving, sending = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_child_main, args=(sending, func, args, kwargs), daemon=True)
    try:
        # Starting talks to the forkserver (and starts it, the first time): not on the loop.
        await loop.run_in_executor(None, child.start)
        sending.close()
        try:
            async with asyncio.timeout(timeout_s):
                # The reading thread ends when the child answers, or with EOFError once it is killed.
                outcome, value = await loop.run_in_executor(None, _receive, receiving)
        except TimeoutError:
            raise IsolatedTimeout(f"did not finish within {timeout_s:g} s") from None
    finally:
        if child.pid is not None:
            child.kill()
            await loop.run_in_executor(None, child.join)
        receiving.close()
    if outcome == "error":
        raise DocumentError(value)
    return value


def _receive(connection: Connection) -> tuple[str, Any]:
    try:
        return connection.recv()
    except (EOFError, OSError):
        return "error", "the extraction process died (out of memory?)"


def _child_main(sending: Connection, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    try:
        answer: tuple[str, Any] = ("ok", func(*args, **kwargs))
    except DocumentError as exc:
        answer = ("error", str(exc))
    except MemoryError:
        answer = ("error", "the document needs too much memory to extract")
    except Exception as exc:  # a parser's bug on a strange file: the file is what the user can change
        answer = ("error", f"the document could not be read ({type(exc).__name__}: {exc})")
    sending.send(answer)
    sending.close()
