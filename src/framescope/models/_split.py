"""Splitting a model across devices before a named layer: the seed's ``SplitModelWrapper``, for any model
torch.fx can trace, not only those whose forward is a plain sequence of children.

The model is traced into a graph, cut before the first call of the named layer (everything earlier in the
graph's order runs first), and the two parts become ``torch.fx`` submodules sharing the original parameters.
The values that cross the cut (one tensor for most models, several for some) are moved to the second device
inside a ``split`` span, so the transfer is timed as its own stage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from framescope.errors import ModelError
from framescope.models._amp import autocast
from framescope.models._move import move

SpanFactory = Callable[[str], contextlib.AbstractContextManager[Any]]
SPLIT_STAGE = "split"


def parse_split_point(text: str) -> tuple[str | None, str]:
    """``resnet50:layer3`` -> ("resnet50", "layer3"); ``layer3`` -> (None, "layer3")."""
    model, sep, layer = text.strip().rpartition(":")
    return (model or None) if sep else None, layer


def trace(model: nn.Module, name: str) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... for data-dependent control flow
        raise ModelError(
            f"cannot split {name}: torch.fx cannot trace its forward ({type(exc).__name__}); --split-point "
            "works for classification and segmentation models such as resnet50, mobilenet_v3_large, "
            "efficientnet_b0 or vit_b_16."
        ) from None


def _prefixes(target: str) -> list[str]:
    parts = target.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def cut_points(graph_module: fx.GraphModule) -> dict[str, int]:
    """Every module path before which the graph can be cut, with the graph position of the cut.

    A path qualifies when its module calls form one contiguous run (a layer called, then another, then the
    first again has no single "before") and something runs before it.
    """
    calls = [
        (position, node) for position, node in enumerate(graph_module.graph.nodes) if node.op == "call_module"
    ]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    position_of: dict[str, int] = {}
    for order, (position, node) in enumerate(calls):
        for prefix in _prefixes(str(node.target)):
            if prefix not in first:
                first[prefix] = order
                position_of[prefix] = position
            last[prefix] = order
            count[prefix] = count.get(prefix, 0) + 1
    return {
        prefix: position_of[prefix]
        for prefix in first
        if last[prefix] - first[prefix] + 1 == count[prefix] and first[prefix] > 0
    }


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _inside_a_block(model: nn.Module, path: str) -> bool:
    """Whether ``path`` lies inside a block (a non-container module held by a container, such as a residual
    block in a stage): cuts there are valid but split a skip connection, which is rarely what anyone wants."""
    ancestor = _parent(path)
    while ancestor:
        holder = _parent(ancestor)
        if not isinstance(model.get_submodule(ancestor), _CONTAINERS) and isinstance(
            model.get_submodule(holder) if holder else model, _CONTAINERS
        ):
            return True
        ancestor = holder
    return False


def listed_split_points(model: nn.Module, graph_module: fx.GraphModule) -> list[str]:
    """The cut points worth showing a user: children of the model and of its containers (Sequential, ...),
    not inside a block. Any cut point is accepted; these are the ones listed."""
    points = cut_points(graph_module)
    shown = []
    for path in sorted(points, key=lambda p: points[p]):
        parent = _parent(path)
        if (not parent or isinstance(model.get_submodule(parent), _CONTAINERS)) and not _inside_a_block(
            model, path
        ):
            shown.append(path)
    return shown


def split_points(model: nn.Module, name: str) -> list[str]:
    return listed_split_points(model, trace(model, name))


class _FirstPart(nn.Module):
    """The part before the cut, under its own device's autocast with ``amp`` (an autocast for the model's
    device, CUDA, does not reach the CPU's ops)."""

    def __init__(self, part: nn.Module, device: torch.device, amp: bool) -> None:
        super().__init__()
        self.part = part
        self.device = device
        self.amp = amp

    def forward(self, *args: Any) -> Any:
        with autocast(self.device, self.amp):
            return self.part(*args)


class _SecondPart(nn.Module):
    """The part after the cut: moves what crosses the cut to its device, inside a ``split`` span, and runs
    under its device's autocast with ``amp``."""

    def __init__(self, part: nn.Module, device: torch.device, span: SpanFactory, amp: bool = False) -> None:
        super().__init__()
        self.part = part
        self.device = device
        self.span = span
        self.amp = amp

    def forward(self, *args: Any) -> Any:
        with self.span(SPLIT_STAGE):
            args = move(args, self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            return self.part(*args)


class SplitModel(nn.Module):
    """``model`` cut before ``layer``: the first part on ``first``, the rest on ``second``."""

    def __init__(
        self,
        model: nn.Module,
        name: str,
        layer: str,
        *,
        first: torch.device,
        second: torch.device,
        span: SpanFactory | None = None,
        compile_part: Callable[[nn.Module], Any] | None = None,
        amp: bool = False,
    ) -> None:
        from torch.fx.passes.split_module import split_module

        super().__init__()
        graph_module = trace(model, name)
        points = cut_points(graph_module)
        if layer not in points:
            valid = listed_split_points(model, graph_module)
            shown = ", ".join(valid[:40]) + (f", ... ({len(valid)} in all)" if len(valid) > 40 else "")
            raise ModelError(f"{layer!r} is not a split point of {name}; valid split points: {shown}.")
        cut = points[layer]
        order = {node: position for position, node in enumerate(graph_module.graph.nodes)}
        parts = split_module(graph_module, model, lambda node: 0 if order[node] < cut else 1)
        parts.to(first)
        second_part: Any = parts.get_submodule("submod_1").to(second)
        if compile_part is not None:
            parts.submod_0 = compile_part(parts.get_submodule("submod_0"))
            second_part = compile_part(second_part)
        parts.submod_0 = _FirstPart(parts.get_submodule("submod_0"), first, amp)
        parts.submod_1 = _SecondPart(
            second_part, second, span or (lambda _name: contextlib.nullcontext()), amp
        )
        self.parts = parts
        self.layer = layer
        self.first, self.second = first, second

    def forward(self, x: Any) -> Any:
        return self.parts(x)
