"""Every command line in the README and docs/ runs as written: a real module or file, options its parser takes.

The commands are the lines of the pages' ```sh blocks. Each ``python -m
MODULE`` or ``python SCRIPT`` is parsed by that command line's own parser
(and its cross-checks), in this process; each file a command names exists;
each pip extra is one setup.cfg declares. That every such command line then
runs end to end is the job of the tests that launch it, and the last test
here checks that one does, for every command line the pages use.
"""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
                               if f.endswith(".md"))
LAUNCHERS = {"mpiexec", "mpirun", "srun"}
#: Shell commands the pages may use around the toolkit's own, checked no further.
SHELL = {"cd", "mkdir", "ls", "cat", "export", "rm", "git", "h5dump", "squeue", "sinfo", "scontrol", "sacct"}
#: The parse function of every command line the pages may name (``None``: takes pytest's options).
PARSE = {
    "collectives.bench": ("collectives.bench", "parse_args"),
    "collectives.alphabeta": ("collectives.alphabeta.command", "parse_args"),
    "training.sync_sgd": ("training.sync_sgd", "parser"),
    "training.roofline": ("training.roofline", "parse_args"),
    "training.layout_bench": ("training.layout_bench", "parser"),
    "training.pipeline_bench": ("training.pipeline_bench", "parser"),
    "training.spatial_bench": ("training.spatial_bench", "parser"),
    "numa": ("numa.__main__", "parser"),
    "scripts/check_cost.py": ("scripts/check_cost.py", "parser"),
    "scripts/timing_methods.py": ("scripts/timing_methods.py", "parser"),
    "scripts/ddp_compare.py": ("scripts/ddp_compare.py", "parser"),
    "scripts/pipeline_compare.py": ("scripts/pipeline_compare.py", "parser"),
    "scripts/bench_table.py": ("scripts/bench_table.py", "parser"),
    "scripts/mpi_pytest.py": None,
    "pytest": None,
}


def sh_commands(page: str) -> list[str]:
    """The commands of a page's ```sh blocks: continuations joined, comments and blank lines dropped."""
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        line = ""
        for raw in block.splitlines():
            if not line and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            line += raw.rstrip()
            if line.endswith("\\"):
                line = line[:-1] + " "
                continue
            out += [part.strip() for part in line.split("&&")]
            line = ""
    return out


def inline_commands(page: str) -> list[str]:
    """Commands quoted in the text that run one of :data:`PARSE` (`` `mpiexec ... -m collectives.bench` ``)."""
    with open(os.path.join(ROOT, page)) as f:
        text = re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)
    quoted = re.findall(r"`((?:mpiexec|mpirun|srun|python) [^`$]+)`", text)  # no shell variables
    return [q for q in quoted if re.search(r"(-m |^|\s)(" + "|".join(map(re.escape, PARSE)) + r")(\s|$)", q)]


COMMANDS = [(page, cmd) for page in PAGES for cmd in sh_commands(page) + inline_commands(page)]


def _extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return set(cfg["options.extras_require"])


def _parse_function(target: str):
    spec = PARSE[target]
    if spec is None:
        return None
    where, name = spec
    if where.endswith(".py"):
        loader = importlib.util.spec_from_file_location("docs_" + os.path.basename(where)[:-3],
                                                        os.path.join(ROOT, where))
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    fn = getattr(module, name)
    return fn().parse_args if name == "parser" else fn


def _check_python(words: list[str]) -> str:
    """Parse ``python [-m mpi4py] (-m MODULE | SCRIPT) ARGS``; return the command line's name."""
    assert words[0] == "python", f"expected python, got {words[0]!r}"
    words = words[1:]
    if words[:2] == ["-m", "mpi4py"]:
        words = words[2:]
    if words[0] == "-c":
        return "python -c"
    if words[0] == "-m":
        target, args = words[1], words[2:]
    else:
        target, args = words[0], words[1:]
        assert os.path.isfile(os.path.join(ROOT, target)), f"no file {target}"
    assert target in PARSE, f"{target}: not a command line this test knows; add it to PARSE"
    parse = _parse_function(target)
    if parse is not None:
        try:
            parse(args)
        except SystemExit as e:
            assert e.code in (0, None), f"{target} {shlex.join(args)}: its parser refused (exit {e.code})"
    return target


def check(cmd: str) -> str | None:
    """Check one command; return the command line it runs (module or script), if any."""
    words = shlex.split(cmd)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words = words[1:]
    head = words[0]
    if head in LAUNCHERS:
        words = words[words.index("python"):]
        head = "python"
    if head == "python":
        return _check_python(words)
    if head == "pip":
        for w in words:
            m = re.fullmatch(r"\.?\.?/?[.\w/-]*\[([\w,]+)\]", w)
            if m:
                unknown = set(m.group(1).split(",")) - _extras()
                assert not unknown, f"no such extra: {unknown}"
        return None
    if head in ("bash", "sh", "sbatch"):
        script = next(w for w in words[1:] if not w.startswith("-"))
        script = script.removeprefix("$PWD/").removeprefix("$KIT_DIR/")  # the checkout, spelled out
        assert os.path.isfile(os.path.join(ROOT, script)), f"no file {script}"
        return script
    assert head in SHELL, f"unknown command {head!r} (the pages' sh blocks hold commands only)"
    return None


def test_the_pages_have_commands():
    pages = {page for page, _ in COMMANDS}
    assert "README.md" in pages and len(pages) >= 8, pages


@pytest.mark.parametrize("page,cmd", COMMANDS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(COMMANDS)])
def test_command_runs_as_written(page, cmd):
    check(cmd)


def test_every_command_line_the_pages_use_is_launched_by_a_test():
    used = {target for _, cmd in COMMANDS for target in [check(cmd)] if target and target != "python -c"}
    tests = ""
    for name in os.listdir(os.path.join(ROOT, "tests")):
        if name.endswith(".py") and name != os.path.basename(__file__):
            with open(os.path.join(ROOT, "tests", name)) as f:
                tests += f.read()
    launched = {t for t in used if os.path.basename(t) in tests or t in tests}
    assert used == launched, f"no test launches {sorted(used - launched)}"


@pytest.mark.parametrize("page", PAGES + ["measurements/README.md"])
def test_every_relative_link_reaches_a_file(page):
    with open(os.path.join(ROOT, page)) as f:
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", f.read())
    here = os.path.dirname(os.path.join(ROOT, page))
    missing = [link for link in links if "://" not in link and not os.path.exists(os.path.join(here, link))]
    assert not missing, f"{page}: links to nothing: {missing}"
