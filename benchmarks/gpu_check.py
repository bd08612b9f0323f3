"""Every GPU check in one command, for a session that is lent a GPU for a few minutes.

    python benchmarks/gpu_check.py --prepare          # here, with PyPI: fetch the wheels the
                                                      # device image lacks into .whl/
    python3 benchmarks/gpu_check.py [--budget 480] [--skip PART,...]   # on the GPU machine

Through the device tool, as one call (the .whl folder travels with `carry`):

    run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py", carry=[".whl"],
        timeout_s=560)

On the GPU machine it first installs what is missing (the carried wheels, then kernelwright
itself, without touching the image's torch), then runs each part below under its own time limit,
so that one hang costs that part and not the lease, and prints one table: part, status, seconds,
and the figures that matter. The table and each part's log are written under `$OUT` (or
`--out DIR`) when set. Exit code 0 when every part passed, 1 otherwise.

Parts, in order (time limits in seconds, together under 8 minutes):

- `environment` (30): GPU, driver, torch, nvcc, ncu, and which worker isolation the probe picks
  (bubblewrap is unpacked from the carried .deb where the image lacks it).
- `gpu_tests` (200): `pytest -m gpu`, on two processes where pytest-xdist is installed. These
  include the CUDA side of the trust checks (the reference timed in its own worker, the outside
  clock against device events, spot checks of timed outputs).
- `build_naive` (150): two shipped candidates built the KernelBench way and the fast way
  (`compile_speed.py --only 1,2 --parallel 0`): the ratio in one run.
- `build_fast` (110): six fast-layout builds with the precompiled headers warm, a cache hit, and
  eight builds at once (`compile_speed.py --layouts fast --only 1,...,6 --parallel 8`). The
  build-speed goal reads the median of these six against `build_naive`'s naive median.
- `suite` (110): `benchmarks/suite.py --target cuda` over three shipped problems: each verdict
  and speedup with its per-round spread.
- `throughput` (60): `benchmarks/throughput.py --target cuda`, where that script exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
# What the device image (Python 3.12, its own torch) lacks of kernelwright's needs: see
# /work/.library/device/KINDS.md for its package list.
MISSING_ON_DEVICE = (
    "sqlalchemy",
    "greenlet",
    "openai",
    "anthropic",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "distro",
    "jiter",
    "sniffio",
    "docstring-parser",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass
class Part:
    name: str
    command: list[str]
    limit_s: float
    figures: str = ""
    status: str = "not run"
    seconds: float = 0.0
    log: str = field(default="", repr=False)


def prepare() -> int:
    """Download the wheels the device lacks (binary, CPython 3.12, x86-64) into .whl/."""
    WHEELS.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    base += ["--python-version", "3.12", "--implementation", "cp", "-d", str(WHEELS)]
    for platform in PLATFORMS:
        base += ["--platform", platform]
    failed = []
    for name in MISSING_ON_DEVICE:
        if subprocess.run([*base, name], capture_output=True, text=True).returncode != 0:
            failed.append(name)
    # bubblewrap, which the device image lacks and cannot fetch: unpacked there by `install`
    deb = subprocess.run(["apt-get", "download", "bubblewrap"], cwd=WHEELS, capture_output=True)
    if deb.returncode != 0:
        failed.append("bubblewrap (apt-get download)")
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl")) / 2**20
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS} ({size:.1f} MiB)")
    if failed:
        print(f"could not download: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def install() -> str:
    """Make `import kernelwright` work on the device machine; '' or what went wrong."""
    if shutil.which("bwrap") is None:  # the workers' sandbox (else they fall back, and say so)
        for deb in sorted(WHEELS.glob("bubblewrap_*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), "/"], capture_output=True)
    probe = [sys.executable, "-c", "import kernelwright.cli, sqlalchemy, openai, anthropic"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return ""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    steps = []
    if WHEELS.is_dir():
        steps.append([*pip, *map(str, sorted(WHEELS.glob("*.whl")))])
    steps.append([*pip, "--no-build-isolation", str(ROOT)])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return (done.stderr or done.stdout).strip().splitlines()[-1][:300]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return "kernelwright still does not import after installing (were the wheels carried?)"
    return ""


def parts(python: str) -> list[Part]:
    bench = ROOT / "benchmarks"
    xdist = subprocess.run([python, "-c", "import xdist"], capture_output=True).returncode == 0
    env_probe = (
        "import torch, subprocess, shutil;"
        "from kernelwright.runner.isolation import sandbox;"
        "p = torch.cuda.get_device_properties(0);"
        "print('gpu', p.name, p.multi_processor_count, 'SMs', p.L2_cache_size >> 20, 'MiB L2');"
        "print('torch', torch.__version__, 'cuda', torch.version.cuda);"
        "print('nvcc', shutil.which('nvcc'), 'ncu', shutil.which('ncu'));"
        "b = sandbox(); print('isolation', b.level, b.note)"
    )
    return [
        Part("environment", [python, "-c", env_probe], 30),
        Part(
            "gpu_tests",
            [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
            + (["-n", "2"] if xdist else []),
            200,
        ),
        Part(
            "build_naive",
            [python, str(bench / "compile_speed.py"), "--target", "cuda", "--only", "1,2"]
            + ["--layouts", "naive,fast", "--parallel", "0", "--json"],
            150,
        ),
        Part(
            "build_fast",
            [python, str(bench / "compile_speed.py"), "--target", "cuda", "--only", "1,2,3,4,5,6"]
            + ["--layouts", "fast", "--parallel", "8", "--json"],
            110,
        ),
        Part(
            "suite",
            [python, str(bench / "suite.py"), "--target", "cuda", "--trials", "3"]
            + ["--only", "01_gelu,02_row_sum,05_matmul_fp32"],
            110,
        ),
        Part(
            "throughput",
            [python, str(bench / "throughput.py"), "--target", "cuda", "--json"],
            60,
        ),
    ]


def run_part(part: Part, deadline: float) -> None:
    if part.command[1:2] and part.command[1].endswith(".py") and not Path(part.command[1]).exists():
        part.status = "missing"
        part.figures = f"{Path(part.command[1]).name} is not in this checkout"
        return
    limit = min(part.limit_s, deadline - time.monotonic())
    if limit < 5:
        part.status = "no time"
        return
    started = time.monotonic()
    proc = subprocess.Popen(
        part.command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the whole group is killed at the part's limit
    )
    try:
        part.log, _ = proc.communicate(timeout=limit)
        part.status = "ok" if proc.returncode == 0 else f"failed ({proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        part.log, _ = proc.communicate()
        part.status = f"timed out ({limit:.0f} s)"
    part.seconds = time.monotonic() - started
    part.figures = figures(part)


def _json_tail(log: str) -> dict:
    start = log.find("\n{")
    try:
        return json.loads(log[start + 1 :] if start >= 0 else log)
    except json.JSONDecodeError:
        return {}


def figures(part: Part) -> str:
    """The one line of figures that matters for this part, read from its output."""
    lines = [line for line in part.log.strip().splitlines() if line.strip()]
    if part.name == "environment":
        return "; ".join(lines[-4:])
    if part.name == "gpu_tests":
        return lines[-1] if lines else ""
    if part.name.startswith("build_"):
        data = _json_tail(part.log)
        if not data:
            return lines[-1][:200] if lines else ""
        med = data.get("median_compile_s", {})
        text = ", ".join(f"median {k} {v} s" for k, v in med.items() if v is not None)
        if data.get("naive_over_fast"):
            text += f", naive/fast {data['naive_over_fast']}x"
        if data.get("cache_hit"):
            text += f", cache hit {data['cache_hit']['compile_s']:.3f} s"
        if data.get("parallel"):
            par = data["parallel"]
            alone = par["median_wall_alone_s"]
            text += f", {par['builds']} at once {par['wall_s']} s (alone {alone} s)"
        return text
    if part.name == "suite":
        return " | ".join(line.strip() for line in lines if "x" in line and "|" in line)[:400]
    return (lines[-1] if lines else "")[:300]


def goal_line(done: list[Part]) -> str:
    """The build-speed goal: the fast median (six builds, warm headers) against the naive one."""
    by = {p.name: _json_tail(p.log) for p in done if p.name.startswith("build_")}
    naive = [
        b["compile_s"]
        for b in by.get("build_naive", {}).get("builds", [])
        if b["layout"] == "naive" and b["ok"]
    ]
    fast = [
        b["compile_s"]
        for b in by.get("build_fast", {}).get("builds", [])
        if b["layout"] == "fast" and b["ok"]
    ]
    if not naive or not fast:
        return "build-speed goal: not measured (a build part failed or did not run)"
    fast_median, naive_median = statistics.median(fast), statistics.median(naive)
    met = fast_median <= 6.0 and naive_median / fast_median >= 10.0
    return (
        f"build-speed goal (median fast <= 6 s and >= 10x naive): fast median {fast_median:.2f} s "
        f"over {len(fast)}, naive median {naive_median:.2f} s over {len(naive)}, "
        f"{naive_median / fast_median:.1f}x: {'met' if met else 'NOT met'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--prepare", action="store_true", help="download the wheels, then stop")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all parts")
    parser.add_argument("--skip", default="", help="comma-separated part names")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="folder for the logs")
    args = parser.parse_args()
    if args.prepare:
        return prepare()
    deadline = time.monotonic() + args.budget
    problem = install()
    if problem:
        print(f"install failed: {problem}", file=sys.stderr)
        return 1
    skip = {name for name in args.skip.split(",") if name}
    todo = [p for p in parts(sys.executable) if p.name not in skip]
    for part in todo:
        print(f"-- {part.name} (limit {part.limit_s:.0f} s)", flush=True)
        run_part(part, deadline)
        print(f"   {part.status} in {part.seconds:.0f} s: {part.figures}", flush=True)
    table = ["| part | status | seconds | figures |", "|---|---|---|---|"]
    table += [f"| {p.name} | {p.status} | {p.seconds:.0f} | {p.figures} |" for p in todo]
    text = "\n".join(table) + "\n\n" + goal_line(todo) + "\n"
    print("\n" + text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(text)
        for part in todo:  # at most 8 files come back from the device tool: one per part
            (out / f"{part.name}.log").write_text(part.log[-2_000_000:])
    if shutil.which("nvidia-smi") is None:
        print("note: nvidia-smi not found; was this run on a GPU machine?", file=sys.stderr)
    return 0 if all(p.status in ("ok", "missing") for p in todo) else 1


if __name__ == "__main__":
    sys.exit(main())
