"""Retrain set-up: replace the classification head and freeze everything else."""

from __future__ import annotations

from torch import nn

from framescope.errors import ModelError

HEAD_ATTRIBUTES = ("fc", "heads", "head", "classifier")


def _out_width(layer: nn.Module) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)  # type: ignore[arg-type]


def _output_layers(head: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) for every Linear/Conv2d in ``head`` producing the class scores: the last
    such layer in registration order, and any other with the same output width (LR-ASPP has two)."""
    layers = [
        (name, layer)
        for name, layer in head.named_modules()
        if name and isinstance(layer, nn.Linear | nn.Conv2d)
    ]
    if not layers:
        return []
    width = _out_width(layers[-1][1])
    found: list[tuple[nn.Module, str, nn.Module]] = []
    for name, layer in layers:
        if _out_width(layer) == width:
            parent_name, _, attr = name.rpartition(".")
            found.append((head.get_submodule(parent_name), attr, layer))
    return found


def _resized(layer: nn.Module, num_classes: int) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None)
    assert isinstance(layer, nn.Conv2d)
    return nn.Conv2d(
        layer.in_channels,
        num_classes,
        kernel_size=layer.kernel_size,  # type: ignore[arg-type]
        stride=layer.stride,  # type: ignore[arg-type]
        padding=layer.padding,  # type: ignore[arg-type]
        bias=layer.bias is not None,
    )


def replace_head(model: nn.Module, name: str, num_classes: int) -> list[nn.Module]:
    """Swap the model's output layer(s) (under ``fc``, ``heads``, ``head`` or ``classifier``) for fresh ones
    with ``num_classes`` outputs, freeze every other parameter, and return the new layers."""
    for attr in HEAD_ATTRIBUTES:
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear | nn.Conv2d):
            new_layers = [_resized(head, num_classes)]
            setattr(model, attr, new_layers[0])
        else:
            found = _output_layers(head)
            if not found:
                continue
            new_layers = []
            for parent, child_attr, layer in found:
                fresh = _resized(layer, num_classes)
                setattr(parent, child_attr, fresh)
                new_layers.append(fresh)
        freeze_except(model, new_layers)
        return new_layers
    raise ModelError(
        f"{name} has no fc/heads/head/classifier layer to replace, so it cannot be retrained; "
        "use --mode inference or a model such as resnet50."
    )


def freeze_except(model: nn.Module, trainable: list[nn.Module]) -> None:
    """Freeze all parameters but those of ``trainable`` and put the model in train mode.

    As in the seed, BatchNorm layers stay in training mode (batch statistics): with random weights, frozen
    running statistics would let activations of deep networks grow without bound.
    """
    keep = {id(p) for layer in trainable for p in layer.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in keep)
    model.train()
