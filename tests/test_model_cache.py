"""The embedded model is assembled once per machine: one shared cache, one assembly at a time, a
progress bar while it runs, and nothing half-written left when it fails. A small fake model package
(real files on a real import path) stands in for the 469 MB one."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from memagent.errors import LLMError
from memagent.llm.weights import PackagedModel, default_model_ready, ensure_default_model, model_cache_dir

PARTS = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 40]


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[PackagedModel]:
    package = tmp_path / "site" / "fake_model_part1"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for number, part in enumerate(PARTS, start=1):
        (package / "data" / f"part{number}.bin").write_bytes(part)
    sys.path.insert(0, str(tmp_path / "site"))
    whole = b"".join(PARTS)
    yield PackagedModel(name="fake", file_name="fake.gguf", packages=("fake_model_part1",),
                        sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), template="chatml")
    sys.path.remove(str(tmp_path / "site"))
    sys.modules.pop("fake_model_part1", None)


def test_two_homes_at_once_share_one_assembly(fake_model: PackagedModel, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = model_cache_dir(str(tmp_path / "machine-cache"))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_default_model(cache, fake_model, progress=True)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == results[1] == cache / "models" / "fake.gguf"
    assert results[0].read_bytes() == b"".join(PARTS) and default_model_ready(cache, fake_model)
    assert [p.name for p in (cache / "models").iterdir() if p.suffix != ".lock"] == ["fake.gguf"]
    assert "Assembling embedded model" in capsys.readouterr().err  # the progress bar, on stderr


def test_a_failed_check_leaves_no_model_behind(fake_model: PackagedModel, tmp_path: Path) -> None:
    broken = PackagedModel(**{**fake_model.__dict__, "sha256": "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(LLMError, match="sha256 check"):
        ensure_default_model(cache, broken, progress=False)
    assert [p.name for p in (cache / "models").iterdir() if p.suffix != ".lock"] == []


def test_the_default_cache_does_not_follow_memagent_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMAGENT_HOME", str(tmp_path / "home-a"))
    first = model_cache_dir()
    monkeypatch.setenv("MEMAGENT_HOME", str(tmp_path / "home-b"))
    assert model_cache_dir() == first and str(tmp_path) not in str(first)
    assert model_cache_dir("~/models") == Path("~/models").expanduser()
