"""The nowcasting optimizer: any ``torch.optim`` optimizer, with every ``period``-th step
replaced by a NiNo jump.

Between jumps the base optimizer (Adam, AdamW, SGD …) runs as usual. Every ``period // ctx``
steps a copy of the parameters is kept (before that step's update); at step ``period`` the last
``ctx`` copies go through the parameter graph into NiNo, which predicts where the parameters
will be ``k`` horizons later, and they are written into the model instead of a base update.
No backward pass is needed for a jump step. The base optimizer's state is left as it is.

Only the parameters the parameter graph holds are nowcast (``NiNo.coverage`` says which and
why not the others); the rest follow the base optimizer alone and are left as they are on a
jump step (no gradient is computed for it). The per-parameter WNN+ baseline (``nino_mlp``)
reads every parameter on its own, so it covers all of them: parameters the graph leaves out
(or every parameter, when the graph refuses the model) are added as loose edges.

Learning-rate schedulers attach to the base optimizer (``NiNo.base``) as usual. ``NiNo.timings``
says how long the wrapper's own work took (snapshots and jumps), for overhead measurements.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from workers.errors import ModelError
from workers.graphs.params.graph import (
    ParamGraph,
    build_param_graph,
    graph_features,
    params_from_features,
)
from workers.graphs.params.loose import with_loose_params
from workers.nino.model import NiNoModel, WNNPlusModel, load_model
from workers.nino.scaling import horizon_at, scale_states, unscale


@dataclass(frozen=True)
class NowcastConfig:
    """How often and how far to jump."""

    period: int = 1000
    ctx: int = 5
    max_steps: int = 10_000
    p: float = 2.0
    edge_chunk: int | None = 1 << 14  # measured fastest on CPU (1M edges: 12 s vs 21 s at 2^16)
    # Edge features of graphs above this many edges are held in float16 (halving the largest
    # buffer of a nowcast); each chunk is computed in float32 by the model.
    half_features_above: int = 10_000_000

    def __post_init__(self) -> None:
        if self.ctx < 1 or self.period % self.ctx:
            raise ValueError(f"period ({self.period}) must be a multiple of ctx ({self.ctx}).")


@dataclass
class NowcastTimings:
    """Wall-clock seconds a ``NiNo`` spent on its own work in this process.

    ``snapshot_s`` totals the parameter copies (``snapshots`` of them); ``jump_s_each`` has one
    entry per jump (nowcast plus writing the weights), in order. The base optimizer's steps
    are not counted. Timings are not part of ``state_dict``: a resumed run starts from zero.
    """

    snapshot_s: float = 0.0
    snapshots: int = 0
    jump_s_each: list[float] = field(default_factory=list)

    @property
    def jump_s(self) -> float:
        """Seconds spent in all jumps together."""
        return sum(self.jump_s_each)

    def to_dict(self) -> dict[str, Any]:
        """The timings as plain values (JSON-ready)."""
        return {
            "snapshot_s": self.snapshot_s,
            "snapshots": self.snapshots,
            "jump_s": self.jump_s,
            "jump_s_each": list(self.jump_s_each),
        }


class NiNo:
    """Wrap ``base`` so that every ``period``-th ``step()`` is a nowcast of ``model``'s weights.

    ``meta_model`` is a loaded NiNo/WNN+ model or the name/path of a published checkpoint.
    With the GNN, the parameters the graph holds are nowcast and the others left to ``base``
    (``coverage``); a model whose data flow the graph cannot read at all raises the graph
    engine's ``ModelError``. WNN+ covers every parameter. ``example`` (one input batch) helps
    the traced graph builder where the input shape cannot be guessed.
    """

    def __init__(
        self,
        base: torch.optim.Optimizer,
        model: nn.Module,
        meta_model: NiNoModel | WNNPlusModel | str = "nino_no_posw",
        config: NowcastConfig | None = None,
        example: Tensor | None = None,
        **overrides: Any,
    ) -> None:
        self.base = base
        self.model = model
        self.config = config or NowcastConfig(**overrides)
        self.meta = load_model(meta_model) if isinstance(meta_model, str) else meta_model
        if self.meta.config.ctx != self.config.ctx:
            raise ValueError(f"This NiNo model reads {self.meta.config.ctx} context states.")
        self.graph = _graph_for(model, self.meta, example)
        if not self.graph.param_shapes:
            reasons = "; ".join(f"{n}: {r}" for n, r, _ in self.graph.left[:3])
            raise ModelError(f"NiNo can place none of the model's parameters ({reasons}).")
        self.names = list(self.graph.param_shapes)  # the nowcast ones, in graph order
        # Only the GNN reads positional encodings; WNN+ looks at each parameter alone.
        self.pe = self.graph.lpe(self.meta.config.lpe) if isinstance(self.meta, NiNoModel) else None
        self.step_count = 0  # base steps and jumps so far
        self.jumps = 0
        self.history: list[dict[str, Tensor]] = []  # parameter copies on the CPU, oldest first
        self.timings = NowcastTimings()

    @property
    def coverage(self) -> dict[str, Any]:
        """Parameter elements nowcast out of the total, and what is left to ``base`` (why)."""
        return self.graph.coverage()

    # --- the optimizer interface ---------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    @property
    def next_step_is_jump(self) -> bool:
        """True when the coming ``step()`` is a nowcast, so the caller can skip the backward."""
        return (self.step_count + 1) % self.config.period == 0

    def step(self, closure: Any = None) -> bool:
        """Do one step; return True when it was a NiNo jump rather than a base update."""
        spacing = self.config.period // self.config.ctx
        # Timed here, around exactly the wrapper's own work, so that benchmarks can report
        # the nowcasting overhead without reaching into the private methods.
        if (self.step_count + 1) % spacing == 0:
            start = time.perf_counter()
            self._snapshot()
            self.timings.snapshot_s += time.perf_counter() - start
            self.timings.snapshots += 1
        jumped = self.next_step_is_jump and len(self.history) >= self.config.ctx
        if jumped:
            start = time.perf_counter()
            self._jump()
            self.timings.jump_s_each.append(time.perf_counter() - start)
        else:
            self.base.step(closure)
        self.step_count += 1
        return jumped

    # --- nowcasting ----------------------------------------------------------------------
    def _snapshot(self) -> None:
        params = dict(self.model.named_parameters())
        self.history.append({n: params[n].detach().to("cpu", torch.float32, copy=True)
                             for n in self.names})  # fmt: skip
        del self.history[: -self.config.ctx]

    @torch.no_grad()
    def nowcast(self, states: list[dict[str, Tensor]], k: int) -> dict[str, Tensor]:
        """Predicted parameters ``k`` horizons after the last of ``states`` (oldest first)."""
        scaled, scales = scale_states(states)
        if self.graph.num_edges > self.config.half_features_above:
            scaled = [{n: t.half() for n, t in state.items()} for state in scaled]
        edge_attr = graph_features(self.graph, scaled)
        del scaled
        device = next(self.meta.parameters()).device
        predicted = self.meta.predict(
            self.graph.edge_index.to(device),
            self.graph.edge_type.to(device),
            edge_attr,
            None if self.pe is None else self.pe.to(device),
            k,
            edge_chunk=self.config.edge_chunk,
        )
        return unscale(params_from_features(self.graph, predicted.cpu()), scales)

    @torch.no_grad()
    def _jump(self) -> None:
        k = horizon_at(self.step_count, self.config.max_steps, self.config.period, p=self.config.p)
        predicted = self.nowcast(self.history[-self.config.ctx :], k)
        params = dict(self.model.named_parameters())
        for name in self.names:
            params[name].copy_(predicted[name].to(params[name].device, params[name].dtype))
        self.history.clear()
        self.jumps += 1

    # --- saving and resuming ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Base optimizer state plus the snapshot history, so a resumed run jumps identically."""
        return {
            "base": self.base.state_dict(),
            "config": asdict(self.config),
            "step_count": self.step_count,
            "jumps": self.jumps,
            "history": [dict(state) for state in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != asdict(self.config):
            raise ValueError("The saved NiNo state was made with another configuration.")
        self.base.load_state_dict(state["base"])
        self.step_count = int(state["step_count"])
        self.jumps = int(state["jumps"])
        self.history = [
            {n: t.to("cpu", torch.float32).clone() for n, t in s.items()} for s in state["history"]
        ]


def _graph_for(
    model: nn.Module, meta: NiNoModel | WNNPlusModel, example: Tensor | None
) -> ParamGraph:
    """The parameter graph the meta-model reads: the model's graph for the GNN; for WNN+
    that graph (or none, when refused) plus every parameter it leaves out, as loose edges."""
    if isinstance(meta, NiNoModel):
        return build_param_graph(model, example)
    try:
        graph: ParamGraph | None = build_param_graph(model, example)
    except ModelError:
        graph = None
    shapes = {name: p.shape for name, p in model.named_parameters()}
    return with_loose_params(graph, shapes)
