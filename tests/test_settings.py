"""The settings' layers (defaults, config.toml, KERNELWRIGHT_*, flags) and `kernelwright config`:
the last layer wins, each value says where it came from, and a bad value or an unknown key is one
line naming its file or variable, exit code 2."""

from __future__ import annotations

import dataclasses
import json

import pytest
from kernelwright import settings
from kernelwright.errors import BadInput
from kernelwright.loop_config import OptimizeConfig


def _home(tmp_path, text: str | None) -> dict[str, str]:
    if text is not None:
        (tmp_path / "config.toml").write_text(text)
    return {"KERNELWRIGHT_HOME": str(tmp_path)}


def test_each_layer_overrides_the_one_before(tmp_path):
    env = _home(tmp_path, 'rounds = 3\nwidth = 2\ntarget = "cpu"\natol = 1\n')
    env |= {"KERNELWRIGHT_WIDTH": "4", "KERNELWRIGHT_SEED": "7", "KERNELWRIGHT_RTOL": ""}
    s = settings.load(settings.from_flags(seed=9, compile_baseline=True), environ=env)
    assert (s.rounds, s.width, s.seed, s.target, s.atol, s.rtol) == (3, 4, 9, "cpu", 1.0, None)
    assert s.compile_baseline is True and s.trials == 5
    origins = {n: s.origin(n) for n in ("rounds", "width", "seed", "trials", "compile_baseline")}
    assert origins == {
        "rounds": "file",
        "width": "env",
        "seed": "flag",
        "trials": "default",
        "compile_baseline": "flag",
    }
    assert s.given("seed") and not s.given("width")


def test_layer_and_settings_name_the_same_fields():
    layer = [f.name for f in dataclasses.fields(settings.Layer)]
    assert layer == [f.name for f in dataclasses.fields(settings.Settings)][:-1]
    assert layer == list(settings.NAMES)


def test_a_new_run_config_takes_every_setting():
    s = settings.load(
        settings.from_flags(
            judge_model="openai:j",
            base_url="http://x",
            reasoning="high",
            rounds=3,
            width=2,
            budget_usd=1.5,
            target_speedup=2.0,
            time_limit=60.0,
            trials=2,
            seed=7,
            atol=0.01,
            rtol=0.02,
            timeout=30.0,
            build_timeout=40.0,
            compile_baseline=True,
            profile="none",
        ),
        environ={},
    )
    config = OptimizeConfig.from_settings(s, problem="p.py", target="cpu", coder_model="c:m")
    assert config == OptimizeConfig(
        problem="p.py",
        target="cpu",
        coder_model="c:m",
        judge_model="openai:j",
        base_url="http://x",
        reasoning="high",
        rounds=3,
        width=2,
        budget_usd=1.5,
        target_speedup=2.0,
        time_limit_s=60.0,
        trials=2,
        seed=7,
        atol=0.01,
        rtol=0.02,
        timeout_s=30.0,
        build_timeout_s=40.0,
        compile_baseline=True,
        profile="none",
    )
    # stored runs resume: the JSON shape is what it was
    assert OptimizeConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("text", "env", "fragments"),
    [
        ("roundz = 3\nfoo = 1\n", {}, ["config.toml: unknown keys foo, roundz (did you mean"]),
        ('rounds = "ten"\n', {}, ["config.toml: rounds must be a whole number (got 'ten')"]),
        ("width = 0\n", {}, ["config.toml: width must be at least 1", "fix it in the file"]),
        ('target = "tpu"\n', {}, ["config.toml: target must be cuda or cpu (got 'tpu')"]),
        ("compile_baseline = 1\n", {}, ["compile_baseline must be true or false"]),
        ("rounds = [\n", {}, ["cannot read it as TOML"]),
        (None, {"KERNELWRIGHT_TIMEOUT": "soon"}, ["KERNELWRIGHT_TIMEOUT='soon' must be a number"]),
        (None, {"KERNELWRIGHT_ATOL": "nan"}, ["KERNELWRIGHT_ATOL='nan' must be a finite number"]),
        (None, {"KERNELWRIGHT_PROFILE": "some"}, ["KERNELWRIGHT_PROFILE='some' must be all"]),
        (None, {"KERNELWRIGHT_COMPILE_BASELINE": "maybe"}, ["must be true or false"]),
    ],
)
def test_bad_values_name_their_file_or_variable(tmp_path, text, env, fragments):
    with pytest.raises(BadInput) as raised:
        settings.load(environ=_home(tmp_path, text) | env)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_environment_takes_words_for_booleans(tmp_path):
    on = settings.load(environ={**_home(tmp_path, None), "KERNELWRIGHT_COMPILE_BASELINE": "yes"})
    off = settings.load(environ={**_home(tmp_path, None), "KERNELWRIGHT_COMPILE_BASELINE": "0"})
    assert on.compile_baseline is True and off.compile_baseline is False


def _one_line(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in text, text
    assert proc.stdout.strip() == ""


def test_config_show_names_each_origin(cli_in_process, tmp_path):
    env = _home(tmp_path, 'model = "openai:gpt-5"\nrounds = 4\n') | {"KERNELWRIGHT_SEED": "3"}
    proc = cli_in_process("config", "show", "--json", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["file"] == str(tmp_path / "config.toml") and data["file_exists"] is True
    assert data["model"] == {"value": "openai:gpt-5", "origin": "file"}
    assert data["seed"] == {"value": 3, "origin": "env"}
    assert data["trials"] == {"value": 5, "origin": "default"}
    text = cli_in_process("config", env_extra=env)
    assert text.returncode == 0
    rows = {line.split()[0]: line.split()[1:] for line in text.stdout.splitlines() if line}
    assert rows["rounds"] == ["4", "config.toml"]
    assert rows["seed"] == ["3", "KERNELWRIGHT_SEED"]
    assert rows["width"] == ["1", "default"]


def test_bad_settings_stop_every_command_before_it_runs(cli_in_process, tmp_path, fixtures_dir):
    env = _home(tmp_path, "rounds = 0\n")
    _one_line(cli_in_process("config", "show", env_extra=env), "rounds must be at least 1")
    problem = str(fixtures_dir / "problems" / "scale_add.py")
    candidate = str(fixtures_dir / "candidates" / "scale_add_ok.py")
    db = tmp_path / "h.db"
    for args in (
        ["optimize", problem, "--model", "replay:x.jsonl", "--db", f"sqlite:///{db}"],
        ["bench", "builtin", "--model", "replay:x.jsonl", "--db", f"sqlite:///{db}"],
        ["evaluate", problem, candidate],
    ):
        _one_line(cli_in_process(*args, env_extra=env), "config.toml: rounds must be at least 1")
    bad_env = _home(tmp_path, "") | {"KERNELWRIGHT_TRIALS": "many"}
    _one_line(
        cli_in_process("evaluate", problem, candidate, env_extra=bad_env),
        "KERNELWRIGHT_TRIALS='many' must be a whole number; fix or unset it",
    )
    assert not db.exists()  # nothing written
