"""The README's commands work as written: every command line in its ``bash`` blocks is checked.

* ``unicom-*`` commands that run offline (``--help`` of each command, ``unicom-sample``) are run,
  through the entry points that pyproject.toml declares, in a fresh folder;
* the other ``unicom-*`` lines (they need downloaded weights or datasets) must use only flags
  that the command's ``--help`` lists;
* ``make`` lines are dry-run (``make -n``) with their variables, so every target and variable
  resolves;
* every released encoder name the README passes is one that ``unicom.load`` knows.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, List

import pytest

try:  # Python ≥ 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.9/3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 150


def entry_points() -> Dict[str, str]:
    """``{command: "module:function"}`` from pyproject.toml's [project.scripts]."""
    text = (ROOT / "pyproject.toml").read_text()
    if tomllib is not None:
        return dict(tomllib.loads(text)["project"]["scripts"])
    block = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', block, re.M))


def readme_commands() -> List[str]:
    """Every command line of the README's ```bash blocks: continuations joined, comments cut."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines: List[str] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(" ".join(line.split()))
    return lines


COMMANDS = readme_commands()
SCRIPTS = entry_points()
UNICOM = [c for c in COMMANDS if c.split()[0] in SCRIPTS]
OFFLINE = [c for c in UNICOM if "--help" in c.split() or c.split()[0] == "unicom-sample"]
ONLINE = [c for c in UNICOM if c not in OFFLINE]
MAKE = [c for c in COMMANDS if c.split()[0] == "make"]


def _run_entry_point(argv: List[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``argv[0]`` (a console script of pyproject.toml) with this interpreter and this checkout."""
    module, func = SCRIPTS[argv[0]].split(":")
    code = f"import sys; from {module} import {func} as main; sys.argv[0] = {argv[0]!r}; sys.exit(main())"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code, *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@lru_cache(maxsize=None)
def _help(command: str) -> str:
    out = _run_entry_point([command, "--help"], ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_is_short_and_names_every_command():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"
    assert "make demo" in COMMANDS and "make test" in COMMANDS
    # the --help of every core command (a newer command may be introduced by its own docs page)
    core = {"unicom-cluster", "unicom-train", "unicom-eval", "unicom-embed", "unicom-search"}
    assert core <= {c.split()[0] for c in OFFLINE if "--help" in c}
    assert any(c.startswith("unicom-sample ") for c in OFFLINE)


@pytest.mark.parametrize("command", OFFLINE)
def test_offline_commands_run_as_written(command, tmp_path):
    out = _run_entry_point(shlex.split(command), tmp_path)
    assert out.returncode == 0, f"{command!r} failed:\n{out.stderr[-2000:]}"
    name = command.split()[0]
    if "--help" in command:
        assert out.stdout.startswith(f"usage: {name}"), out.stdout[:200]
    else:  # unicom-sample --output data/sample: the sample set, written where the README says
        target = Path(shlex.split(command)[shlex.split(command).index("--output") + 1])
        assert (tmp_path / target / "manifest.json").is_file()
        assert sorted(p.name for p in (tmp_path / target / "shards").glob("*.tar"))


@pytest.mark.parametrize("command", ONLINE)
def test_other_commands_use_only_flags_their_command_has(command):
    name, *args = shlex.split(command)
    text = _help(name)
    flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    missing = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", text))
    assert not missing, f"{command!r}: {name} --help lists no {missing}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("command", MAKE)
def test_make_lines_resolve(command):
    argv = shlex.split(command)
    # PY=echo: a recipe that calls $(MAKE) runs even under -n (make demo); echo keeps it a print
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "PY=echo", *argv[1:]], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, f"{command!r}: {out.stderr[-1000:]}"
    target = next((a for a in argv[1:] if "=" not in a), None)
    if target in ("cluster", "train", "eval", "finetune"):  # the variables reach the command line
        assigned = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
        printed = out.stdout.replace("\\\n", " ")
        for var in ("DATA", "DATA_ROOT", "ENCODER", "CONFIG"):
            if var in assigned:
                assert assigned[var] in printed, f"{command!r}: {var}={assigned[var]} not passed on"


def test_released_names_are_known():
    import unicom

    text = README.read_text()
    names = set(re.findall(r'unicom\.load\("([^"]+)"\)', text))
    names |= {m for m in re.findall(r"(?:--model|ENCODER=)\s*(\S+)", text) if m.startswith("ViT-")}
    assert names and names <= set(unicom.available_models()), names - set(unicom.available_models())
