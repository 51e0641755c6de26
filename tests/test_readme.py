"""The README's commands and library snippet, run as written.

Convention (stated in the README's set-up section): after the two set-up commands every shell command in a code
block starts with ``.venv/bin/`` (or is a set-up command, ``bash scripts/install.sh ...``) and runs from the
checkout's folder. Commands for the user's own files use placeholder paths ``path/to/...``; they cannot run here, so
their options are checked against the command's ``--help`` instead, as are those of the viewer and the web demo
(which start a window or a server).

The runnable commands run in README order (later ones read earlier outputs) in one temporary folder that links the
checkout's files and ``.venv`` (this test's environment), so their outputs, all under ``out/``, land there.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLACEHOLDER = "path/to/"
OUTPUT_OPTIONS = ("--outdir", "--out", "--result-out-dir", "--out-anno", "--to-nerfstudio")
TIMEOUT = 300


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced block and every indented (4-space) block outside them."""
    blocks: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((fence.group(1), lines[i + 1:end]))
            i = end + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            blocks.append(("", [line[4:] for line in lines[i:end] if line.strip()]))
            i = end
        else:
            i += 1
    return blocks


def shell_commands(text: str) -> list[str]:
    """The shell commands of the non-Python code blocks, continuation lines joined."""
    commands = []
    for language, lines in code_blocks(text):
        if language == "python":
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def output_paths(command: str) -> list[str]:
    argv = words(command)
    return [argv[i + 1] for i, w in enumerate(argv[:-1]) if w in OUTPUT_OPTIONS]


COMMANDS = shell_commands(README)
SETUP = [c for c in COMMANDS if c.startswith("bash scripts/install.sh")]
RUNNABLE = [c for c in COMMANDS if re.match(r"\.venv/bin/(eg3d|python) ", c) and PLACEHOLDER not in c]
CHECKED = [c for c in COMMANDS if c.startswith(".venv/bin/") and c not in RUNNABLE]


def test_the_readme_follows_its_convention() -> None:
    assert len(SETUP) == 2, SETUP
    strays = [c for c in COMMANDS if c not in SETUP and not c.startswith(".venv/bin/")]
    assert not strays, f"commands that do not run after the set-up as written: {strays}"
    assert len(RUNNABLE) >= 5 and any(" samples " in c for c in RUNNABLE) and any(" demo " in c for c in RUNNABLE)
    for command in RUNNABLE:
        outputs = output_paths(command)
        assert outputs, f"no output option to check in {command!r}"
        assert all(p.startswith("out/") for p in outputs), f"outputs outside out/ (ignored by git): {command!r}"


def test_ci_runs_the_readmes_test_command() -> None:
    (test_command,) = [c for c in SETUP if "--test" in c]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY")}


def test_the_app_command_falls_back_to_the_web_demo_without_a_display(tmp_path: Path) -> None:
    (app_command,) = [c for c in SETUP if "--test" not in c]
    start = app_command.split("&&", 1)[1].strip()
    assert ".venv/bin/eg3d-viewer" in start and start.rstrip("; }").endswith(".venv/bin/eg3d-web")
    # The same command with the web demo asked for its usage instead of serving (which would not return).
    probe = start.replace(".venv/bin/eg3d-web", ".venv/bin/eg3d-web --help")
    (tmp_path / ".venv").symlink_to(sys.prefix)
    r = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env=_environment(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eg3d-web" in r.stderr, r.stderr  # the viewer names the web demo's command
    assert r.stdout.startswith("usage: eg3d-web")


@pytest.fixture
def checkout_view(tmp_path: Path) -> Path:
    """A folder that looks like the checkout after the set-up (its files linked, ``.venv`` this test's environment)
    but whose ``out/`` is its own."""
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("out", "runs"):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    return tmp_path


def test_readme_commands_run_as_written(checkout_view: Path) -> None:
    for command in RUNNABLE:
        outputs = [checkout_view / p for p in output_paths(command)]
        assert not any(p.exists() for p in outputs), f"{command!r}: its output exists before it runs"
        r = subprocess.run(["bash", "-c", command], cwd=checkout_view, env=_environment(), capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"{command!r} failed:\n{r.stderr[-3000:]}"
        for p in outputs:
            assert p.exists() and (any(p.iterdir()) if p.is_dir() else p.stat().st_size > 0), \
                f"{command!r} did not write {p.relative_to(checkout_view)}"
            assert not p.resolve().is_relative_to(ROOT), f"{command!r} wrote into the checkout"


@functools.cache
def _help(argv: tuple[str, ...]) -> str:
    r = subprocess.run([*argv, "--help"], cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{' '.join(argv)} --help failed:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.parametrize("command", CHECKED, ids=[f"{i}-{words(c)[0].removeprefix('.venv/bin/')}" for i, c in enumerate(CHECKED)])
def test_placeholder_and_front_end_commands_take_these_options(command: str) -> None:
    argv = words(command)
    bin_dir = Path(sys.prefix) / "bin"
    program = argv[0].removeprefix(".venv/bin/")
    if program == "torchrun":  # torchrun's own options, then the module's command line
        module = argv.index("-m")
        assert argv[module + 1] == "eg3d_core", command
        program, argv = "eg3d", ["eg3d", *argv[module + 2:]]
    assert program in ("eg3d", "eg3d-web", "eg3d-viewer"), command
    target = (str(bin_dir / program), *([argv[1]] if program == "eg3d" else []))
    usage = _help(target)
    for option in (w.split("=")[0] for w in argv if w.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", usage), f"{command!r}: no option {option}"


def test_library_snippet_runs_and_shows_true_shapes(tmp_path: Path) -> None:
    (snippet,) = ["\n".join(lines) for language, lines in code_blocks(README)
                  if language == "python" and "load_generator" in "\n".join(lines)]
    shapes = {name: [int(v) for v in shape.split(",")]
              for name, shape in re.findall(r"^\s*(\w+) = .*# \[([\d, ]+)\]", snippet, re.M)}
    assert {"ws", "planes", "image"} <= set(shapes), shapes
    check = f"\nimport json\nprint(json.dumps({{n: list(globals()[n].shape) for n in {sorted(shapes)!r}}}))\n"
    script = tmp_path / "snippet.py"
    script.write_text(snippet + check)
    r = subprocess.run([sys.executable, script], cwd=tmp_path, env=_environment(), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == shapes
    saved = re.search(r'save_generator\(G, "([^"]+)"\)', snippet)
    assert saved and (tmp_path / saved.group(1) / "config.json").is_file()
