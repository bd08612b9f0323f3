"""The settings `optimize`, `bench` and `evaluate` share, in DESIGN.md's layers: built-in
defaults, then `$KERNELWRIGHT_HOME/config.toml`, then `KERNELWRIGHT_*` environment variables,
then command-line flags; the last layer that gives a value wins.

Guarantees: every layer is typed (a `Layer`, never a loose dict); a value that cannot work is
`BadInput` naming where it came from (the file and key, the variable, or the flag) and what to
do, raised by `load` before anything runs; an unknown key in the file is bad input too (a typo
would otherwise be ignored in silence). API keys are not settings: they come only from
`OPENAI_API_KEY` / `ANTHROPIC_API_KEY` (agents.registry). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kernelwright import options
from kernelwright.errors import BadInput

Origin = Literal["default", "file", "env", "flag"]
TARGETS = ("cuda", "cpu")  # as kernelwright.targets has them; that module is not needed here
PROFILES = ("all", "best", "none")
ENV_PREFIX = "KERNELWRIGHT_"


@dataclass(frozen=True)
class Layer:
    """What one layer says; None where it says nothing. Field names are the flags' (`--time-limit`
    is `time_limit`), the keys of config.toml and, upper-cased, the variables' suffixes."""

    target: str | None = None
    model: str | None = None
    judge_model: str | None = None
    base_url: str | None = None
    reasoning: str | None = None
    rounds: int | None = None
    width: int | None = None
    budget_usd: float | None = None
    target_speedup: float | None = None
    time_limit: float | None = None
    trials: int | None = None
    seed: int | None = None
    atol: float | None = None
    rtol: float | None = None
    timeout: float | None = None
    build_timeout: float | None = None
    compile_baseline: bool | None = None
    profile: str | None = None


@dataclass(frozen=True)
class Settings:
    """The effective settings. `target` None: cuda where a GPU is visible, else cpu (decided
    where it is used, since finding out asks the driver); `model` None: chosen from the API key
    that is set, or the shipped demo (see kernelwright.cli.optimize)."""

    target: str | None = None
    model: str | None = None
    judge_model: str | None = None  # None: the coder's
    base_url: str | None = None
    reasoning: str | None = None
    rounds: int = 10
    width: int = 1
    budget_usd: float | None = None
    target_speedup: float | None = None
    time_limit: float | None = None  # seconds
    trials: int = 5
    seed: int = 42
    atol: float | None = None
    rtol: float | None = None
    timeout: float = 180.0  # seconds for verify + time
    build_timeout: float = 300.0
    compile_baseline: bool = False
    profile: str = "best"
    # where each value came from, as (name, origin) pairs; not part of the settings' equality
    origins: tuple[tuple[str, Origin], ...] = field(default=(), compare=False, repr=False)

    def origin(self, name: str) -> Origin:
        return dict(self.origins).get(name, "default")

    def given(self, name: str) -> bool:
        """Whether a flag set `name` (a resumed run takes only flags; it keeps its own settings
        over the file's and the environment's)."""
        return self.origin(name) == "flag"

    def values(self) -> dict[str, Any]:
        """The settings as JSON-able values, by name (for `config show` and `--dry-run`)."""
        return {name: getattr(self, name) for name in NAMES}


NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Layer))


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if value is None or value in allowed:
            return None
        return f"must be {' or '.join(allowed)} (got {value!r})"

    return rule


# per setting: its type, and what its value must satisfy (kernelwright.options' rules)
_KINDS: dict[str, type] = {
    "rounds": int,
    "width": int,
    "trials": int,
    "seed": int,
    "budget_usd": float,
    "target_speedup": float,
    "time_limit": float,
    "atol": float,
    "rtol": float,
    "timeout": float,
    "build_timeout": float,
    "compile_baseline": bool,
}
_RULES: dict[str, Callable[[Any], str | None]] = {
    "target": _choice(TARGETS),
    "profile": _choice(PROFILES),
    "rounds": options.at_least_one_rule,
    "width": options.at_least_one_rule,
    "trials": options.at_least_one_rule,
    "seed": options.seed_rule,
    "budget_usd": options.zero_or_more_rule,
    "atol": options.zero_or_more_rule,
    "rtol": options.zero_or_more_rule,
    "target_speedup": options.above_zero_rule,
    "time_limit": options.above_zero_rule,
    "timeout": options.above_zero_rule,
    "build_timeout": options.above_zero_rule,
}
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$KERNELWRIGHT_HOME/config.toml` (home as kernelwright.paths has it, but never created:
    reading the settings writes nothing)."""
    env = os.environ if environ is None else environ
    home = env.get("KERNELWRIGHT_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".kernelwright") / "config.toml"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def from_file(path: Path) -> Layer:
    """config.toml's layer; an empty one where there is no file."""
    if not path.is_file():
        return Layer()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: cannot read it as TOML ({exc}); fix the file or move it") from exc
    unknown = [_with_guess(key) for key in sorted(set(data) - set(NAMES))]
    if unknown:
        raise BadInput(
            f"{path}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)}; the keys are "
            f"{', '.join(NAMES)} (docs/configuration.md)"
        )
    values = {}
    for name, value in data.items():
        values[name] = _typed(name, value, f"{path}: {name}", "fix it in the file")
    return _checked(Layer(**values), lambda n: f"{path}: {n}", "fix it in the file")


def from_env(environ: Mapping[str, str] | None = None) -> Layer:
    """The `KERNELWRIGHT_<NAME>` variables' layer; an empty variable says nothing. Other
    KERNELWRIGHT_* variables (HOME, DB, NCU) are not settings and are left alone."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in NAMES:
        raw = env.get(env_name(name), "").strip()
        if raw:
            values[name] = _parsed(name, raw, f"{env_name(name)}={raw!r}", "fix or unset it")
    return _checked(
        Layer(**values), lambda n: f"{env_name(n)}={env.get(env_name(n))!r}", "fix or unset it"
    )


def from_flags(**flags: Any) -> Layer:
    """The flags' layer (None: not given). Their values are checked in `load`, with the flags'
    own messages."""
    unknown = set(flags) - set(NAMES)
    if unknown:  # a programming error, not a user's
        raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
    return Layer(**flags)


def load(
    flags: Layer | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Settings:
    """The effective settings: defaults, then the file, then the environment, then `flags`."""
    layers: list[tuple[Origin, Layer]] = [
        ("file", from_file(path if path is not None else config_path(environ))),
        ("env", from_env(environ)),
    ]
    if flags is not None:
        layers.append(("flag", _checked(flags, flag_name, "")))
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for origin, layer in layers:
        for name in NAMES:
            value = getattr(layer, name)
            if value is not None:
                values[name], origins[name] = value, origin
    return Settings(**values, origins=tuple(origins.items()))


def _with_guess(key: str) -> str:
    close = difflib.get_close_matches(key.replace("-", "_"), NAMES, n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def _typed(name: str, value: Any, where: str, fix: str) -> Any:
    """A TOML value as the setting's type (an integer will do for a number)."""
    kind = _KINDS.get(name, str)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise BadInput(f"{where} must be {_KIND_WORDS[kind]} (got {value!r}); {fix}")
    return value


def _parsed(name: str, raw: str, where: str, fix: str) -> Any:
    """A variable's text as the setting's type."""
    kind = _KINDS.get(name, str)
    try:
        if kind is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return raw.lower() in _TRUE
        return kind(raw)
    except ValueError:
        raise BadInput(f"{where} must be {_KIND_WORDS[kind]}; {fix}") from None


def _checked(layer: Layer, where: Callable[[str], str], fix: str) -> Layer:
    for name in NAMES:
        value = getattr(layer, name)
        rule = _RULES.get(name)
        problem = rule(value) if rule is not None and value is not None else None
        if problem is None:
            continue
        if name == "target" and not fix:  # the flag's own words, as before there were layers
            raise BadInput(f"unknown target {value!r}; use cuda or cpu")
        raise BadInput(f"{where(name)} {problem}" + (f"; {fix}" if fix else ""))
    return layer
