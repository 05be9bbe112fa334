"""One small pattern for every room that takes extensions: a dict from name to builder, filled by a
decorator where each extension is defined.

    BACKENDS = Registry("backend", "--backend")

    @BACKENDS.register("onnxruntime")
    def load_onnxruntime(...): ...

    BACKENDS.get("onnxruntime")    # the builder; an unknown name is one line listing the choices
    list(BACKENDS)                 # the names, for the CLI's choices and the config's values

A registry's package imports each of its modules in its `__init__`, so every extension is there as
soon as the registry is: none exists only once something else happens to import it.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from detect.errors import DetectError

Builder = TypeVar("Builder", bound=Callable)


class Registry(dict):
    """name -> builder. `what` names the kind in errors ("backend"), `option` the setting that chose it."""

    def __init__(self, what: str, option: str):
        super().__init__()
        self.what, self.option = what, option

    def register(self, name: str) -> Callable[[Builder], Builder]:
        def add(builder: Builder) -> Builder:
            if name in self:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self[name] = builder
            return builder
        return add

    def get(self, name: str) -> Callable:
        if name not in self:
            raise DetectError(f"{self.option} {name}: unknown {self.what}; choose from {', '.join(sorted(self))}")
        return self[name]
