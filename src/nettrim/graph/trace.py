"""What reads each prunable layer's output: the data flow of a model, as a list of operations.

Two recorders give the same small representation, a list of :class:`Op` in execution order:

* :func:`fx_ops` reads a ``torch.fx`` trace of the model (the static graph: every use of every
  value, whatever the input). Plain ``nn`` modules without children and ``MultiheadAttention``
  are leaves; everything else, custom modules included, is traced through. Models with
  data-dependent control flow do not trace.
* :func:`record_ops` runs one forward pass and records every module call (forward hooks) and
  every torch function or tensor method called outside those modules (a ``TorchFunctionMode``:
  ``F.relu``, ``torch.relu_``, ``x.view``, ``+``, ...). This works on any model that runs.

:func:`analyse` then decides, for each prunable layer, whether its output (the pre-activation)
is read by exactly one ReLU and nothing else, looking through pass-through operations that move
or copy elements without changing them (dropout, identity, flatten, reshape, view, ...) and
ignoring metadata reads (``x.shape``, ``x.size(0)``). In-place ReLUs (``relu_``,
``inplace=True``) are followed: reads after the ReLU see the activation, reads before it the
pre-activation. Anything else reading the pre-activation (a GELU, a residual add, a LayerNorm,
attention, the model's output, an unknown module) makes it a non-ReLU layer. It also finds
whether the ReLU output goes, through dropout/identity only, into one prunable layer and
nowhere else (``feeds``), and whether the pre-activation is only the model's output.
"""
from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
IDENTITY_MODULES = (nn.Identity, *DROPOUT_MODULES)
PASS_MODULES = (*IDENTITY_MODULES, nn.Flatten, nn.Unflatten)
IDENTITY_FUNCS = frozenset({"dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout"})
PASS_FUNCS = IDENTITY_FUNCS | {"flatten", "unflatten", "reshape", "view", "contiguous", "squeeze",
                               "unsqueeze", "permute", "transpose", "clone"}
RELU_FUNCS = frozenset({"relu", "relu_"})
META_FUNCS = frozenset({"size", "dim", "numel", "stride", "is_contiguous", "nelement", "ndimension",
                        "element_size", "is_floating_point", "is_complex", "get_device", "__get__",
                        "__len__", "storage_offset", "data_ptr"})
META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout", "requires_grad",
                        "is_leaf", "grad_fn", "names", "is_sparse", "is_quantized", "is_meta",
                        "itemsize", "nbytes"})
_INPLACE_SLOT = {"relu": 1, "dropout": 3, "dropout1d": 3, "dropout2d": 3, "dropout3d": 3}


def is_prunable(module: nn.Module) -> bool:
    """A Linear, a Conv2d with groups = 1, or Hugging Face's ``Conv1D`` (GPT-2's Linear with a
    transposed weight), whose ``forward`` is the stock one (a subclass that computes something
    else is not a ``Z = X W^T + b`` layer and is passed through)."""
    if isinstance(module, nn.Linear):
        return type(module).forward is nn.Linear.forward
    if isinstance(module, nn.Conv2d):
        return type(module).forward is nn.Conv2d.forward and module.groups == 1
    return is_hf_conv1d(module)


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``pytorch_utils.Conv1D`` (y = x W + b, weight (in, out)), recognised
    without importing transformers."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers.")


def is_relu_module(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU) and type(module).forward is nn.ReLU.forward


def is_opaque(module: nn.Module) -> bool:
    """Modules recorded as one operation, not looked into: prunable layers, torch.nn modules
    without children, and MultiheadAttention (its out_proj is applied functionally)."""
    if is_prunable(module) or isinstance(module, nn.MultiheadAttention):
        return True
    return type(module).__module__.startswith("torch.nn") and next(module.children(), None) is None


@contextlib.contextmanager
def plain_forward():
    """No fused transformer fast path (``torch.backends.mha``): with it, an eval-mode
    TransformerEncoderLayer or MultiheadAttention skips its Linear modules' forward (and hooks)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@dataclass
class Op:
    """One operation: a module call (``name`` = the module's dotted name), a function or tensor
    method (``name`` = its name), or the model's ``output``. ``inputs``/``outputs`` are value
    keys; ``first`` is the key of the first positional argument (the data input) or None.
    ``inplace``: the operation writes into ``first`` and returns it."""

    kind: str
    name: str
    module: nn.Module | None = None
    inputs: list = field(default_factory=list)
    first: object = None
    outputs: list = field(default_factory=list)
    inplace: bool = False
    meta: bool = False
    dtype_arg: bool = False
    ndim: int | None = None  # of the first output, when recorded from a forward pass
    shape: tuple | None = None  # of the first output, when recorded from a forward pass

    def role(self) -> str:
        """relu, identity (dropout/identity), pass (other element moves), meta, or use."""
        if self.meta:
            return "meta"
        if self.kind == "module":
            if is_relu_module(self.module):
                return "relu"
            if isinstance(self.module, IDENTITY_MODULES):
                return "identity"
            return "pass" if isinstance(self.module, PASS_MODULES) else "use"
        if self.kind == "function" and not self.dtype_arg:
            if self.name in RELU_FUNCS:
                return "relu"
            if self.name in IDENTITY_FUNCS:
                return "identity"
            if self.name in PASS_FUNCS:
                return "pass"
        return "use"

    def describe(self) -> str:
        if self.kind == "module":
            return f"{type(self.module).__name__} '{self.name}'"
        return self.name


@dataclass
class Flow:
    """How one prunable layer's output is used (see :func:`analyse`)."""

    relu: bool
    feeds: str | None
    to_output: bool
    users: tuple[str, ...]


def _inplace_name(name: str, args, kwargs) -> bool:
    if kwargs.get("inplace") is True:
        return True
    slot = _INPLACE_SLOT.get(name)
    if slot is not None and len(args) > slot and args[slot] is True:
        return True
    if name.startswith("__i") and name.endswith("__"):  # __iadd__, ...
        return True
    return name.endswith("_") and not name.endswith("__")


def _func_name(func) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a tensor property (x.shape, x.T): its own name
        return getattr(getattr(func, "__self__", None), "__name__", None) or name
    if name.startswith("__") and name.endswith("__") and name not in META_FUNCS:
        name = name.strip("_")  # Tensor.__add__ -> add, like operator.add in fx
        if name.startswith("i") and name[1:] in ("add", "sub", "mul", "truediv", "and", "or"):
            name = name[1:] + "_"
    return name


def _tensors(obj) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _has_dtype(obj) -> bool:
    return any(isinstance(v, torch.dtype) for v in tree_flatten(obj)[0])


class _Recorder(TorchFunctionMode):
    """Records module calls (hooks) and torch functions outside opaque modules (the mode)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.ops: list[Op] = []
        self.keep: list[torch.Tensor] = []  # holds every recorded tensor: ids stay unique
        self.storage: dict[int, object] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[str] = []
        self.depth = 0  # > 0 inside an opaque module
        self.busy = False  # our own hooks running: their tensor reads are not the model's
        self.names = {m: n for n, m in model.named_modules()}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post, with_kwargs=True))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _key(self, t: torch.Tensor) -> int:
        k = id(t)
        if k not in self.storage:
            self.keep.append(t)
            try:
                self.storage[k] = (t.device, t.untyped_storage().data_ptr())
            except Exception:  # tensors without plain storage: only identity aliases
                self.storage[k] = k
        return k

    def _pre(self, module, args, kwargs):
        name = self.names.get(module, "?")
        self.stack.append(name)
        self.calls[name] = self.calls.get(name, 0) + 1
        if is_opaque(module):
            self.depth += 1

    def _post(self, module, args, kwargs, out):
        name = self.stack.pop() if self.stack else self.names.get(module, "?")
        if not is_opaque(module):
            return
        self.depth -= 1
        if self.depth > 0:
            return
        self.busy = True
        try:
            self._log_module(name, module, args, kwargs, out)
        finally:
            self.busy = False

    def _log_module(self, name, module, args, kwargs, out) -> None:
        ins = _tensors((args, kwargs))
        outs = _tensors(out)
        first = self._key(args[0]) if args and isinstance(args[0], torch.Tensor) else None
        self.ops.append(Op("module", name, module, [self._key(t) for t in ins], first,
                           [self._key(t) for t in outs],
                           inplace=bool(outs) and first is not None and id(outs[0]) == first,
                           ndim=outs[0].ndim if outs else None, shape=tuple(outs[0].shape) if outs else None))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and not self.busy:
            name = _func_name(func)
            ins, outs = _tensors((args, kwargs)), _tensors(out)
            first = self._key(args[0]) if args and isinstance(args[0], torch.Tensor) else None
            self.ops.append(Op("function", name, None, [self._key(t) for t in ins], first,
                               [self._key(t) for t in outs],
                               inplace=bool(outs) and first is not None and id(outs[0]) == first,
                               meta=not outs and (name in META_FUNCS or name in META_ATTRS),
                               dtype_arg=_has_dtype((args, kwargs)),
                               shape=tuple(outs[0].shape) if outs else None))
        return out

    def finish(self, out) -> None:
        outs = _tensors(out)
        self.ops.append(Op("output", "output", None, [self._key(t) for t in outs]))


def record_ops(model: nn.Module, example: torch.Tensor, use_mode: bool = True):
    """Run ``model(example)`` once (no grad, fused transformer path off) and return
    ``(ops, storage, calls)``: the operations, the storage of every value seen, and how many
    times each module (by name, in the order of their first call) ran.

    On an exception, ``exc.nettrim_stack`` names the modules that were running (innermost
    last). With ``use_mode=False`` only the module calls are meaningful (for models that break
    under a TorchFunctionMode).
    """
    rec = _Recorder(model)
    try:
        with torch.no_grad(), plain_forward():
            if use_mode:
                with rec:
                    out = model(example)
            else:
                out = model(example)
        rec.finish(out)
    except BaseException as exc:
        exc.nettrim_stack = list(rec.stack)  # type: ignore[attr-defined]
        raise
    finally:
        rec.remove()
    return rec.ops, rec.storage, rec.calls


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_opaque(m)


def fx_ops(model: nn.Module) -> tuple[list[Op], dict]:
    """The operations of a ``torch.fx`` trace of ``model`` (raises when it does not trace)."""
    from torch import fx

    with plain_forward():
        graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    value: dict = {}
    ops: list[Op] = []

    def key(n):
        return value.get(n, n)

    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        flat = [a for a in tree_flatten((node.args, node.kwargs))[0] if isinstance(a, fx.Node)]
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        ins = [key(a) for a in flat]
        fk = None if first is None else key(first)
        if node.op == "output":
            ops.append(Op("output", "output", None, ins))
            continue
        if node.op == "call_module":
            module = modules[node.target]
            inplace = bool(getattr(module, "inplace", False)) and fk is not None
            op = Op("module", node.target, module, ins, fk, inplace=inplace)
        else:
            target = node.target
            name = target if node.op == "call_method" else _func_name(target)
            meta = (node.op == "call_method" and name in META_FUNCS) or (
                target is getattr and len(node.args) > 1 and node.args[1] in META_ATTRS)
            inplace = fk is not None and (_inplace_name(name, node.args, node.kwargs) or target in (
                operator.iadd, operator.isub, operator.imul, operator.itruediv))
            op = Op("function", name, None, ins, fk, inplace=inplace, meta=meta,
                    dtype_arg=_has_dtype((node.args, node.kwargs)))
        if op.inplace:
            value[node] = fk
        op.outputs = [key(node)]
        ops.append(op)
    return ops, {}


def analyse(ops: list[Op], storage: dict, layers: list[str]) -> dict[str, Flow]:
    """The :class:`Flow` of each of ``layers`` (prunable module names) that appears in ``ops``.

    ``storage`` maps a value key to its storage (values sharing storage are views of each
    other); a key missing from it is only its own alias (the conservative reading)."""
    where = {}
    for i, op in enumerate(ops):
        if op.kind == "module" and op.name in layers and op.name not in where:
            where[op.name] = i
    flows = {}
    for name, i in where.items():
        flows[name] = _flow(ops, storage, set(layers), i)
    return flows


def _single(op: Op, members: set) -> bool:
    """``op``'s data input is a member and no other argument is."""
    return op.first in members and sum(v in members for v in op.inputs) == 1


def _flow(ops: list[Op], storage: dict, layers: set, i: int) -> Flow:
    store = lambda v: storage.get(v, ("self", v))
    if not ops[i].outputs:
        return Flow(False, None, False, ("?",))
    pre, post = {ops[i].outputs[0]}, set()
    relus, users = [], []
    for j in range(i + 1, len(ops)):
        op = ops[j]
        if not any(v in pre for v in op.inputs):
            continue
        role = op.role()
        if role == "meta":
            continue
        if role == "relu" and _single(op, pre):
            relus.append(j)
            if op.inplace:
                moved = {v for v in pre if store(v) == store(op.first)}
                pre -= moved
                post |= moved
            else:
                post |= set(op.outputs)
            continue
        if role in ("pass", "identity") and _single(op, pre):
            if not op.inplace:
                pre |= set(op.outputs)
            continue
        users.append(op.describe())
    relu = len(relus) == 1 and not users
    to_output = not relus and users == ["output"]
    described = tuple(["ReLU"] * len(relus) + users)
    if not relu:
        return Flow(False, None, to_output, described)
    readers, bad = [], False
    for op in ops[relus[0] + 1:]:
        if not any(v in post for v in op.inputs):
            continue
        role = op.role()
        if role == "meta":
            continue
        if role == "identity" and _single(op, post):
            if not op.inplace:
                post |= set(op.outputs)
            continue
        if op.kind == "module" and op.name in layers and _single(op, post) and len(op.inputs) == 1:
            readers.append(op.name)
            continue
        bad = True
    feeds = readers[0] if len(readers) == 1 and not bad else None
    return Flow(True, feeds, False, described)
