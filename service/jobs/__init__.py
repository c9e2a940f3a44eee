"""The job domain, one sub-package per concern: storage, running, push, operations, observability.

Dependencies inside it run one way: storage depends on nothing here; running, push,
operations and observability may use storage and observability; operations may use
all of them. Nothing here imports Flask (the HTTP layer) or the worker.
"""
