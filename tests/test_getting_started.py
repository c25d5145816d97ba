"""Every Python block of the getting-started pages and of the README runs, as written, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*(ROOT / "docs" / "start" / f"{page}.md" for page in ("online", "offline", "lm", "tools")),
         ROOT / "README.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def logged_npz(folder: Path) -> None:
    """The README's offline example reads a user's file; this writes one such file."""
    rng = np.random.default_rng(0)
    n = 1000
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    actions = np.tanh(obs[:, :1] + rng.normal(0, 0.3, (n, 1))).astype(np.float32)
    np.savez(folder / "logged.npz", observations=obs, actions=actions, rewards=-np.square(actions[:, 0] - obs[:, 0]),
             terminals=np.zeros(n, bool), timeouts=np.arange(n) % 50 == 49)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_page_runs(page, tmp_path):
    blocks = python_blocks(page)
    assert blocks, f"{page} lost its Python examples"
    logged_npz(tmp_path)
    # one torch thread, as each test worker has: two threads per process on two busy cores slow every process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_readme_examples_are_five_lines():
    online, offline = python_blocks(ROOT / "README.md")[:2]
    assert len(online.strip().splitlines()) == 5 and len(offline.strip().splitlines()) == 5


def test_the_lm_guide_shows_the_example_the_getting_started_page_runs():
    example = python_blocks(ROOT / "docs" / "start" / "lm.md")[1]
    assert example in python_blocks(ROOT / "docs" / "lm.md") and len(example.strip().splitlines()) <= 10
