"""The README stays a newcomer's page: at most 200 lines, no dead links to the docs it moved its
internals to, and every command of its code blocks names a real command and real files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from kernelwright.cli import app
from typer.main import get_command

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), target


def _commands() -> list[list[str]]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = re.split(r"\s#\s", line)[0].strip()
            if line.startswith("kernelwright "):
                found.append(shlex.split(line)[1:])
    return found


def test_every_command_it_shows_exists_with_the_options_it_uses():
    root = get_command(app)
    commands = _commands()
    assert len(commands) > 10
    for words in commands:
        command, rest = root, list(words)
        while rest and hasattr(command, "commands") and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        assert not hasattr(command, "commands"), words  # a whole command, not a group
        known = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (words, word)
            elif word.endswith((".py", ".jsonl")) and "/" in word and not word.startswith("/"):
                path = word.split(":", 1)[-1] if word.startswith("replay:") else word
                assert (ROOT / path).exists(), (words, path)


def test_every_option_it_names_exists_somewhere():
    def options(command) -> set[str]:
        found = {
            opt for p in getattr(command, "params", []) for opt in [*p.opts, *p.secondary_opts]
        }
        for sub in getattr(command, "commands", {}).values():
            found |= options(sub)
        return found

    known = options(get_command(app)) | {"--index-url", "--prepare", "--out", "--target"}
    named = {
        flag for code in re.findall(r"`([^`]+)`", README) for flag in re.findall(r"--[a-z-]+", code)
    }
    assert named and named <= known, named - known
