"""Mapping a released state dict onto a gsbench model, with every tensor accounted for.

A :class:`Mapping` is an ordered list of :class:`Rule`: a regular expression over the source key
(after the ``module.`` prefix is gone) and either the gsbench key it becomes (a
:meth:`re.Match.expand` template, or a function of the match) or ``None`` for a key the source
documents as training-only, which is dropped and listed with the reason. The first rule that
matches a key decides. A rule may also ``transform`` the tensor (the input-channel permutation
of a concatenation whose order differs between the official code and gsbench).

:func:`map_state_dict` is strict in both directions, where the official loaders are not
(hszhao/semseg loads with ``strict=False``, nv-tlabs/GSCNN restores keys "forgivingly"):

* every source key is mapped or dropped by a rule, and lands on a tensor of the model; the
  others are reported together, each with its shape;
* a source tensor whose shape differs from its target's is reported with both shapes (a file of
  another dataset has another class count, a PSANet file of another crop another mask);
* every parameter and buffer of the model receives exactly one source tensor, except the
  entries the mapping declares ``derived`` (computed by gsbench from the recipe, such as
  PSANet's mask-size buffer) and ``optional`` ones absent from the file (BatchNorm's
  ``num_batches_tracked``, missing from files saved by torch < 0.4.1), which keep the model's
  value and are listed.

Any of these is a :class:`~gsbench.errors.GsbenchError` of one line naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping as MappingABC
from dataclasses import dataclass, field

import torch

from gsbench.errors import GsbenchError

#: How many keys an error message spells out before "and N more".
SHOWN_KEYS = 4


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a full match on the source key) -> ``target`` (template or function of the
    match; ``None``: a training-only key, dropped); ``note`` says what the tensor is (or, for a
    dropped key, why it is not needed at test time)."""

    pattern: str
    target: str | Callable[[re.Match], str] | None
    note: str = ""
    #: applied to the source tensor before it is stored (e.g. a permutation of input channels)
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def target_of(self, match: re.Match) -> str | None:
        if self.target is None:
            return None
        return self.target(match) if callable(self.target) else match.expand(self.target)


@dataclass(frozen=True)
class Mapping:
    """A named set of rules from one source's layout to gsbench's (see the module docstring)."""

    name: str
    rules: tuple[Rule, ...]
    #: gsbench keys (regular expressions) that no file holds: gsbench computes them, with why
    derived: dict[str, str] = field(default_factory=dict)
    #: gsbench keys (regular expressions) a file may lack: the model keeps its value, with why
    optional: dict[str, str] = field(default_factory=dict)

    def rule_for(self, key: str) -> tuple[Rule, re.Match] | None:
        for rule in self.rules:
            match = re.fullmatch(rule.pattern, key)
            if match:
                return rule, match
        return None


@dataclass
class MappingReport:
    """What :func:`map_state_dict` did, key by key (all of it goes into the provenance record)."""

    mapping: str
    #: source key -> gsbench key
    mapped: dict[str, str] = field(default_factory=dict)
    #: source key -> why it was dropped (training-only)
    dropped: dict[str, str] = field(default_factory=dict)
    #: source keys whose tensor was transformed on the way (e.g. permuted input channels)
    transformed: dict[str, str] = field(default_factory=dict)
    #: gsbench key -> why it has no source tensor (derived, or optional and absent)
    kept: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.mapping, "tensors_mapped": len(self.mapped),
                "dropped": self.dropped, "transformed": self.transformed,
                "kept_from_gsbench": self.kept, "keys": self.mapped}


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, tensor.shape)) + "]"


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    return shown + (f" and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else "")


def _matches_any(key: str, patterns: MappingABC[str, str]) -> str | None:
    return next((why for pattern, why in patterns.items() if re.fullmatch(pattern, key)), None)


def map_state_dict(
    source: MappingABC[str, torch.Tensor],
    mapping: Mapping,
    target: MappingABC[str, torch.Tensor],
    where: str,
    model_name: str = "the model",
) -> tuple[dict[str, torch.Tensor], MappingReport]:
    """Map ``source`` onto the keys and shapes of ``target`` (a gsbench model's state dict);
    return the complete state dict to load (strict) and the report. ``where`` names the file in
    error messages, ``model_name`` the model (e.g. ``recipe psanet101's model``)."""
    report = MappingReport(mapping.name)
    result: dict[str, torch.Tensor] = {}
    unmapped, homeless, mismatched = [], [], []
    received_from: dict[str, str] = {}
    for key, tensor in source.items():
        found = mapping.rule_for(key)
        if found is None:
            unmapped.append(f"{key} {_shape(tensor)}")
            continue
        rule, match = found
        destination = rule.target_of(match)
        if destination is None:
            report.dropped[key] = rule.note
            continue
        if destination not in target:
            homeless.append(f"{key} {_shape(tensor)} (-> {destination})")
            continue
        if destination in received_from:
            raise GsbenchError(f"{where}: {received_from[destination]} and {key} both map to "
                               f"{destination} (mapping {mapping.name})")
        received_from[destination] = key
        if rule.transform is not None:
            tensor = rule.transform(tensor)
            report.transformed[key] = rule.note
        expected = target[destination]
        if tuple(tensor.shape) != tuple(expected.shape):
            mismatched.append(f"{key} {_shape(tensor)} vs {destination} {_shape(expected)}")
            continue
        result[destination] = tensor.to(expected.dtype) if expected.is_floating_point() else tensor
        report.mapped[key] = destination
    if unmapped or homeless:
        parts = []
        if unmapped:
            parts.append(f"{len(unmapped)} source tensors match no rule of mapping "
                         f"{mapping.name}: {_listing(unmapped)}")
        if homeless:
            parts.append(f"{len(homeless)} have no place in {model_name}: {_listing(homeless)}")
        raise GsbenchError(f"{where}: {'; '.join(parts)} (a file of another architecture?)")
    if mismatched:
        raise GsbenchError(f"{where}: {len(mismatched)} tensors differ in shape from "
                           f"{model_name}'s: {_listing(mismatched)}")
    missing = []
    for key, tensor in target.items():
        if key in result:
            continue
        why = _matches_any(key, mapping.derived) or _matches_any(key, mapping.optional)
        if why is None:
            missing.append(f"{key} {_shape(tensor)}")
        else:
            report.kept[key] = why
            result[key] = tensor
    if missing:
        raise GsbenchError(f"{where}: {len(missing)} tensors of {model_name} get no tensor "
                           f"from the file: {_listing(missing)} (a file of another "
                           "architecture, or a recipe with other options?)")
    return result, report
