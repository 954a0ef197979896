"""Every command in docs/*.md is parsed by its real parser, and run on tiny data.

Doc drift fails here. Two levels:

1. ``test_every_doc_command_parses`` (fast, default run): each ``autoseg_*`` line of every
   ```bash block parses with its command's argparse parser from :mod:`autoseg.cli`;
   ``torchrun ... -m autoseg train ARGS`` parses ARGS with ``train_parser``; ``make
   TARGET`` names a Makefile target. Any other program in a bash block fails the test.
2. ``test_page_runs`` (slow, ``pytest -m slow tests/docs``): each page's blocks run in order
   as one sequence, in-process (``autoseg.cli.<command>_main``), in one temporary workspace
   shared by all pages, on tiny synthetic sources (see :mod:`tests.docs.doc_world` for the
   placeholder paths and the only budget changes the test makes). Every command must exit
   0, or the status its ``# exit N`` comment states. Checked by parsing only, because they
   need a cluster or several GPUs: ``torchrun`` lines, ``autoseg_train --num-gpus N`` with
   N > 1, any command with ``--device cuda`` on a machine without CUDA, ``sbatch FILE``
   (FILE must exist, written by an earlier ``autoseg_slurm`` line, and pass ``bash -n``),
   ``bash SCRIPT`` (a script of the repository, which must pass ``bash -n``: the GPU
   benchmark) and ``make`` (which sets up a virtual environment).

Shell rules the docs keep to (so that this harness can follow them) are in
:mod:`tests.docs.doc_commands`. ``cluster.md`` and ``plans.md`` continue from the ATLAS
model that ``atlas-t1w.md`` trains (:data:`NEEDS`); ``benchmark.md`` from its plans.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch

from autoseg import cli
from autoseg.planning import device
from autoseg.planning.rules import CPU_TRAINING
from autoseg.training import speed
from tests.docs.doc_commands import DOCS_DIR, DocCommand, doc_pages, expand, page_commands
from tests.docs.doc_world import (
    CPU_GFLOPS_PER_ITERATION,
    budget_argv,
    ensure_sources,
    failing_compile,
    localize,
)

REPO = DOCS_DIR.parent
COMMANDS = ("synth", "convert", "verify", "plan", "train", "slurm", "predict", "export",
            "find_best", "ensemble", "evaluate", "report", "visualize", "benchmark")  # fmt: skip
PARSERS: dict[str, Callable] = {f"autoseg_{c}": getattr(cli, f"{c}_parser") for c in COMMANDS}
MAINS: dict[str, Callable] = {f"autoseg_{c}": getattr(cli, f"{c}_main") for c in COMMANDS}
NEEDS = {"cluster.md": ["atlas-t1w.md"], "plans.md": ["atlas-t1w.md"],
         "benchmark.md": ["atlas-t1w.md"]}  # fmt: skip
ORDER = ["quickstart.md", "atlas-t1w.md", "benchmark.md", "cluster.md", "plans.md",
         "ct-png-slices.md", "dwi-adc.md", "from-nnunet.md", "metrics.md",
         "isles22-lesion-table.md"]  # fmt: skip
PARSE_ONLY = {"torchrun", "sbatch", "make", "bash"}
EXPECTED_PAGES = {"index.md", "quickstart.md", "atlas-t1w.md", "ct-png-slices.md", "dwi-adc.md",
                  "plans.md", "cluster.md", "from-nnunet.md", "metrics.md",
                  "isles22-lesion-table.md", "benchmark.md", "quality.md"}  # fmt: skip


def all_commands() -> list[DocCommand]:
    return [c for page in doc_pages() for c in page_commands(page) if c.program != "export"]


def training_args(words: tuple[str, ...]) -> list[str]:
    """The autoseg_train arguments of a ``torchrun ... -m autoseg train ARGS`` line."""
    if "-m" not in words or words[words.index("-m") + 1 : words.index("-m") + 3] != (
        "autoseg",
        "train",
    ):
        raise AssertionError(f"torchrun line without '-m autoseg train': {' '.join(words)}")
    return list(words[words.index("-m") + 3 :])


def parse_check(command: DocCommand) -> None:
    """Parse one doc command with the real parser (SystemExit on a bad flag)."""
    program, args = command.program, list(command.words[1:])
    if program in PARSERS:
        own, _ = cli.split_passthrough(args) if program == "autoseg_slurm" else (args, [])
        PARSERS[program]().parse_args(own)
    elif program == "torchrun":
        cli.train_parser().parse_args(training_args(command.words))
    elif program == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert set(args) <= set(targets), f"make {args}: Makefile targets are {targets}"
    elif program == "bash":
        script = REPO / args[0]
        assert script.is_file(), f"{command.line}: no script {script}"
        subprocess.run(["bash", "-n", str(script)], check=True)
    elif program != "sbatch":
        raise AssertionError(f"{command.page}: unsupported program in a bash block: {program}")


def test_docs_pages_exist() -> None:
    assert {p.name for p in doc_pages()} >= EXPECTED_PAGES
    assert set(ORDER) | {"index.md"} >= {p.name for p in doc_pages() if page_commands(p)}


def test_every_doc_command_parses() -> None:
    commands = all_commands()
    assert len(commands) > 40
    failures = []
    for command in commands:
        try:
            parse_check(command)
        except (SystemExit, AssertionError) as error:
            failures.append(f"{command.page}: {command.line} ({error})")
    assert not failures, "\n".join(failures)
    used = {c.program for c in commands}
    assert set(PARSERS) <= used, f"commands never shown in the docs: {set(PARSERS) - used}"


def test_plans_example_has_the_real_fields() -> None:
    """The plans.json in plans.md has the keys of a real plans file (golden, 1 mm ATLAS)."""
    text = (DOCS_DIR / "plans.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))
    golden = json.loads((REPO / "tests/planning/golden/plans_atlas_1mm_8gb.json").read_text())
    assert set(example) == set(golden)
    shown, real = example["configurations"]["3d_hybrid"], golden["configurations"]["3d_hybrid"]
    assert set(shown) == set(real)
    # the example is a CPU plan: the golden (GPU) training keys plus the CPU overrides
    assert set(shown["training"]) == set(real["training"]) | set(CPU_TRAINING)
    for key in ("augmentation", "inference", "preprocessing", "memory_estimate"):
        assert set(shown[key]) == set(real[key]), key
    assert set(shown["network"]["kwargs"]) == set(real["network"]["kwargs"])
    for key in [*golden, *real, *real["training"], *real["augmentation"], *real["inference"]]:
        assert f"`{key}`" in text, f"plans.md does not explain '{key}'"


# --- running the pages --------------------------------------------------------------------


class World:
    """The shared temporary workspace and the pages already run in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: set[str] = set()
        (root / "work").mkdir(parents=True)
        (root / "user").mkdir()

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOSEG_", "nnUNet"))}
        return {**env, "HOME": str(self.root / "user"),
                "AUTOSEG_HOME": str(self.root / "work" / "autoseg_data")}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # beside other jobs, 2 OpenMP threads on 2 cores run ~20x slower
    try:
        with (
            mock.patch.object(device, "CPU_GFLOPS_PER_ITERATION", CPU_GFLOPS_PER_ITERATION),
            mock.patch.object(speed.torch, "compile", failing_compile),
        ):
            yield World(tmp_path_factory.mktemp("docs"))
    finally:
        torch.set_num_threads(threads)


def resolve(command: DocCommand, env: dict[str, str], world: World) -> list[str]:
    """Words with variables, ``~`` and ``/data`` placeholders expanded."""
    home = env["HOME"]
    return [localize(expand(w, env, home), world.root) for w in command.words]


def check_parse_only(command: DocCommand, words: list[str], world: World) -> None:
    if words[0] == "sbatch":
        script = Path(world.root / "work" / words[-1])
        assert script.is_file(), f"{command.line}: no script {script}"
        subprocess.run(["bash", "-n", str(script)], check=True)
    else:
        parse_check(DocCommand(command.page, command.line, tuple(words)))


def is_parse_only(words: list[str]) -> bool:
    if words[0] in PARSE_ONLY:
        return True
    if "--device" in words and words[words.index("--device") + 1] == "cuda":
        return not torch.cuda.is_available()
    return (
        words[0] == "autoseg_train"
        and "--num-gpus" in words
        and (int(words[words.index("--num-gpus") + 1]) > 1)
    )


def run_command(command: DocCommand, env: dict[str, str], world: World) -> None:
    words = resolve(command, env, world)
    if is_parse_only(words):
        check_parse_only(command, words, world)
        return
    assert words[0] in MAINS, f"{command.page}: cannot run '{command.line}'"
    ensure_sources([*words, *env.values()], world.root)
    argv = budget_argv(words[0], words[1:])
    local = {
        **env,
        **{k: localize(expand(v, env, env["HOME"]), world.root) for k, v in command.env},
    }
    start = time.perf_counter()
    with mock.patch.dict(os.environ, local, clear=True):
        try:
            status = MAINS[words[0]](argv)
        except SystemExit as stop:  # argparse rejected a flag
            status = stop.code
        finally:
            # Each command is its own process in a shell: undo the predictor's process-wide
            # flush-to-zero, which later commands' scipy code does not survive (CRASHES below).
            torch.set_flush_denormal(False)
    print(f"[{time.perf_counter() - start:5.1f} s] {command.line}")  # shown with pytest -s
    assert status == command.expected_exit, f"{command.page}: {command.line} exited {status}"


def run_page(name: str, world: World) -> None:
    for needed in NEEDS.get(name, []):
        if needed not in world.done:
            run_page(needed, world)
    env = world.base_env()
    cwd = os.getcwd()
    os.chdir(world.root / "work")
    try:
        for command in page_commands(DOCS_DIR / name):
            if command.program == "export":
                env.update({k: localize(expand(v, env, env["HOME"]), world.root)
                            for k, v in command.exports})  # fmt: skip
            else:
                run_command(command, env, world)
    finally:
        os.chdir(cwd)
    world.done.add(name)


# Pages whose commands do not (yet) do what the docs say: they run and must fail.
BROKEN: dict[str, str] = {}
# A crash cannot be caught in-process: pages that would take the test run down are not run.
CRASHES: dict[str, str] = {}


def page_param(page: str) -> object:
    if page in CRASHES:
        return pytest.param(page, marks=pytest.mark.xfail(run=False, reason=CRASHES[page]))
    if page in BROKEN:
        return pytest.param(page, marks=pytest.mark.xfail(strict=True, reason=BROKEN[page]))
    return page


@pytest.mark.slow
@pytest.mark.parametrize("page", [page_param(p) for p in ORDER])
def test_page_runs(page: str, world: World) -> None:
    if page not in world.done:
        run_page(page, world)
