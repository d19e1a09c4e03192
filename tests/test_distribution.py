"""The wheel on its own, as a new user gets it (SPEC §12).

Build the sdist and the wheel from this repository (``python -m build``), install the
wheel by name into a fresh virtualenv under a temporary folder, and from there:
``microcore new shop``; the project's own ``make test`` (ruff, mypy --strict, ``microcore
check``, ``microcore context --check``, its tests) with the wheel's folder as
``PIP_FIND_LINKS``, after ``microcore add plugin`` wrote a PATCH route and a subscriber;
then ``make run`` (``microcore dev``) and ``uvicorn app:app`` each
answer 200 on ``/system/health``. Nothing runs from the checkout: the virtualenv imports
microcore from its own site-packages and the project never names the checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from microcore import __version__
from tests.support import free_port, poll_url

pytestmark = [pytest.mark.distribution, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
_CLEARED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything that would point a fresh interpreter elsewhere."""
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(extra)
    return env


def _run(args: Sequence[str | Path], cwd: Path, env: Mapping[str, str], timeout: float) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


@contextmanager
def _serving(args: Sequence[str | Path], cwd: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Run a server command in its own process group; stop the whole group afterwards."""
    process = subprocess.Popen(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server is a bug, kill it
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _health(port: int) -> httpx.Response:
    return poll_url(
        f"http://127.0.0.1:{port}/system/health",
        lambda response: response.status_code == 200,
        timeout=60,
    )


def test_the_wheel_alone_makes_a_project_that_passes_and_serves(tmp_path: Path) -> None:
    """pip install the wheel -> microcore new -> make test -> make run / uvicorn: 200."""
    wheels, venv, shop = tmp_path / "wheels", tmp_path / "venv", tmp_path / "shop"
    _run([sys.executable, "-m", "build", "--outdir", wheels, REPO], tmp_path, _env(), 300)
    [wheel] = wheels.glob("microcore-*.whl")
    assert wheel.name == f"microcore-{__version__}-py3-none-any.whl"
    links = " ".join(filter(None, [str(wheels), os.environ.get("PIP_FIND_LINKS")]))
    env = _env(PIP_FIND_LINKS=links)

    _run([sys.executable, "-m", "venv", venv], tmp_path, env, 120)
    bin_ = venv / "bin"
    _run([bin_ / "pip", "install", "--quiet", f"microcore=={__version__}"], tmp_path, env, 300)
    where = _run(
        [bin_ / "python", "-c", "import microcore; print(microcore.__file__)"], tmp_path, env, 60
    )
    assert Path(where.strip()).is_relative_to(venv) and not Path(where.strip()).is_relative_to(REPO)
    assert (
        _run([bin_ / "microcore", "--version"], tmp_path, env, 60) == f"microcore {__version__}\n"
    )

    assert "created" in _run([bin_ / "microcore", "new", "shop"], tmp_path, env, 120)
    for path in shop.rglob("*"):
        assert not path.is_file() or str(REPO) not in path.read_text(errors="replace"), path

    microcore = bin_ / "microcore"  # features added as a user would, typed and tested
    route = ["--route", "PATCH /products/{product_id:int}", "--publishes", "product.updated"]
    _run([microcore, "add", "plugin", "products", "update_product", *route], shop, env, 60)
    notify = ["notifications", "notify", "--subscribe", "product.updated"]
    _run([microcore, "add", "plugin", *notify], shop, env, 60)
    _run([microcore, "context"], shop, env, 120)

    out = _run(["make", "test", f"VENV={venv}"], shop, env, 600)
    assert "Success: no issues found" in out  # mypy --strict: `from tools.http import Http`
    assert "plugin files and" in out and "AI_CONTEXT.md is up to date" in out
    assert " passed" in out and "failed" not in out

    port = free_port()
    with _serving(["make", "run", f"VENV={venv}", f"PORT={port}"], shop, env):
        assert _health(port).status_code == 200
        created = httpx.post(
            f"http://127.0.0.1:{port}/products", json={"name": "Pen", "price": 2.5}, timeout=10
        )
        assert created.status_code == 201
        updated = httpx.patch(f"http://127.0.0.1:{port}/products/1", timeout=10)
        assert updated.json() == {"ok": True}
    port = free_port()
    uvicorn: list[str | Path] = [
        bin_ / "uvicorn",
        "app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with _serving(uvicorn, shop, env):
        assert _health(port).status_code == 200
