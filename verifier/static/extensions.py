"""Which names hold the candidate's compiled extension, so that calls through them are its own
code and not PyTorch: `_ext = load_inline(...)`, a getter that returns it (`_get_ext()`), a
method of ModelNew that builds it (`self.fn = self._load()`), aliases (`self.relu = _ext.relu`),
and the ops it registers (`torch.ops.my_ext`). A name bound to anything else anywhere, or whose
attributes are assigned, is not trusted."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from kernelwright.verifier.static.index import ModuleIndex, dotted, is_none, literal_str
from kernelwright.verifier.static.ops import dunder, op_space, own_op_namespace
from kernelwright.verifier.static.reach import model_new_class
from kernelwright.verifier.static.tables import PLAIN_DUNDERS

_BUILDERS = ("load_inline", "load")


@dataclass(frozen=True)
class Extensions:
    builders: set[str]  # calls that build it: `load_inline`, `cpp_extension.load`, `_get_ext`
    names: set[str]  # names holding it or its functions; `getter()` for a plain getter


def extension_builders(index: ModuleIndex) -> set[str]:
    return extensions(index).builders


def extensions(index: ModuleIndex) -> Extensions:
    if "extensions" not in index.memo:
        index.memo["extensions"] = _extensions(index)
    return index.memo["extensions"]  # type: ignore[return-value]


def _imported_builders(index: ModuleIndex) -> set[str]:
    """`load_inline`/`load` as the module imports them: by name (`load_inline as build`), or
    through the module by its full name, `import torch.utils.cpp_extension as ce`, `from
    torch.utils import cpp_extension`; bound by the import only."""
    own = {n.name for n in index.tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    builders: set[str] = set()
    modules = {"torch.utils.cpp_extension"}
    for i in index.imports:
        if i.name is not None and i.module == "torch.utils.cpp_extension" and i.name in _BUILDERS:
            builders.add(i.bound)
        elif i.name == "cpp_extension" and i.module == "torch.utils":
            modules.add(i.bound)
        elif i.name is None and i.module == "torch.utils.cpp_extension" and i.asname:
            modules.add(i.asname)
    kinds = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)
    rebound = {  # a name bound to anything but the import is not the module
        t.id
        for node in index.of(*kinds)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    builders |= {f"{m}.{fn}" for m in modules - rebound - own for fn in _BUILDERS}
    builders -= own  # a module's own `def load()` is not torch's
    # bound by its import only: not a lambda, a nested def or a parameter of that name too
    counts, imported = index.module_names
    return {b for b in builders if counts.get(b.split(".")[0]) == 1 or b.split(".")[0] in imported}


def _extensions(index: ModuleIndex) -> Extensions:
    builders = _imported_builders(index)
    native = index.native_namespaces

    def builds(value: ast.AST | None) -> bool:
        if value is not None and own_op_namespace(value, native):
            return True  # `_ops = torch.ops.my_ext`: the candidate's registered ops
        return isinstance(value, ast.Call) and dotted(value.func) in builders

    binds = index.binds
    built = {dotted(t) for targets, value in binds if builds(value) for t in targets}
    # `_EXT = None` then `_EXT = load_inline(...)` (a lazy getter's global) is fine; any other
    # value bound to the name is not
    built -= {dotted(t) for targets, value in binds if not builds(value) and not is_none(value)
              for t in targets}  # fmt: skip

    def returns_built(function: ast.FunctionDef) -> bool:
        returns = [n.value for n in index.within(function) if isinstance(n, ast.Return)]
        return bool(returns) and all(
            v is not None and (builds(v) or dotted(v) in built) for v in returns
        )

    for node in index.tree.body:  # a function whose every return is a built extension
        if isinstance(node, ast.FunctionDef) and node.name not in builders:
            if returns_built(node):
                builders.add(node.name)
    builders |= {f"self.{m.name}" for m in _plain_methods(index) if returns_built(m)}
    names = _trusted(binds, builds, {dotted(t) for targets, value in binds if builds(value)
                                     for t in targets})  # fmt: skip
    names = _bound_only_so(index, names)
    counts = index.module_names[0]
    names |= _held_by_model_new(index, names, counts)
    # `_get_ext().fn(x)`: a call through the module's own getter of the extension
    getters = {
        node.name
        for node in index.tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name in builders
        and counts.get(node.name) == 1  # no second def, loop or import of the name
        and _plain_getter(index, node, names, builds)
    }
    return Extensions(builders, names | {f"{g}()" for g in getters})


def _bound_only_so(index: ModuleIndex, names: set[str]) -> set[str]:
    """Drop plain names also bound any other way (an import, `match`, `except ... as`, a def, a
    parameter, unpacking: `_EXT, y = torch, 1`): they may hold anything. `global _EXT` binds
    nothing itself; attribute names (`self._ops`) are judged by `_trusted`."""
    counts = index.module_names[0]
    direct = Counter(t.id for targets, _ in index.binds for t in targets if isinstance(t, ast.Name))
    globals_ = Counter(name for node in index.of(ast.Global, ast.Nonlocal) for name in node.names)
    return {n for n in names if "." in n or counts.get(n, 0) == direct[n] + globals_[n]}


def _trusted(binds, builds: Callable[[ast.AST | None], bool], names: set[str]) -> set[str]:
    """Grow the names bound to the extension through aliases (`self._ops = _ext`, `f =
    _ext.relu`), dropping any also bound to something else or whose attributes are assigned."""
    for _ in range(len(binds) + 2):  # settles within that many rounds; a bound for safety
        source_ok = {
            id(value)
            for _, value in binds
            if value is not None
            and (
                builds(value)
                or dotted(value) in names
                or dotted(value).rpartition(".")[0] in names
                or (isinstance(value, ast.Attribute) and builds(value.value))  # `load(...).fn`
            )
        }
        grown = names | {
            dotted(t)
            for targets, value in binds
            if value is not None and id(value) in source_ok
            for t in targets
        }
        untrusted = {
            dotted(t)
            for targets, value in binds
            if value is None or (id(value) not in source_ok and not is_none(value))
            for t in targets
        }
        # `_ext.relu = torch.relu`: an extension whose attributes are assigned is not trusted
        untrusted |= {
            dotted(t).rpartition(".")[0]
            for targets, _ in binds
            for t in targets
            if isinstance(t, ast.Attribute) and dotted(t).rpartition(".")[0] in grown
        }
        trusted = grown - untrusted
        if trusted == names:
            break
        names = trusted
    return names


def _closed_model_new(index: ModuleIndex) -> tuple[ast.ClassDef, set[str]] | None:
    """ModelNew, and the attribute names stored anywhere in the module, where nothing could
    put anything else in its attributes behind the checks' backs: no decorator, metaclass or
    foreign base on ModelNew, and no `__dict__`, `vars`, three-argument `type`, dunder method
    (`__getattribute__`, `__init_subclass__`) or computed `setattr` in the module."""
    if "closed_model_new" in index.memo:
        return index.memo["closed_model_new"]  # type: ignore[return-value]
    index.memo["closed_model_new"] = found = _closed(index)
    return found


def _closed(index: ModuleIndex) -> tuple[ast.ClassDef, set[str]] | None:
    cls = model_new_class(index)
    if not isinstance(cls, ast.ClassDef) or cls.decorator_list or cls.keywords:
        return None
    own = {n.name for n in index.of(ast.ClassDef)}
    if any(dotted(b) not in own | {"nn.Module", "torch.nn.Module", "Module"} for b in cls.bases):
        return None
    stored = set(index.stored_attributes)
    if any(dunder(n.attr) not in ("", *PLAIN_DUNDERS) for n in index.of(ast.Attribute)):
        return None
    if any(dunder(n.name) not in ("", "__init__") for n in index.of(ast.FunctionDef)):
        return None
    if any(n.id == "vars" for n in index.of(ast.Name)):
        return None
    for node in index.of(ast.Call):
        short = dotted(node.func).rpartition(".")[2]
        if short == "type" and len(node.args) == 3:
            return None
        if short in ("setattr", "delattr", "__setattr__", "__delattr__"):
            named = len(node.args) > 1 and literal_str(node.args[1])
            stored.add(node.args[1].value if named else "*")  # type: ignore[attr-defined]
    return None if "*" in stored else (cls, stored)


def _held_by_model_new(index: ModuleIndex, names: set[str], counts: dict[str, int]) -> set[str]:
    """`class ModelNew: _ops = load_inline(...)`, called as `self._ops.fn(x)`: `self._ops` for
    an extension bound once, in ModelNew's own body, where nothing could put anything else
    there (no attribute of that name stored anywhere: `ModelNew._ops = torch`, `setattr`)."""
    closed = _closed_model_new(index)
    if closed is None:
        return set()
    cls, stored = closed
    held = set()
    for statement in cls.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in names and counts.get(t.id) == 1:
                    held.add(t.id)
    return {f"self.{n}" for n in held - stored}


def _plain_methods(index: ModuleIndex) -> list[ast.FunctionDef]:
    """ModelNew's own methods that `self.name()` surely calls: defined once in its body, not
    decorated, not dunders, their name never stored as an attribute, in a closed ModelNew."""
    closed = _closed_model_new(index)
    if closed is None:
        return []
    cls, stored = closed
    defs = [s for s in cls.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    defined = Counter(d.name for d in defs)
    assigned = {
        t.id
        for s in cls.body
        if isinstance(s, ast.Assign | ast.AnnAssign)
        for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
        if isinstance(t, ast.Name)
    }
    return [
        d
        for d in defs
        if isinstance(d, ast.FunctionDef)
        and defined[d.name] == 1
        and d.name not in assigned | stored
        and not d.decorator_list
        and not dunder(d.name)
    ]


def _plain_getter(index: ModuleIndex, function: ast.FunctionDef, names: set[str], builds) -> bool:
    """A getter of the extension that nothing can bend: no parameters, no decorators, and every
    return is a build or a module name trusted as the extension that it does not bind itself
    (a lazy global it declares `global` may be bound)."""
    a = function.args
    if function.decorator_list or a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg:
        return False
    inside = index.within(function)
    declared = {n for node in inside if isinstance(node, ast.Global) for n in node.names}
    bound = {
        n.id for n in inside if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
    }
    bound |= {
        (alias.asname or alias.name).split(".")[0]
        for node in inside
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    returns = [n.value for n in inside if isinstance(n, ast.Return)]
    for value in returns:
        if value is None:
            return False
        if builds(value):
            continue
        name = dotted(value)
        if name not in names or (name in bound and name not in declared):
            return False
    return bool(returns)


def through_extension(call: ast.Call, names: set[str]) -> bool:
    """Whether a call goes to the candidate's compiled code: `_ext.fn(...)`, `fn(...)` bound
    to it, or `_get_ext().fn(...)` through its getter."""
    name = dotted(call.func)
    if name in names or name.rpartition(".")[0] in names:
        return True
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
        getter = func.value
        return not getter.args and f"{dotted(getter.func)}()" in names
    return False


def calls_extension(index: ModuleIndex, scopes: list[ast.FunctionDef], names: set[str]) -> bool:
    """Whether the code ModelNew runs calls one of the candidate's compiled functions, or one
    of the ops its native code registers by name."""
    for scope in scopes:
        for node in index.within(scope):
            if isinstance(node, ast.Call):
                if through_extension(node, names):
                    return True
                if op_space(dotted(node.func)) in index.native_namespaces:
                    return True
    return False
