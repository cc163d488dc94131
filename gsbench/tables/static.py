"""Tables computed on the spot, without training: model and module complexity, RF / SR.

Each entry of :data:`STATIC_TABLES` names the figures it computes (the metrics a table file's
columns may use next to ``compute: <name>``) and a function from the :class:`Table` to those
figures per row id. Everything is counted on the ``meta`` device (no weights are allocated and no
arithmetic is done), so a whole table takes seconds, except RANet's row of Table 3, whose regions
depend on the values (it runs for real, tens of seconds on a CPU):

- ``gff_table3``: GFF Table 3, parameters and FLOPs of PSPNet, +GFF and +GFF+DFP on a
  512 x 512 image (no aux head, as the paper's counts);
- ``gscnn_table5``: Gated-SCNN Table 5, the parameter increase of the shape stream, in percent
  of the DeepLabV3+ baseline with the same backbone;
- ``gpsnet_table4``: GPSNet Table 4, receptive field, sample rate and parameters of the context
  modules (:func:`gsbench.analysis.rfsr.table4`);
- ``ranet_table3``: RANet Table 3, the increase in FLOPs, parameters and memory of each
  attention method on the table's 97 x 97 stage-5 map, each at the scope closest to the paper
  (:data:`RANET_TABLE3_SCOPES`, :func:`gsbench.analysis.attention.profile_attention_module`).

FLOPs count a multiply-add as 2 (:mod:`gsbench.analysis.complexity`); memory off CUDA is the peak
of live tensor storage of a train-mode forward + backward, parameters excluded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from gsbench.errors import GsbenchError
from gsbench.tables.cells import Table, resolved_recipe, slug


@dataclass(frozen=True)
class StaticResult:
    """Computed figures per row id (``{row_id: {metric: value}}``), a note per row where a
    figure needs one, and one line on how the figures were measured."""

    values: dict[str, dict[str, float]]
    notes: dict[str, str] = field(default_factory=dict)
    method: str = ""


@dataclass(frozen=True)
class StaticTable:
    metrics: tuple[str, ...]
    compute: Callable[[Table], StaticResult]


def _quiet_meta_build(build: Callable[[], Any]) -> Any:
    """Build a module on the meta device, without the random-initialisation warning (the
    weights are never read)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            return build()


def _meta_model(recipe, aux: bool | None = None):
    from gsbench.models.registry import build_model

    kwargs = recipe.model.builder_kwargs()
    if aux is not None:
        kwargs["aux"] = aux
    return _quiet_meta_build(lambda: build_model(recipe.model.name, num_classes=recipe.data.num_classes,
                                                 pretrained=None, **kwargs))


def _row_recipe(table: Table, row_id: str, key: str = "recipe"):
    row = table.raw_rows[row_id]
    if not isinstance(row.get(key), str):
        raise GsbenchError(f"{table.path}: rows.{row_id}.{key}: {table.compute} needs a {key} "
                           "recipe on every row")
    sets = tuple(row.get("set" if key == "recipe" else "baseline_set") or ())
    return resolved_recipe(row[key], sets, f"{table.path}: rows.{row_id}.{key}")


def gff_table3(table: Table) -> StaticResult:
    """GFF Table 3: parameters (M) and GFLOPs of each row's recipe on ``input_shape``
    (default 1 x 3 x 512 x 512), aux head removed."""
    from gsbench.analysis.complexity import count_flops, count_parameters

    shape = table.input_shape or (1, 3, 512, 512)
    values = {}
    for row_id, _ in table.rows:
        model = _meta_model(_row_recipe(table, row_id), aux=False)
        flops = count_flops(model, shape)
        values[row_id] = {"params_m": count_parameters(model) / 1e6, "gflops": flops.gflops,
                          "gmacs": flops.gmacs}
    method = (f"meta device, input {'x'.join(map(str, shape))}, no aux head; GFLOPs count a "
              "multiply-add as 2 (matrix products only)")
    return StaticResult(values, method=method)


def gscnn_table5(table: Table) -> StaticResult:
    """Gated-SCNN Table 5: ``100 * (params(GSCNN) - params(baseline)) / params(baseline)`` for
    each row's recipe and its ``baseline`` recipe (the same backbone without the shape stream)."""
    from gsbench.analysis.complexity import count_parameters

    values = {}
    for row_id, _ in table.rows:
        full = count_parameters(_meta_model(_row_recipe(table, row_id)))
        base = count_parameters(_meta_model(_row_recipe(table, row_id, "baseline")))
        values[row_id] = {"params_increase_pct": 100.0 * (full - base) / base,
                          "params_m": full / 1e6, "baseline_params_m": base / 1e6}
    return StaticResult(values, method="meta device; parameters of the row recipe vs its baseline")


def gpsnet_table4(table: Table) -> StaticResult:
    """GPSNet Table 4: RF (side length), SR and parameters (M) of the context modules, on
    2048 input channels (:func:`gsbench.analysis.rfsr.table4`)."""
    from gsbench.analysis.rfsr import table4

    values, notes = {}, {}
    for row in table4():
        row_id = slug(row["method"])
        values[row_id] = {"rf": row["rf"], "sr": row["sr"], "params_m": row["params"] / 1e6,
                          "conv_params_m": row["conv_weights"] / 1e6}
        if row.get("note"):
            notes[row_id] = row["note"]
    return StaticResult(values, notes, method="position sets walked per Appendix A; parameters "
                                              "of the real modules on 2048 channels (meta device)")


#: The scope each RANet Table 3 row is computed at, on a 1 x 2048 x 97 x 97 stage-5 map: the
#: scope that comes closest to the paper's parameter column (docs/fidelity.md, RANet). RANet's
#: +21 M are its released region attention (feats_conv 2048 -> 512 and the learned RIB
#: layers, 21.24 M); no scope gives the peers' 13 / 18 / 23 / 50 M, whole decode heads come
#: closest (ANN 20.3, CCNet 23.9, DANet 24.0, PSANet 33.2 M).
RANET_TABLE3_SCOPES = {"ranet": "module"}
RANET_TABLE3_PEER_SCOPE = "head"
RANET_TABLE3_CHANNELS = 2048


def ranet_table3(table: Table) -> StaticResult:
    """RANet Table 3: the increase in FLOPs, parameters and memory of each attention method on
    a 97 x 97 stage-5 map (the paper's 1 x 512 x 97 x 97 after the 2048 -> 512 reduction that
    its parameter count includes), each row at the scope of :data:`RANET_TABLE3_SCOPES`. Row
    ids are the names of :mod:`gsbench.analysis.attention`'s registry. The peers run on the
    meta device; RANet's regions depend on its score maps, so it runs for real (tens of
    seconds on a CPU) on the realistic input case (24 cells, 36 regions)."""
    from gsbench.analysis.attention import (SCOPE_NOTES, build_attention_module,
                                            get_attention_entry, profile_attention_module)
    from gsbench.analysis.complexity import count_flops, count_parameters, measure_peak_memory

    height, width = (table.input_shape or (1, 512, 97, 97))[2:]
    shape = (1, RANET_TABLE3_CHANNELS, height, width)
    values, notes = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row_id, _ in table.rows:
            scope = RANET_TABLE3_SCOPES.get(row_id, RANET_TABLE3_PEER_SCOPE)
            entry = get_attention_entry(row_id)
            if not entry.cases:
                figures = profile_attention_module(row_id, shape, scope=scope, latency=False)
                values[row_id] = {"gflops": figures["gflops"], "gmacs": figures["gmacs"],
                                  "params_m": figures["params_m"],
                                  "memory_mb": figures["peak_memory_train_mib"]}
                notes[row_id] = f"scope {scope}: {figures['counts']}"
                continue
            # A value-dependent module (RANet): one real run per figure, the first case only.
            module = build_attention_module(row_id, shape[1], scope)
            flops = count_flops(module, shape)
            values[row_id] = {"gflops": flops.gflops, "gmacs": flops.gmacs,
                              "params_m": count_parameters(module) / 1e6,
                              "memory_mb": measure_peak_memory(module, shape, backward=True).mib}
            case = next(iter(entry.cases))
            notes[row_id] = (f"scope {scope}: {entry.counts.get(scope, SCOPE_NOTES[scope])}; "
                             f"input case {case!r}: score maps forming "
                             f"{module.regions(height, width)} regions; RCB keeps no hw x hw "
                             "table (the released op keeps five, 1.77 GB at 97 x 97)")
    method = (f"each row on a {'x'.join(map(str, shape))} map at its scope (RANet: its region "
              f"attention; the others: their whole decode heads, the scope closest to the "
              f"paper's figures); GFLOPs count a multiply-add as 2; memory = peak live tensors "
              f"of forward + backward (MiB)")
    return StaticResult(values, notes, method=method)


STATIC_TABLES: dict[str, StaticTable] = {
    "gff_table3": StaticTable(("params_m", "gflops", "gmacs"), gff_table3),
    "gscnn_table5": StaticTable(("params_increase_pct", "params_m", "baseline_params_m"), gscnn_table5),
    "gpsnet_table4": StaticTable(("rf", "sr", "params_m", "conv_params_m"), gpsnet_table4),
    "ranet_table3": StaticTable(("gflops", "gmacs", "params_m", "memory_mb"), ranet_table3),
}


def compute_static(table: Table) -> StaticResult:
    """The computed figures of a table with ``compute:`` (an empty result otherwise)."""
    if table.compute is None:
        return StaticResult({})
    return STATIC_TABLES[table.compute].compute(table)
