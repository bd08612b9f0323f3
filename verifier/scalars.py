"""Which parameters of the code ModelNew runs may hold tensors, and which provably never do.

The compute rules (PyTorch arithmetic, numpy on the host) look at what a function does with
its tensors. Counting every parameter as a tensor rejects honest code that does arithmetic on
sizes (`(n + block - 1) // block`, `np.log2(n)` in a helper) or on an int input of the problem
(`dim % x.dim()`). Counting none lets a helper do the work (`def _mul(a, b): return a * b`).

So a parameter counts as a tensor unless it is *proven* not to be one:

- ModelNew.forward: the positions the problem's `get_inputs()` fills with literals (`-1`, a
  module constant), known from the problem file, never from the candidate;
- any other function or method: every call of it passes a value proven scalar there (a constant,
  a size read off a tensor, arithmetic on such values, a name only ever bound to them). A function
  that is passed around, decorated, or never called by name keeps every parameter a tensor.

Proofs only grow from "everything is a tensor", so whatever the analysis cannot follow stays a
tensor: the rules may warn about honest code, never wave a tensor through.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import NamedTuple

from kernelwright.pyast import dotted, scope_nodes

# Reading these off any object gives sizes, dtypes or devices, never tensor values.
SIZE_FIELDS = {"shape", "ndim", "dtype", "device", "is_cuda", "layout", "itemsize"}
SIZE_METHODS = {
    "size",
    "dim",
    "numel",
    "nelement",
    "stride",
    "element_size",
    "is_contiguous",
    "data_ptr",
    "get_device",
    "item",
    "tolist",
}
# Builtins whose result is never a tensor, whatever they are given.
NEVER_TENSOR = {"len", "int", "float", "bool", "str", "isinstance", "range", "id", "hash", "repr"}
# Builtins (and numpy) that give back a tensor when handed one.
PASS_THROUGH = {"min", "max", "abs", "sum", "round", "divmod", "pow", "tuple"}
# Decorators that call the function with the caller's own arguments.
TRANSPARENT_DECORATORS = {"staticmethod", "functools.lru_cache", "lru_cache", "functools.cache"}
TRANSPARENT_DECORATORS |= {"cache", "torch.no_grad", "torch.inference_mode", "no_grad"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


class Reached(NamedTuple):
    """A function of the code ModelNew runs, with what is known of its names."""

    function: ast.FunctionDef
    tensors: set[str]  # its parameters that may hold tensors
    scalars: set[str]  # its names (parameters, locals, module constants) that never do


def params(function: Function, method: bool) -> list[ast.arg]:
    """Parameters in call order, without `self`; `*args`/`**kw` last."""
    a = function.args
    positional = [*a.posonlyargs, *a.args]
    if method and positional:
        positional = positional[1:]
    extra = [v for v in (a.vararg, a.kwarg) if v is not None]
    return [*positional, *a.kwonlyargs, *extra]


class Scope:
    """The names proven scalar inside one function, given which of its parameters are."""

    def __init__(self, function: Function | None, scalar_params: set[str], prover: Prover):
        self.prover = prover
        self.names: set[str] = set()
        self.local: set[str] = set()
        if function is None:  # module level
            self.names = set(prover.module_constants)
            return
        bindings: dict[str, list[ast.AST | None]] = {}
        for node in _own_nodes(function):
            for name, value in _bindings(node):
                bindings.setdefault(name, []).append(value)
        for node in ast.walk(function):  # a nested function may rebind a local (`nonlocal n`)
            if isinstance(node, ast.Nonlocal):
                for name in node.names:
                    bindings.setdefault(name, []).append(None)
        everything = {p.arg for p in params(function, False)}
        self.local = set(bindings) | everything
        outer = prover.module_constants - set(bindings) - everything
        for around in prover.enclosing_functions.get(id(function), []):
            outer -= _bound_names(around)  # a free name of a closure is the enclosing one's
        # locals start proven and lose the proof on any binding that is not scalar
        self.names = outer | scalar_params | (set(bindings) - everything)
        changed = True
        while changed:
            changed = False
            for name, values in bindings.items():
                if name in self.names and not all(self.proves(v) for v in values):
                    self.names.discard(name)
                    changed = True

    def proves(self, node: ast.AST | None) -> bool:
        """Whether the expression's value is never a tensor."""
        if node is None:
            return False
        if isinstance(node, ast.Constant | ast.JoinedStr):
            return True
        if isinstance(node, ast.Name):
            return node.id in self.names
        if isinstance(node, ast.Attribute):
            if node.attr in SIZE_FIELDS and node.attr not in self.prover.own_fields:
                return isinstance(node.value, ast.Name | ast.Attribute)
            return dotted(node) in self.prover.self_constants
        if isinstance(node, ast.Subscript):
            return self.proves(node.value)
        if isinstance(node, ast.BinOp):
            return self.proves(node.left) and self.proves(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.proves(node.operand)
        if isinstance(node, ast.BoolOp):
            return all(self.proves(v) for v in node.values)
        if isinstance(node, ast.Compare):
            return self.proves(node.left) and all(self.proves(c) for c in node.comparators)
        if isinstance(node, ast.IfExp):
            return self.proves(node.body) and self.proves(node.orelse)
        if isinstance(node, ast.Tuple):  # not a list: `.append(x)` would put a tensor in it
            return all(self.proves(e) for e in node.elts)
        if isinstance(node, ast.Call):
            return self._call_proves(node)
        return False

    def _call_proves(self, node: ast.Call) -> bool:
        name = dotted(node.func)
        arguments = [*node.args, *(k.value for k in node.keywords)]
        prover = self.prover
        if isinstance(node.func, ast.Attribute) and node.func.attr in SIZE_METHODS:
            trusted = node.func.attr not in prover.own_fields
            return trusted and isinstance(node.func.value, ast.Name | ast.Attribute)
        if name in NEVER_TENSOR and prover.builtin(name) and name not in self.local:
            return True
        head, _, _ = name.partition(".")
        library = prover.imports.get(head) in ("math", "numpy") and head not in self.local
        if (name in PASS_THROUGH and prover.builtin(name) and name not in self.local) or library:
            return all(self.proves(a) for a in arguments)  # `math.prod([x, w])` is a tensor
        # the module's own helper whose every return is proven (`_cdiv(n, 256)`)
        func = node.func
        if isinstance(func, ast.Attribute) and not func.attr.startswith("__"):
            # `(n - 1).bit_length()`: a number's or a tuple's method, given no tensor
            if self.proves(func.value) and all(self.proves(a) for a in arguments):
                return True
        helper = name in self.prover.scalar_returns and name not in self.local
        return helper and all(self.proves(a) for a in arguments)


def _own_nodes(function: Function) -> Iterable[ast.AST]:
    """The function's nodes, not those of functions, lambdas or classes nested in it."""
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                if not isinstance(child, ast.ClassDef):
                    pending.append(child)


def _bindings(node: ast.AST) -> list[tuple[str, ast.AST | None]]:
    """(name, the value bound to it, or None where it is not an expression we can read)."""
    if isinstance(node, ast.Assign):
        found = []
        for target in node.targets:
            found += _unpack(target, node.value)
        return found
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]  # `n += 1`: scalar if `n` and `1` are
    if isinstance(node, ast.NamedExpr):
        return [(node.target.id, node.value)]
    if isinstance(node, ast.For | ast.AsyncFor):
        # an item of a proven iterable (`x.shape[1:]`, `range(n)`) is proven too: each name
        # stands for the whole iterable, never paired with one of its elements
        names = [n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)]
        return [(name, node.iter) for name in names]
    if isinstance(node, ast.Global | ast.Nonlocal):
        return [(n, None) for n in node.names]
    names: list[str] = []
    if isinstance(node, ast.With | ast.AsyncWith):
        targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    elif isinstance(node, ast.comprehension):
        names = [n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)]
    elif isinstance(node, ast.ExceptHandler) and node.name:
        names = [node.name]
    elif isinstance(node, ast.Import | ast.ImportFrom):
        names = [(a.asname or a.name).split(".")[0] for a in node.names]
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        names = [node.name]
    elif isinstance(node, ast.Delete):
        names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    elif isinstance(node, ast.MatchAs | ast.MatchStar):
        names = [node.name] if node.name else []
    elif isinstance(node, ast.MatchMapping):
        names = [node.rest] if node.rest else []
    return [(n, None) for n in names if isinstance(n, str)]


def _unpack(
    target: ast.AST, value: ast.AST | None, attributes: bool = False
) -> list[tuple[str, ast.AST | None]]:
    """(name, value) for each local name an assignment binds (`a, b = 1, n`), or with
    `attributes`, (attribute, value) for each attribute it stores (`self.a, o.b = ...`)."""
    if isinstance(target, ast.Name) and not attributes:
        return [(target.id, value)]
    if isinstance(target, ast.Attribute) and attributes:
        return [(target.attr, value)]
    if isinstance(target, ast.Tuple | ast.List):
        if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
            pairs = zip(target.elts, value.elts, strict=True)
            return [b for t, v in pairs for b in _unpack(t, v, attributes)]
        # `rows, cols = x.shape`: each part of a proven value is proven too
        part = None if attributes else value
        return [b for t in target.elts for b in _unpack(t, part, attributes)]
    if isinstance(target, ast.Starred):
        return _unpack(target.value, None if attributes else value, attributes)
    return []  # `a[i] = ...` binds no name


def _bound_names(function: Function) -> set[str]:
    """Every name a function binds: its parameters and its locals."""
    names = {p.arg for p in params(function, False)}
    return names | {name for node in _own_nodes(function) for name, _ in _bindings(node)}


# What marks a module as reaching names by computed strings: no proof survives it.
DYNAMIC_NAMES = {"globals", "vars", "locals", "eval", "exec", "builtins", "__builtins__"}
DYNAMIC_ATTRIBUTES = {
    "__dict__",
    "__globals__",
    "__setattr__",
    "__getattribute__",
    "__getattr__",
    "_buffers",
    "_parameters",
    "_modules",
    "modules",  # sys.modules
}
BY_NAME = {"getattr", "setattr", "hasattr", "delattr", "attrgetter", "methodcaller"}


def _dynamic(tree: ast.Module) -> bool:
    """Whether the module reaches names or attributes by computed strings."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRIBUTES:
            return True
        if isinstance(node, ast.alias) and node.name.split(".")[0] in DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Call) and dotted(node.func).split(".")[-1] in BY_NAME:
            by_name = dotted(node.func).split(".")[-1] in ("attrgetter", "methodcaller")
            names = node.args[:1] if by_name else node.args[1:2]
            if not all(isinstance(a, ast.Constant) for a in names):
                return True  # `getattr(self, "_m" + "ul")`
    return False


def _own_fields(tree: ast.Module) -> set[str]:
    """Size fields and methods (`shape`, `item`) the module gives objects of its own: defined,
    assigned as attributes, passed as keywords to a maker of objects (`SimpleNamespace(shape=x)`)
    or named in a string handed to one (`namedtuple("S", "shape")`); reading them proves
    nothing. Prose (`"shape mismatch"` in an assert or an exception) and keywords of torch's
    own calls (`torch.empty(size=...)`, `x.sum(dim=1)`) give nothing."""
    fields = SIZE_FIELDS | SIZE_METHODS
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    made = {dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    modules = module_names(tree)[1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        if isinstance(node, ast.ClassDef):
            for statement in node.body:  # class attributes: `shape = property(...)`
                found |= {name for name, _ in _bindings(statement)}
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            if node.attr in SIZE_FIELDS or not _harness_value(node, parents, made):
                found.add(node.attr)  # `self.dim = dim` from the problem is no method
        elif isinstance(node, ast.keyword) and node.arg in fields:
            if _makes_objects(parents.get(node), modules):
                found.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            holder = parents.get(node)
            while isinstance(holder, ast.List | ast.Tuple | ast.Set):  # `[("shape", object)]`
                holder = parents.get(holder)
            named = isinstance(holder, ast.Dict) or _makes_objects(holder, modules)
            if named and re.fullmatch(r"[\w\s,]*", node.value):
                found |= set(re.findall(r"\w+", node.value))
    return found & fields


def _makes_objects(call: ast.AST | None, modules: dict[str, str]) -> bool:
    """Whether a call may build an object whose fields its keywords or strings name: any but
    the functions (not classes) of torch, numpy and math, methods of local objects
    (`x.sum(dim=1)`), and messages (exceptions, print, logging, warnings)."""
    if not isinstance(call, ast.Call):
        return False
    name = dotted(call.func)
    root, last = name.partition(".")[0], name.rpartition(".")[2]
    library = modules.get(root, "").split(".")[0] in ("torch", "numpy", "math")
    if not name or (library and last[:1].islower()):
        return False
    if last.endswith(("Error", "Exception", "Warning")) or last in MESSAGES:
        return False
    if isinstance(call.func, ast.Attribute) and root not in modules and last[:1].islower():
        return False  # a method of a local object: `x.sum(dim=1)`, `cfg.update(...)`
    return True


MESSAGES = {"print", "warn", "info", "debug", "warning", "error", "format", "join", "write"}


def _harness_value(store: ast.Attribute, parents: dict[ast.AST, ast.AST], made: set[str]) -> bool:
    """`self.dim = dim` from a parameter of the constructor of a class only the harness makes
    (the module calls it nowhere), or a constant: a number the problem passed, never a function
    that `.dim()` would call."""
    assign = parents.get(store)
    if not isinstance(assign, ast.Assign | ast.AnnAssign) or assign.value is None:
        return False
    value = assign.value
    if isinstance(value, ast.Constant):
        return True
    function = assign
    while function is not None and not isinstance(function, ast.FunctionDef):
        function = parents.get(function)
    if function is None or function.name != "__init__" or not isinstance(value, ast.Name):
        return False
    owner = parents.get(function)
    if not isinstance(owner, ast.ClassDef) or owner.name in made:
        return False
    return value.id in {p.arg for p in params(function, True)}


class Prover:
    """Works out, for the module's functions and methods, which parameters may be tensors."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        # a module that reaches names by computed strings can rebind anything: nothing is proven
        self.dynamic = _dynamic(tree)
        self.own_fields = _own_fields(tree)
        self.bound_anywhere, self.imports = module_names(tree)
        self.from_imports = {  # `from functools import cache` -> cache: functools
            alias.asname or alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
            if self.bound_anywhere.get(alias.asname or alias.name) == 1
        }
        self.module_constants = set() if self.dynamic else self._module_constants()
        self.self_constants: set[str] = set()
        self.scalar_returns: set[str] = set()
        self.enclosing = _enclosing_functions(tree)
        self.enclosing_functions = _enclosing_chains(tree)
        self.owners = {
            id(m): cls
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for m in cls.body
            if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
        }

    def _module_constants(self) -> set[str]:
        """Module-level names only ever bound to literals (`ROWS = 128`, `DIMS = (0, 1)`)."""
        bindings: dict[str, list[ast.AST | None]] = {}
        for part in scope_nodes(list(self.tree.body)):  # `with`, `for`, `match`, `(T := ...)` too
            for name, value in _bindings(part):
                bindings.setdefault(name, []).append(value)
        for node in ast.walk(self.tree):  # `global N` in a function may rebind it to anything
            if isinstance(node, ast.Global):
                for name in node.names:
                    bindings.setdefault(name, []).append(None)
        known: set[str] = set()
        grown = True
        while grown:  # `THREADS = WARP * 4` after `WARP = 32`
            grown = False
            for name, values in bindings.items():
                if name not in known and all(_constant(v, known) for v in values):
                    known.add(name)
                    grown = True
        return known

    def builtin(self, name: str) -> bool:
        """Whether `name` is Python's builtin here: the module binds it nowhere."""
        return name not in self.bound_anywhere

    def is_method(self, function: Function) -> bool:
        """Whether its first parameter is not an argument of its calls: `self`, or the `ctx`
        of an autograd.Function's forward."""
        static = any(_decorator_name(d) == "staticmethod" for d in function.decorator_list)
        return id(function) in self.owners and (not static or self._applied(function))

    def _applied(self, function: Function) -> bool:
        """An autograd.Function's forward, run by `Fn.apply(...)`."""
        owner = self.owners.get(id(function))
        if owner is None or function.name != "forward" or len(owner.bases) != 1:
            return False
        if any(isinstance(m, ast.FunctionDef) and m.name == "setup_context" for m in owner.body):
            return False  # forward then takes no ctx
        base = dotted(owner.bases[0])
        torch_function = base == "torch.autograd.Function" and self.imports.get("torch") == "torch"
        imported = self.from_imports.get(base) == "torch.autograd" and base == "Function"
        return torch_function or imported

    def tensor_params(
        self,
        model: ast.ClassDef,
        functions: list[Function],
        forward_scalars: Iterable[int] = (),
        init_scalars: Iterable[int] = (),
        passed: tuple[int | None, int | None] = (None, None),
    ) -> dict[int, set[str]]:
        """id(function) -> the names of its parameters that may hold tensors, for `functions`.
        `forward_scalars`, `init_scalars`: positions of ModelNew.forward's and its
        constructor's inputs that the problem fills with literals; `passed`: how many
        arguments each gets, where known (a literal default beyond them is never replaced)."""
        tensor: dict[int, set[str]] = {}
        fixed: set[int] = set()  # parameters the harness or torch passes: never proven here
        for function in functions:
            tensor[id(function)] = {p.arg for p in params(function, self.is_method(function))}
            if self.owners.get(id(function)) is not None and function.name == "forward":
                if not self._applied(function):  # `Fn.apply(x, dim)` calls are followed
                    fixed.add(id(function))
        if self.dynamic:
            return tensor
        plans = (("forward", forward_scalars, passed[0]), ("__init__", init_scalars, passed[1]))
        for name, literal, count in plans:
            method = _plain_method(model, name)
            if method is None or self._called_again(name):
                continue
            names = tensor.setdefault(id(method), {p.arg for p in params(method, True)})
            positional = _positional(method, True)
            for index in literal:
                if 0 <= index < len(positional):
                    names.discard(positional[index].arg)
            for parameter in positional[count:] if count is not None else []:
                if _immutable_literal(_default(method, parameter)):
                    names.discard(parameter.arg)  # `eps=1e-5` that get_init_inputs leaves
        sites = {id(f): self._call_sites(f) for f in functions}
        while True:  # only ever removes names, so it settles
            self.self_constants = self._self_constants(tensor)
            self.scalar_returns = self._scalar_returns(functions)
            scopes = _Scopes(self, tensor)

            changed = False
            for function in functions:
                if id(function) in fixed or not sites[id(function)]:
                    continue
                for name in sorted(tensor[id(function)]):
                    if self._proven_at_every_site(function, name, sites[id(function)], scopes):
                        tensor[id(function)].discard(name)
                        changed = True
            if not changed:
                return tensor

    def proven_names(self, function: Function, tensor: dict[int, set[str]]) -> set[str]:
        """Names proven never to hold a tensor inside `function`, once tensor_params settled."""
        if self.dynamic:
            return set()
        return Scope(function, self._scalars(function, tensor), self).names

    def _transparent(self, decorator: str) -> bool:
        """A decorator that calls the function with its caller's arguments: functools' caches,
        torch's no_grad; a bare name only where imported from there, and bound once."""
        if decorator not in TRANSPARENT_DECORATORS:
            return False
        root = decorator.split(".")[0]
        if "." in decorator:
            return self.imports.get(root) == root and root in ("functools", "torch")
        if decorator == "staticmethod":
            return self.builtin(decorator)
        return self.from_imports.get(decorator) in ("functools", "torch")

    def _called_again(self, name: str) -> bool:
        """Whether the module itself may call ModelNew's `forward`/`__init__` (`self(x, t)`,
        `self.forward(...)`, `ModelNew.__init__(self, t)`), filling any parameter."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "self" and name == "forward":
                    return True
            if isinstance(node, ast.Attribute) and node.attr == name:
                by_super = isinstance(node.value, ast.Call) and dotted(node.value.func) == "super"
                if not (name == "__init__" and by_super):
                    return True
            if isinstance(node, ast.Constant) and node.value == name:
                return True
        return False

    def _scalars(self, function: Function, tensor: dict[int, set[str]]) -> set[str]:
        """Its parameters proven scalar so far (none, for a function not analysed)."""
        names = {p.arg for p in params(function, self.is_method(function))}
        return names - tensor.get(id(function), names)

    def _call_sites(self, function: Function) -> list[ast.Call] | None:
        """Its calls by name; None where it is also used any other way (passed around,
        decorated), so that its callers cannot be listed."""
        decorators = [_decorator_name(d) for d in function.decorator_list]
        if not all(self._transparent(d) for d in decorators):
            return None
        if function.name.startswith("__") and function.name.endswith("__"):
            return None  # `__call__` runs on `obj(...)`, `__add__` on `+`: callers unseen
        owner = self.owners.get(id(function))
        if self._applied(function):
            assert owner is not None
            calls = [
                n
                for n in ast.walk(self.tree)
                if isinstance(n, ast.Call) and dotted(n.func) == f"{owner.name}.apply"
            ]
            callees = {id(c.func) for c in calls}
            for node in ast.walk(self.tree):
                passed = isinstance(node, ast.Attribute) and node.attr in ("apply", "forward")
                if passed and id(node) not in callees:
                    return None  # `relu = Fn.apply`, `Fn.forward(...)`
            return calls
        method = owner is not None
        # a static method may also be called through its class: `ModelNew._tiles(n)`
        through_class = (
            f"{owner.name}.{function.name}" if owner and not self.is_method(function) else ""
        )
        calls = [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Call)
            and (_names(n.func, function.name, method) or dotted(n.func) == through_class)
        ]
        callees = {id(c.func) for c in calls}
        for node in ast.walk(self.tree):
            if _mentions(node, function.name, method) and id(node) not in callees:
                return None
        return calls

    def _proven_at_every_site(
        self, function: Function, name: str, calls: list[ast.Call], scopes: _Scopes
    ) -> bool:
        parameter = next(p for p in params(function, self.is_method(function)) if p.arg == name)
        if parameter is function.args.vararg or parameter is function.args.kwarg:
            return False
        positional = _positional(function, self.is_method(function))
        module = Scope(None, set(), self)
        for call in calls:
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            ):
                return False
            caller = self.enclosing.get(id(call))
            if caller is UNKNOWN:
                return False  # inside a lambda or a class body: names we do not follow
            scope = module if caller is None else scopes.of(caller)
            value = None
            if parameter not in function.args.posonlyargs:  # `f(a=1)` fills `**kw` then
                value = next((k.value for k in call.keywords if k.arg == name), None)
            if value is None and parameter in positional:
                index = positional.index(parameter)
                value = call.args[index] if index < len(call.args) else None
            if value is None:  # left to its default, evaluated where the def is (a class body)
                value, scope = _default(function, parameter), module
                if id(function) in self.owners and not _immutable_literal(value):
                    return False
            if not scope.proves(value):
                return False
        return True

    def _self_constants(self, tensor: dict[int, set[str]]) -> set[str]:
        """`self.block` where every store to a `.block` of any object, in any method, is
        proven, and no class body binds `block` (a property would run instead)."""
        values: dict[str, list[tuple[ast.AST | None, Function | None]]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and dotted(node.func).split(".")[-1] in REGISTERS:
                name = node.args[0] if node.args else None
                if dotted(node.func) == "setattr":
                    name = node.args[1] if len(node.args) > 1 else None
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    return set()  # attributes set by computed names: none is known
                values.setdefault(name.value, []).append((None, None))
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    for name, _ in _bindings(statement):
                        values.setdefault(name, []).append((None, None))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
                stored = values.setdefault(node.attr, [])
                if self.enclosing.get(id(node)) in (None, UNKNOWN):  # module level, class body
                    stored.append((None, None))
        for function in ast.walk(self.tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in _own_nodes(function):
                    for target, value in _assigned_attributes(node):
                        values[target].append((value, function))
        self.self_constants = set()  # proofs below may not lean on one another
        proven = set()
        for attribute, assigned in values.items():
            if assigned and all(
                function is not None
                and Scope(function, self._scalars(function, tensor), self).proves(value)
                for value, function in assigned
            ):
                proven.add(f"self.{attribute}")
        return proven

    def _scalar_returns(self, functions: list[Function]) -> set[str]:
        """Helpers whose every return is proven when all their parameters are: `_cdiv` for a
        module function, `self._grid` where every method of that name qualifies."""
        methods: dict[str, list[Function]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and id(node) in self.owners:
                methods.setdefault(node.name, []).append(node)
        candidates = [f for f in functions if id(f) not in self.owners]
        candidates += [m for group in methods.values() for m in group]
        proven = {id(f) for f in candidates if self._returns_proven(f)}
        found = {
            f.name
            for f in functions
            if id(f) not in self.owners and id(f) in proven and self.bound_anywhere[f.name] == 1
        }
        rebound = {  # `self._grid = lambda t: ...` is what `self._grid(...)` calls then
            f"self.{attr}" for node in ast.walk(self.tree) for attr, _ in _assigned_attributes(node)
        }
        found |= {
            f"self.{name}"
            for name, group in methods.items()
            if all(id(m) in proven for m in group) and f"self.{name}" not in rebound
        }
        return found

    def _returns_proven(self, function: Function) -> bool:
        everything = {p.arg for p in params(function, self.is_method(function))}
        scope = Scope(function, everything, self)
        returns = [n.value for n in _own_nodes(function) if isinstance(n, ast.Return)]
        return bool(returns) and all(scope.proves(r) for r in returns)


class _Scopes:
    """One round's scopes, made as callers are met."""

    def __init__(self, prover: Prover, tensor: dict[int, set[str]]):
        self.prover, self.tensor = prover, tensor
        self.made: dict[int, Scope] = {}

    def of(self, function: Function) -> Scope:
        if id(function) not in self.made:
            scalars = self.prover._scalars(function, self.tensor)
            self.made[id(function)] = Scope(function, scalars, self.prover)
        return self.made[id(function)]


# Calls that set attributes by name (buffers, parameters, submodules).
REGISTERS = {"register_buffer", "register_parameter", "add_module", "register_module", "setattr"}
UNKNOWN: Function = ast.FunctionDef(name="<unknown>")  # a lambda's or a class body's code


def _positional(function: Function, method: bool) -> list[ast.arg]:
    positional = [*function.args.posonlyargs, *function.args.args]
    return positional[1:] if method and positional else positional


def _default(function: Function, parameter: ast.arg) -> ast.AST | None:
    a = function.args
    positional = [*a.posonlyargs, *a.args]
    if parameter in positional:
        offset = len(positional) - len(a.defaults)
        index = positional.index(parameter)
        return a.defaults[index - offset] if index >= offset else None
    if parameter in a.kwonlyargs:
        return a.kw_defaults[a.kwonlyargs.index(parameter)]
    return None


def _decorator_name(node: ast.AST) -> str:
    return dotted(node.func if isinstance(node, ast.Call) else node) or "?"


def _names(func: ast.AST, name: str, method: bool) -> bool:
    """Whether a call's callee is this function: `helper(...)`, or `self.method(...)`."""
    if not method:
        return isinstance(func, ast.Name) and func.id == name
    return (
        isinstance(func, ast.Attribute)
        and func.attr == name
        and isinstance(func.value, ast.Name)
        and func.value.id == "self"
    )


def _mentions(node: ast.AST, name: str, method: bool) -> bool:
    if not method:
        return isinstance(node, ast.Name) and node.id == name
    # `.name` on anything, or the name as a string (getattr): it may be called from elsewhere
    if isinstance(node, ast.Constant) and node.value == name:
        return True
    return isinstance(node, ast.Attribute) and node.attr == name


def _enclosing_functions(tree: ast.Module) -> dict[int, Function]:
    """id(node) -> the innermost function around it (UNKNOWN inside a lambda or directly in
    a class body); module-level nodes are left out."""
    found: dict[int, Function] = {}

    def visit(node: ast.AST, inside: Function | None) -> None:
        for child in ast.iter_child_nodes(node):
            if inside is not None:
                found[id(child)] = inside
            here = inside
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                here = child
            elif isinstance(child, ast.Lambda | ast.ClassDef):
                here = UNKNOWN
            visit(child, here)

    visit(tree, None)
    return found


def _assigned_attributes(node: ast.AST) -> list[tuple[str, ast.AST | None]]:
    """(attribute name, value) for stores to an attribute of any object (`self.x = 4`,
    `other.x = t`; None where the value cannot be read: `self.x += t`, unpacking)."""
    if isinstance(node, ast.Assign):
        return [pair for target in node.targets for pair in _unpack(target, node.value, True)]
    if isinstance(node, ast.AnnAssign):
        return _unpack(node.target, node.value, True)
    if isinstance(node, ast.AugAssign):
        return _unpack(node.target, None, True)
    if isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.NamedExpr):
        targets = [getattr(node, "target", None)] + [
            i.optional_vars for i in getattr(node, "items", [])
        ]
        return [pair for t in targets if t is not None for pair in _unpack(t, None, True)]
    if isinstance(node, ast.Delete):
        return [pair for t in node.targets for pair in _unpack(t, None, True)]
    return []


def _constant(node: ast.AST | None, known: set[str]) -> bool:
    """An immutable literal, a name of `known`, or arithmetic and tuples of those."""
    if node is None:
        return False
    if isinstance(node, ast.Name):
        return node.id in known
    if isinstance(node, ast.BinOp):
        return _constant(node.left, known) and _constant(node.right, known)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand, known)
    if isinstance(node, ast.Tuple):
        return all(_constant(e, known) for e in node.elts)
    return _immutable_literal(node)


def _immutable_literal(node: ast.AST | None) -> bool:
    """A literal whose value cannot change: numbers, strings, None, tuples of those."""
    if node is None:
        return False
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return _immutable(value)


def _immutable(value: object) -> bool:
    if isinstance(value, tuple | frozenset):
        return all(_immutable(v) for v in value)
    return value is None or isinstance(value, int | float | complex | str | bytes)


def module_names(tree: ast.Module) -> tuple[dict[str, int], dict[str, str]]:
    """How many times each name is bound anywhere in the module (any scope), and the names
    bound only by importing a module (`np` -> `numpy`)."""
    counts: dict[str, int] = {}
    imports: dict[str, set[str]] = {}
    other: set[str] = set()

    def bind(name: str, module: str | None = None) -> None:
        counts[name] = counts.get(name, 0) + 1
        if module is None:
            other.add(name)
        else:
            imports.setdefault(name, set()).add(module)

    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bind(node.id)
        elif isinstance(node, ast.arg):
            bind(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                bind(alias.asname or root, alias.name if alias.asname else root)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                bind(alias.asname or alias.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bind(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bind(node.rest)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                bind(name)
    modules = {
        name: next(iter(found))
        for name, found in imports.items()
        if len(found) == 1 and name not in other
    }
    return counts, modules


def _enclosing_chains(tree: ast.Module) -> dict[int, list[Function]]:
    """id(function) -> the functions it is nested in (through classes too), outermost first."""
    chains: dict[int, list[Function]] = {}

    def visit(node: ast.AST, around: list[Function]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                chains[id(child)] = list(around)
                visit(child, [*around, child])
            else:
                visit(child, around)

    visit(tree, [])
    return chains


def _plain_method(model: ast.ClassDef, name: str) -> Function | None:
    """ModelNew's `forward` or `__init__` where the harness's arguments surely reach it in
    order: one plain `def`, no override of how a call or construction is dispatched, nn.Module
    its only base, and no other name bound to it in the class body."""
    if len(model.bases) != 1 or dotted(model.bases[0]) not in ("nn.Module", "torch.nn.Module"):
        return None
    if model.keywords or model.decorator_list:
        return None
    dispatch = {"__call__", "_call_impl", "_wrapped_call_impl", "__getattr__", "__getattribute__"}
    dispatch |= {"__new__", "__init_subclass__", "__class_getitem__"}
    found = []
    for node in model.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name in dispatch:
                return None
            if node.name == name:
                found.append(node)
        elif any(bound == name for bound, _ in _bindings(node)):
            return None
        elif any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node)):
            return None  # `_first = forward`
    if len(found) != 1 or found[0].decorator_list:
        return None
    return found[0]
