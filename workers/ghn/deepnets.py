"""DeepNets-1M-style architectures: sample a spec, build the network.

The space follows the published DeepNets-1M description (``shared/docs/GHN.md``): DARTS-style
cell networks with 4-18 cells and 1-4 summation nodes per cell, operations from
:data:`~workers.ghn.deepnets_ops.OPS`, stem kernel 3/5/7, optional batch norm, 1-2 fully
connected layers after global average pooling or a VGG-style head, and no network above
:data:`MAX_PARAMS` parameters. The code is our own; the numbers of each split are in
:data:`SPLITS`.

* :class:`ArchSpec` — a JSON-able description of one network (genotype plus macro choices);
* :func:`sample_spec` — the spec of ``(split, seed)``; always the same spec for the same pair,
  and each split draws from its own seed stream;
* :func:`build_network` — the ``nn.Module`` of a spec;
* :func:`sample_network` — both at once.

A network is a stem conv (+BN), ``n_cells`` cells and a head. Every cell has the genotype of
its type (all normal cells share ``spec.normal``, all reduction cells ``spec.reduce``) and reads
the outputs of the two cells before it. Reduction cells sit at ``n_cells // 3`` and
``2 * n_cells // 3``; they halve the resolution (rounding up) and double the cell width.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from workers.ghn.deepnets_ops import OPS, Cell, Edge, cell_param_count, norm

__all__ = [
    "FORMAT",
    "MAX_PARAMS",
    "OPS",
    "SPLITS",
    "ArchSpec",
    "CellGenotype",
    "DeepNet",
    "SplitConfig",
    "build_network",
    "count_parameters",
    "sample_network",
    "sample_spec",
]

FORMAT = "weightspace.deepnets-spec/1"
MAX_PARAMS = 10_000_000
STEM_MULTIPLIER = 3  # stem width = 3 * C, as in DARTS
MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class SplitConfig:
    """The distribution a split samples from (ranges are inclusive, choices uniform).

    ``p_batch_norm`` is the probability that a network has batch norm; ``p_vgg_head`` that it
    has a VGG-style head instead of global average pooling.
    """

    channels: tuple[int, ...]
    cells: tuple[int, int]
    nodes: tuple[int, int]
    p_batch_norm: float = 1.0
    p_vgg_head: float = 0.25
    stem_kernels: tuple[int, ...] = (3, 5, 7)
    fc_layers: tuple[int, ...] = (1, 2)
    fc_hidden: tuple[int, ...] = (128, 256, 512)


_EVAL = SplitConfig(channels=(48,), cells=(4, 18), nodes=(1, 4))

# The splits. "train" samples the channel count too (32-128 in steps of 8) and has no batch
# norm in 5% of networks; the evaluation splits fix C like the published evaluation networks
# and each moves one axis away from "test": wider, deeper, denser cells, or no batch norm.
SPLITS: dict[str, SplitConfig] = {
    "train": SplitConfig(
        channels=tuple(range(32, 129, 8)), cells=(4, 18), nodes=(1, 4), p_batch_norm=0.95
    ),
    "val": _EVAL,
    "test": _EVAL,
    "wide": SplitConfig(channels=(96,), cells=(4, 18), nodes=(1, 4)),
    "deep": SplitConfig(channels=(48,), cells=(10, 36), nodes=(1, 4)),
    "dense": SplitConfig(channels=(48,), cells=(4, 18), nodes=(6, 10)),
    "bn-free": SplitConfig(channels=(48,), cells=(4, 18), nodes=(1, 4), p_batch_norm=0.0),
}


@dataclass
class CellGenotype:
    """One cell type: the edges of every summation node and the states concatenated.

    ``nodes[k]`` is a list of (operation, input state) pairs summed by node k; states 0 and 1
    are the cell inputs (the cell two back and the previous cell) and state k + 2 is node k.
    ``concat`` lists the states (>= 2) whose concatenation is the cell output.
    """

    nodes: list[list[Edge]]
    concat: list[int]

    def validate(self) -> None:
        """Raise ValueError unless every edge reads an earlier state and the output is sane."""
        if not self.nodes:
            raise ValueError("a cell needs at least one node")
        for k, node in enumerate(self.nodes):
            if not any(op != "none" for op, _ in node):
                raise ValueError(f"node {k} has no operation other than 'none'")
            for op, inp in node:
                if op not in OPS:
                    raise ValueError(f"unknown operation {op!r}")
                if not 0 <= inp < k + 2:
                    raise ValueError(f"node {k} reads state {inp}, not an earlier one")
        n_states = len(self.nodes) + 2
        if not self.concat or any(not 2 <= i < n_states for i in self.concat):
            raise ValueError(f"concat {self.concat} must list node states 2..{n_states - 1}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellGenotype:
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples)."""
        nodes = [[(str(op), int(inp)) for op, inp in node] for node in data["nodes"]]
        return cls(nodes=nodes, concat=[int(i) for i in data["concat"]])


@dataclass
class ArchSpec:
    """Everything needed to build one network; JSON-able through :meth:`to_json`.

    ``channels`` is C, the width of the first cells (the stem has 3C channels; every reduction
    cell doubles the cell width). ``reduce_at`` lists the indices of the reduction cells.
    ``head`` is "pool" (global average pooling) or "vgg" (average pooling to about 2x2 and
    flattening, so the classifier sees the spatial layout); ``fc_layers`` fully connected
    layers follow, the hidden one ``fc_hidden`` wide. ``split``, ``seed`` and ``attempt``
    record where the spec came from (``attempt`` counts budget rejections).
    """

    normal: CellGenotype
    reduce: CellGenotype
    n_cells: int
    reduce_at: list[int]
    channels: int
    stem_kernel: int
    batch_norm: bool
    head: str
    fc_layers: int
    fc_hidden: int
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    split: str = ""
    seed: int = 0
    attempt: int = 0
    format: str = field(default=FORMAT)

    def validate(self) -> None:
        """Raise ValueError when the spec cannot be built."""
        self.normal.validate()
        self.reduce.validate()
        if self.n_cells < 1 or any(not 0 <= i < self.n_cells for i in self.reduce_at):
            raise ValueError(f"reduce_at {self.reduce_at} outside 0..{self.n_cells - 1}")
        if self.head not in ("pool", "vgg"):
            raise ValueError(f"head must be 'pool' or 'vgg', not {self.head!r}")
        if self.fc_layers not in (1, 2):
            raise ValueError("fc_layers must be 1 or 2")
        if min(self.channels, self.in_channels, self.image_size, self.num_classes) < 1:
            raise ValueError("channels, in_channels, image_size and num_classes must be >= 1")
        if self.stem_kernel % 2 != 1:
            raise ValueError("stem_kernel must be odd")

    def to_json(self) -> dict[str, Any]:
        """A plain dict of JSON types (edges become [op, input] lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArchSpec:
        """The spec ``to_json`` wrote; raises ValueError for another format or a bad spec."""
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not a {FORMAT} spec: {data.get('format')!r}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown spec fields: {sorted(unknown)}")
        fields = dict(data)
        fields["normal"] = CellGenotype.from_json(data["normal"])
        fields["reduce"] = CellGenotype.from_json(data["reduce"])
        fields["reduce_at"] = [int(i) for i in data["reduce_at"]]
        spec = cls(**fields)
        spec.validate()
        return spec


# --- sampling ---------------------------------------------------------------------------------


def _rng(split: str, seed: int, attempt: int) -> random.Random:
    """A generator seeded from (split, seed, attempt) by a stable hash.

    Python's ``hash`` of a string changes between processes; sha256 does not. The split name is
    part of the key, so every split has its own stream and "test" seeds never replay "train".
    """
    key = f"weightspace/deepnets/{split}/{seed}/{attempt}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _sample_cell(rng: random.Random, n_nodes: int) -> CellGenotype:
    """Two edges per node from distinct earlier states, operations uniform over ``OPS``.

    A node whose two operations are both "none" gets a non-"none" first operation instead.
    A cell that does not read state 1 (the previous cell) is drawn again: otherwise every
    other cell of the network would be dead (its output never reaching the classifier).
    The output concatenates the loose ends: nodes no later node reads (the last one always).
    """
    while True:
        nodes: list[list[Edge]] = []
        for k in range(n_nodes):
            inputs = rng.sample(range(k + 2), 2)
            ops = [rng.choice(OPS), rng.choice(OPS)]
            if ops == ["none", "none"]:
                ops[0] = rng.choice(OPS[1:])
            nodes.append([(ops[0], inputs[0]), (ops[1], inputs[1])])
        read = {inp for node in nodes for op, inp in node if op != "none"}
        if 1 in read:
            break
    concat = [k + 2 for k in range(n_nodes) if k + 2 not in read]
    return CellGenotype(nodes=nodes, concat=concat)


def _draw(
    split: str, seed: int, attempt: int, in_channels: int, image_size: int, num_classes: int
) -> ArchSpec:
    config = SPLITS[split]
    rng = _rng(split, seed, attempt)
    n_cells = rng.randint(*config.cells)
    n_normal_nodes = rng.randint(*config.nodes)
    n_reduce_nodes = rng.randint(*config.nodes)
    return ArchSpec(
        normal=_sample_cell(rng, n_normal_nodes),
        reduce=_sample_cell(rng, n_reduce_nodes),
        n_cells=n_cells,
        reduce_at=sorted({n_cells // 3, 2 * n_cells // 3}),
        channels=rng.choice(config.channels),
        stem_kernel=rng.choice(config.stem_kernels),
        batch_norm=rng.random() < config.p_batch_norm,
        head="vgg" if rng.random() < config.p_vgg_head else "pool",
        fc_layers=rng.choice(config.fc_layers),
        fc_hidden=rng.choice(config.fc_hidden),
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        split=split,
        seed=seed,
        attempt=attempt,
    )


def sample_spec(
    split: str,
    seed: int,
    *,
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    max_params: int = MAX_PARAMS,
) -> ArchSpec:
    """The architecture of ``(split, seed)`` for inputs [in_channels, image_size, image_size].

    ``split`` is one of :data:`SPLITS`. Draws are repeated with the next sub-seed
    (``attempt``) until the network has at most ``max_params`` parameters (computed, nothing
    is built). The genotype of a first draw does not depend on the input format, but the
    parameter count does, so a rejection may happen for one format only.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    for attempt in range(MAX_ATTEMPTS):
        spec = _draw(split, seed, attempt, in_channels, image_size, num_classes)
        if count_parameters(spec) <= max_params:
            return spec
    raise RuntimeError(f"no network of {split!r} seed {seed} under {max_params} parameters")


# --- building ---------------------------------------------------------------------------------


def _reduced(size: int) -> int:
    """Resolution after a reduction cell (stride 2, rounding up)."""
    return (size + 1) // 2


@dataclass(frozen=True)
class _CellPlan:
    """Arguments of one :class:`Cell` of a network."""

    genotype: CellGenotype
    c_prev_prev: int
    c_prev: int
    channels: int
    reduction: bool
    reduction_prev: bool


@dataclass(frozen=True)
class _Plan:
    """The widths and sizes of a network: stem width, cells, head input channels and size."""

    c_stem: int
    cells: list[_CellPlan]
    c_out: int
    size_out: int


def _plan(spec: ArchSpec) -> _Plan:
    """Walk the macro structure once; shared by the builder and the parameter count."""
    c_stem = STEM_MULTIPLIER * spec.channels
    c_prev_prev, c_prev, c = c_stem, c_stem, spec.channels
    size = spec.image_size
    reduction_prev = False
    cells = []
    for i in range(spec.n_cells):
        reduction = i in spec.reduce_at
        if reduction:
            c *= 2
            size = _reduced(size)
        genotype = spec.reduce if reduction else spec.normal
        cells.append(_CellPlan(genotype, c_prev_prev, c_prev, c, reduction, reduction_prev))
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, c * len(genotype.concat)
    return _Plan(c_stem=c_stem, cells=cells, c_out=c_prev, size_out=size)


def _vgg_pool(size: int) -> tuple[int, int]:
    """Kernel (= stride) of the VGG-style head's average pool and the side of its output.

    The pool keeps a coarse grid, 2x2 for sizes >= 4, that the classifier sees flattened.
    """
    kernel = max(1, size // 2)
    return kernel, size // kernel


def _head_features(spec: ArchSpec, plan: _Plan) -> int:
    """Inputs of the first fully connected layer."""
    if spec.head == "pool":
        return plan.c_out
    return plan.c_out * _vgg_pool(plan.size_out)[1] ** 2


class DeepNet(nn.Module):
    """A cell network built from an :class:`ArchSpec` (see the module docstring).

    ``forward`` takes [B, in_channels, image_size, image_size] images and returns
    [B, num_classes] logits. With the "pool" head other image sizes work too.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        plan = _plan(spec)
        k = spec.stem_kernel
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, plan.c_stem, k, padding=k // 2, bias=False),
            norm(plan.c_stem, spec.batch_norm),
        )
        self.cells = nn.ModuleList(
            Cell(
                p.genotype.nodes,
                p.genotype.concat,
                p.c_prev_prev,
                p.c_prev,
                p.channels,
                reduction=p.reduction,
                reduction_prev=p.reduction_prev,
                batch_norm=spec.batch_norm,
            )
            for p in plan.cells
        )
        if spec.head == "pool":
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
        else:
            kernel = _vgg_pool(plan.size_out)[0]
            self.pool = nn.AvgPool2d(kernel, stride=kernel)
        features = _head_features(spec, plan)
        layers: list[nn.Module] = [nn.Flatten()]
        if spec.fc_layers == 2:
            layers += [nn.Linear(features, spec.fc_hidden), nn.ReLU()]
            features = spec.fc_hidden
        layers.append(nn.Linear(features, spec.num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1))


def build_network(spec: ArchSpec, device: torch.device | str | None = None) -> DeepNet:
    """The network of ``spec``, created on ``device`` (default: torch's current default).

    On ``"meta"`` nothing is allocated, which is how parameter counts and architecture graphs
    of many networks are computed cheaply. Weights get PyTorch's default initialisation from
    the global RNG.
    """
    if device is None:
        return DeepNet(spec)
    with torch.device(device):
        return DeepNet(spec)


def count_parameters(spec: ArchSpec) -> int:
    """Number of parameters of ``build_network(spec)``, computed without building it."""
    spec.validate()
    plan = _plan(spec)
    bn = 2 * plan.c_stem if spec.batch_norm else 0
    total = spec.in_channels * plan.c_stem * spec.stem_kernel**2 + bn
    for p in plan.cells:
        total += cell_param_count(
            p.genotype.nodes,
            p.c_prev_prev,
            p.c_prev,
            p.channels,
            reduction=p.reduction,
            reduction_prev=p.reduction_prev,
            batch_norm=spec.batch_norm,
        )
    features = _head_features(spec, plan)
    if spec.fc_layers == 2:
        total += (features + 1) * spec.fc_hidden
        features = spec.fc_hidden
    return total + (features + 1) * spec.num_classes


def sample_network(
    split: str,
    seed: int,
    *,
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    device: torch.device | str | None = None,
) -> tuple[ArchSpec, DeepNet]:
    """``sample_spec(split, seed, ...)`` and the network built from it on ``device``."""
    spec = sample_spec(
        split, seed, in_channels=in_channels, image_size=image_size, num_classes=num_classes
    )
    return spec, build_network(spec, device)
