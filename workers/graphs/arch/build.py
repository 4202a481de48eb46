"""From a recorded autograd graph to typed GHN nodes, folded edges and the reference order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from workers.graphs.arch import ops
from workers.graphs.arch.nodes import ArchNode
from workers.graphs.arch.order import reference_order
from workers.graphs.arch.trace import Trace

# Reshaping ops that may sit between a parameter and the op consuming it (Linear's weight
# reaches ``addmm`` through a transpose); a parameter seen through them still belongs to the op.
_PARAM_GLUE = frozenset(
    """
    T View UnsafeView Reshape ReshapeAlias Alias Permute Transpose Expand Unsqueeze Squeeze
    Clone ToCopy Contiguous CopySlices
    """.split()
)


@dataclass
class _Raw:
    """One autograd op, before folding."""

    fn: Any
    op: str
    seq: int
    module: str
    data_preds: list[int] = field(default_factory=list)  # raw indices
    params: list[tuple[str, Tensor]] = field(default_factory=list)
    reads_input: bool = False
    norm_scale: bool = False  # a multiply by the scale of a decomposed norm (RMSNorm)


INPUT = -1  # raw index standing for the model input


class GraphBuilder:
    """Turns a recorded autograd graph into typed nodes and folded edges."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.raws: list[_Raw] = []
        self.index: dict[int, int] = {}  # id(fn) -> raw index
        # id(fn) -> (fn, parameters); holding fn keeps its id from being reused.
        self.param_source_memo: dict[int, tuple[Any, list[tuple[str, Tensor]] | None]] = {}
        # Preorder rank of every autograd node in a depth-first walk from the outputs, the
        # order the published GHN code numbers nodes in before sorting them.
        self.rank: dict[int, int] = {}
        self.param_rank: dict[int, int] = {}  # id(parameter) -> rank of its leaf
        self.unknown_ops: set[str] = set()
        self.not_covered: set[str] = set()
        # Raw indices of means that are statistics of a normalisation (folded).
        self.statistics: set[int] = set()
        self._collect()

    # -- autograd walk ----------------------------------------------------------------------
    def _leaf(self, fn: Any) -> tuple[str, Tensor] | None:
        if type(fn).__name__ != "AccumulateGrad":
            return None
        var = fn.variable
        name = self.trace.param_names.get(id(var))
        return None if name is None else (name, var)

    def _param_source(self, fn: Any) -> list[tuple[str, Tensor]] | None:
        """Parameters ``fn`` only reshapes (e.g. Linear's transposed weight), else None."""
        key = id(fn)
        if key in self.param_source_memo:
            return self.param_source_memo[key][1]
        self.param_source_memo[key] = (fn, None)
        leaf = self._leaf(fn)
        if leaf is not None:
            result: list[tuple[str, Tensor]] | None = [leaf]
        elif ops.op_name(fn) in _PARAM_GLUE:
            result = []
            for u, _ in fn.next_functions:
                if u is None:
                    continue
                sub = self._param_source(u)
                if sub is None:
                    result = None
                    break
                result.extend(sub)
            if not result:
                result = None
        else:
            result = None
        self.param_source_memo[key] = (fn, result)
        return result

    def _collect(self) -> None:
        # Depth-first preorder over next_functions, parameter leaves included (for ``rank``).
        order: list[Any] = []
        seen: dict[int, Any] = {}
        stack = list(reversed(self.trace.outputs))
        while stack:
            fn = stack.pop()
            if id(fn) in seen:
                continue
            seen[id(fn)] = fn
            self.rank[id(fn)] = len(seen)
            leaf = self._leaf(fn)
            if leaf is not None:
                self.param_rank.setdefault(id(leaf[1]), len(seen))
            if type(fn).__name__ == "AccumulateGrad":
                continue
            if self._param_source(fn) is None:
                order.append(fn)
            stack.extend(u for u, _ in reversed(fn.next_functions) if u is not None)
        # Creation order (sequence numbers) is a topological order of the data flow.
        order.sort(key=lambda f: f._sequence_nr())
        for fn in order:
            self.index[id(fn)] = len(self.raws)
            self.raws.append(
                _Raw(
                    fn=fn,
                    op=ops.op_name(fn),
                    seq=fn._sequence_nr(),
                    module=self.trace.module_of.get(fn, ""),
                )
            )
        example = self.trace.example
        for raw in self.raws:
            for u, _ in raw.fn.next_functions:
                if u is None:
                    continue
                if type(u).__name__ == "AccumulateGrad":
                    if u.variable is example:
                        raw.reads_input = True
                    elif (leaf := self._leaf(u)) is not None:
                        raw.params.append(leaf)
                    continue
                source = self._param_source(u)
                if source is not None:
                    raw.params.extend(source)
                else:
                    raw.data_preds.append(self.index[id(u)])

    # -- node construction ------------------------------------------------------------------
    def _param_nodes(self, raw: _Raw) -> tuple[list[ArchNode], ArchNode | None] | None:
        """Nodes for an op that owns parameters: (chain in data-flow order, side pos_enc)."""
        op = raw.op
        if not raw.params:
            return None
        # A parameter used twice in one op (x @ W + W?) is listed once.
        params = list({name: (name, p) for name, p in raw.params}.values())

        def shape(p: Tensor) -> tuple[int, ...]:
            return tuple(int(s) for s in p.shape)

        def node(primitive: str, items: list[tuple[str, Tensor]]) -> ArchNode:
            return ArchNode(
                primitive=primitive,
                name=items[0][0],
                op=op,
                module=_owner(items[0][0]),
                params=[(n, shape(p)) for n, p in items],
            )

        weights = [(n, p) for n, p in params if p.dim() >= 2]
        biases = [(n, p) for n, p in params if p.dim() < 2]
        if op in ops.CONV_OPS or op in ops.MATMUL_OPS:
            kind = "conv"
            if op in ops.CONV_OPS:
                groups = int(getattr(raw.fn, "_saved_groups", 1) or 1)
                dilation = tuple(getattr(raw.fn, "_saved_dilation", (1,)) or (1,))
                if groups > 1:
                    kind = "dil_conv" if max(dilation) > 1 else "sep_conv"
            chain = [node(kind, [w]) for w in weights] + [node("bias", [b]) for b in biases]
            return chain, None
        if raw.norm_scale:
            return [node("ln", params)], None
        if op in ops.BATCH_NORM_OPS or op in ops.LAYER_NORM_OPS:
            kind = "bn" if op in ops.BATCH_NORM_OPS else "ln"
            # The norm's bias is predicted together with its weight, so it is not a node.
            return [node(kind, params)], None
        if op in ops.EMBEDDING_OPS:
            return [node("pos_enc", params)], None
        if op in ops.ADD_OPS:
            if biases and not weights:
                return [node("bias", biases)], None
            if weights and not biases:
                pos = node("pos_enc", weights)
                total = ArchNode("sum", f"{raw.module or 'model'}.sum", op, raw.module)
                return [total], pos
        return None

    def build(self) -> tuple[list[ArchNode], set[tuple[int, int]]]:
        """Nodes in the published GHNs' order and the edges between them."""
        nodes: list[ArchNode] = []
        ranks: list[float] = []  # depth-first rank of what each node stands for
        side_of: dict[int, int] = {}  # pos_enc node -> the sum node it feeds
        edges: set[tuple[int, int]] = set()
        outs: list[frozenset[int]] = [frozenset()] * len(self.raws)  # nodes for op outputs
        survive_ops = self._decide_ops()
        rank_by_name = {
            name: self.param_rank.get(pid, 0) for pid, name in self.trace.param_names.items()
        }

        def add(node: ArchNode, rank: float) -> int:
            nodes.append(node)
            ranks.append(rank)
            return len(nodes) - 1

        # The reference appends the input node last; it is dropped if nothing reads it.
        input_id = add(ArchNode("input", "input", "input", ""), float("inf"))

        for i, raw in enumerate(self.raws):
            srcs: set[int] = set()
            for p in raw.data_preds:
                srcs |= outs[p]
            if raw.reads_input:
                srcs.add(input_id)
            param_nodes = self._param_nodes(raw)
            if param_nodes is not None:
                chain, side = param_nodes
                if side is not None:
                    # Ordered like the reference, where the learned tensor itself is the node.
                    ids = [add(chain[0], rank_by_name[side.params[0][0]])]
                    side_of[add(side, -1.0)] = ids[0]
                    edges.add((len(nodes) - 1, ids[0]))
                else:
                    # Weight before bias in data flow; the reference's ranks follow that too
                    # once it has swapped reversed weight/bias pairs.
                    chain_ranks = sorted(rank_by_name[n.params[0][0]] for n in chain)
                    ids = [add(n, r) for n, r in zip(chain, chain_ranks, strict=True)]
                    if not srcs:
                        # Parameters without a data input read the model input through
                        # something without grad (token ids into an embedding).
                        srcs = {input_id}
                edges.update((s, ids[0]) for s in srcs)
                edges.update(zip(ids[:-1], ids[1:], strict=True))
                outs[i] = frozenset({ids[-1]})
                continue
            if raw.params:
                self.not_covered.update(name for name, _ in raw.params)
            primitive = survive_ops.get(i)
            msa = _attention_output(raw, outs, lambda v: nodes[v].primitive == "msa")
            if primitive is None and msa is not None:
                edges.update((s, msa) for s in srcs - {msa})
                outs[i] = frozenset({msa})
            elif primitive is not None:
                name = f"{raw.module or 'model'}.{primitive}"
                node_id = add(ArchNode(primitive, name, raw.op, raw.module), self.rank[id(raw.fn)])
                edges.update((s, node_id) for s in srcs)
                outs[i] = frozenset({node_id})
            else:
                outs[i] = frozenset(srcs)
        _drop_attention_bypass(nodes, edges)
        order = reference_order(len(nodes), edges, ranks, side_of)
        if not any(s == input_id for s, _ in edges):
            order.remove(input_id)
        new_index = {old: new for new, old in enumerate(order)}
        return [nodes[i] for i in order], {(new_index[s], new_index[t]) for s, t in edges}

    def _decide_ops(self) -> dict[int, str]:
        """Primitive for each parameter-free raw op that stays a node (others are folded).

        Some means are only known to be folded once later ops are classified: the pooling
        inside a squeeze-excitation branch (seen from the ``cse`` node after it) and the
        statistic of a normalisation written out in elementary ops (RMSNorm on CPU). So
        classification repeats until no more means are folded.
        """
        folded: set[int] = set()
        while True:
            kinds, preds = self._classify(folded)
            inner = self._inner_se_means(kinds, preds) | self.statistics
            if inner <= folded:
                return {i: k for i, k in kinds.items() if k != _PARAMS}
            folded |= inner

    def _classify(self, folded: set[int]) -> tuple[dict[int, str], dict[int, frozenset[int]]]:
        """One pass in topological order: each raw op's kind and its surviving inputs.

        Returns {raw index: primitive or _PARAMS} for ops that stay nodes, and for those the
        raw indices of the surviving ops (or INPUT) they read after folding. Also collects
        ``self.statistics`` and marks norm scales (see ``_decide_ops``).
        """
        kinds: dict[int, str] = {}
        preds: dict[int, frozenset[int]] = {}
        # What each raw op's output stands for: itself if it stays, else its folded inputs.
        outs: list[frozenset[int]] = []
        # Whether a folded op's value was normalised by a folded statistic.
        normalised: list[bool] = []
        for i, raw in enumerate(self.raws):
            srcs: set[int] = set()
            for p in raw.data_preds:
                srcs |= outs[p]
            if raw.reads_input:
                srcs.add(INPUT)
            from_norm = any(normalised[p] for p in raw.data_preds)
            scales = raw.params and all(p.dim() == 1 for _, p in raw.params)
            if raw.op == "Mul" and from_norm and scales:
                # x * rsqrt(mean(x^2)) * weight: the weight is a norm scale, read as ``ln``.
                raw.norm_scale = True
            if self._param_nodes(raw) is not None:
                kind: str | None = _PARAMS
            elif i in folded:
                kind = None
            else:
                kind = self._op_kind(raw, _n_inputs(raw, srcs, outs))
            if kind is None:
                self._find_statistic(raw, srcs, kinds, preds)
                msa = _attention_output(raw, outs, lambda v: kinds.get(v) == "msa")
                if msa is not None:
                    preds[msa] |= srcs - {msa}
                    srcs = {msa}
                outs.append(frozenset(srcs))
                normalised.append(from_norm or i in self.statistics)
                continue
            kinds[i] = kind
            preds[i] = frozenset(srcs)
            outs.append(frozenset({i}))
            normalised.append(False)
        return kinds, preds

    def _find_statistic(
        self,
        raw: _Raw,
        srcs: set[int],
        kinds: dict[int, str],
        preds: dict[int, frozenset[int]],
    ) -> None:
        """Note means that only normalise their own input (x * rsqrt(mean(x^2)), x - mean(x)).

        Such a mean reaches an elementwise op through glue alone, and that op also reads the
        mean's input: it is a statistic of a normalisation, not a pooling.
        """
        if raw.op not in ("Mul", "Div", "Sub"):
            return
        for m in srcs:
            if kinds.get(m) == "glob_avg" and preds[m] <= srcs and preds[m]:
                self.statistics.add(m)

    def _op_kind(self, raw: _Raw, n_inputs: int) -> str | None:
        """Primitive of a parameter-free op, or None when it is folded."""
        op = raw.op
        primitive = ops.OP_PRIMITIVES.get(op)
        if primitive is None:
            if op not in ops.GLUE_OPS and op not in _KNOWN_PARAM_OPS:
                self.unknown_ops.add(op)
            return None
        # An add/cat/multiply of one surviving input is glue (adding a constant, a class
        # token whose parameter is not a node, layer scale, ...).
        if primitive in ("sum", "concat", "cse") and n_inputs < 2:
            return None
        if primitive == "cse" and not self._gated(raw):
            return None
        return primitive

    def _gated(self, raw: _Raw) -> bool:
        """Whether an operand of ``raw`` comes straight from a sigmoid-style gate."""
        stack = list(raw.data_preds)
        seen: set[int] = set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            pred = self.raws[p]
            if pred.op in ops.GATE_OPS:
                return True
            # Only look through glue: the gate must sit right before the multiply.
            if pred.params or pred.op in ops.OP_PRIMITIVES or pred.op not in ops.GLUE_OPS:
                continue
            stack.extend(pred.data_preds)
        return False

    @staticmethod
    def _inner_se_means(kinds: dict[int, str], preds: dict[int, frozenset[int]]) -> set[int]:
        """Global means inside a squeeze-excitation branch (folded, as the GHNs do).

        A mean M is inner when it reads a node a that also feeds a ``cse`` node C directly and
        M's output reaches C: the mean only computes the gate.
        """
        succs: dict[int, set[int]] = {}
        for i, srcs in preds.items():
            for s in srcs:
                succs.setdefault(s, set()).add(i)
        inner: set[int] = set()
        for c, kind in kinds.items():
            if kind != "cse":
                continue
            for a in preds[c]:
                for m in succs.get(a, ()):
                    if kinds.get(m) == "glob_avg" and preds[m] == {a} and _reaches(m, c, succs):
                        inner.add(m)
        return inner


_PARAMS = "params"  # kind of a raw op that owns parameters (it becomes param nodes)


def _n_inputs(raw: _Raw, srcs: set[int], outs: list[frozenset[int]]) -> int:
    """How many different things an op combines: distinct sources, counted per operand.

    x + x combines one thing; so does (q @ k) + mask, whose one operand merely depends on two
    nodes through a folded matmul.
    """
    operands = sum(1 for p in raw.data_preds if outs[p]) + int(raw.reads_input)
    return min(operands, len(srcs))


# Ops that apply attention weights to the values.
_VALUE_MATMULS = frozenset(("Bmm", "Mm", "Matmul"))


def _attention_output(
    raw: _Raw, outs: list[frozenset[int]], is_msa: Callable[[int], bool]
) -> int | None:
    """The ``msa`` node whose weights ``raw`` applies to the values (attn @ v), if any.

    The values then count as inputs of attention and the product as its output, so an
    explicit softmax reads like a fused attention kernel: q, k, v -> msa -> out projection.
    """
    if raw.op not in _VALUE_MATMULS or raw.params:
        return None
    for p in raw.data_preds:
        if len(outs[p]) == 1:
            (v,) = outs[p]
            if v != INPUT and is_msa(v):
                return v
    return None


_KNOWN_PARAM_OPS = (
    ops.CONV_OPS | ops.MATMUL_OPS | ops.BATCH_NORM_OPS | ops.LAYER_NORM_OPS | ops.EMBEDDING_OPS
)


def _reaches(start: int, goal: int, succs: dict[int, set[int]]) -> bool:
    # Raw indices are topologically ordered, so nothing past ``goal`` can lead back to it.
    stack, seen = [start], {start}
    while stack:
        v = stack.pop()
        if v == goal:
            return True
        for w in succs.get(v, ()):
            if w <= goal and w not in seen:
                seen.add(w)
                stack.append(w)
    return False


def _owner(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def _drop_attention_bypass(nodes: list[ArchNode], edges: set[tuple[int, int]]) -> None:
    """Remove edges that bypass an ``msa`` node (the value path of attention).

    GHNs read attention as one node, in_proj -> msa -> out_proj. Values applied by a matmul
    are already routed into the msa node (``_attention_output``); this catches any other
    path from an attention input to the attention's consumers.
    """
    for m, node in enumerate(nodes):
        if node.primitive != "msa":
            continue
        before = {s for s, t in edges if t == m}
        after = {t for s, t in edges if s == m}
        edges.difference_update({(s, t) for s in before for t in after})
