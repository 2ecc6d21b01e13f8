"""What identifies a model's weights, so an index can tell the same weights from different ones.

An index records, for the checkpoint that built it (`weights_identity`):

* `source`: "hub" (a Hugging Face id), "local" (a directory) or "builtin" (a `tiny-*` checkpoint);
* `hub_id` and `revision`: the hub id and the commit it resolved to (hub checkpoints);
* `fingerprint`: a content hash of the weights in the directory they were read from (the hub
  snapshot or the local directory): its `config.json` / `adapter_config.json` (JSON
  canonicalised, without the keys a re-save rewrites: `transformers_version`, `_name_or_path`,
  `dtype`) and every tensor of its `*.safetensors` files by name, dtype, shape and bytes (all
  bytes of small tensors; three 8 KiB windows of large ones, which a fine-tune changes). The
  weight index (`*.index.json`) only maps names to shards, so it says nothing about the values:
  the tensors are hashed instead, independently of how they are sharded. Legacy `.bin`/`.pt`
  weights are hashed whole;
* `files`: the digest of each tokenizer, processor and chat-template file (and any `.py` code);
* `dtype`, `trust_remote_code` and the `versions` of transformers, colpali-engine, torch and dse.

Two identities name the same weights when their fingerprints are equal (whatever the paths) and
the files both hold are equal (a hub snapshot holds only the files loading fetched, a full copy
more), else, without fingerprints, when hub id and commit are equal.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any, Mapping

METADATA_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "preprocessor_config.json",
    "processor_config.json", "video_preprocessor_config.json", "chat_template.json", "chat_template.jinja",
)
# keys a re-save rewrites without changing the weights (the tensors' dtypes are hashed with them)
_VOLATILE_KEYS = frozenset({"transformers_version", "_name_or_path", "name_or_path", "dtype", "torch_dtype"})
_WINDOW = 8192  # bytes hashed at the start, middle and end of a large tensor
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


WEIGHT_CONFIGS = ("config.json", "adapter_config.json")


def directory_fingerprint(directory: str | Path) -> tuple[str, dict[str, str]]:
    """Content hash of a checkpoint directory's weights, and digests of its other files.

    Returns:
        ("sha256:<hex>" over its config and every tensor; see the module docstring,
        {file name: sha256 hex} of its tokenizer, processor and code files).

    Raises:
        FileNotFoundError: `directory` holds no weights (no `*.safetensors`, `.bin` or `.pt` file).
    """
    directory = Path(directory)
    digest = hashlib.sha256(b"dse-weights-v1\0")
    tensors: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    weights = 0
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        name = path.name
        if name in WEIGHT_CONFIGS:
            digest.update(f"file\0{name}\0{_file_digest(path)}\0".encode())
        elif name in METADATA_FILES or name.endswith(".py"):
            files[name] = _file_digest(path)
        elif name.endswith(".safetensors"):
            tensors.extend(_safetensors_digests(path))
            weights += 1
        elif name.endswith((".bin", ".pt", ".pth")):
            digest.update(f"file\0{name}\0{_sha256_file(path)}\0".encode())
            weights += 1
    if not weights:
        raise FileNotFoundError(f"{directory}: no weights (*.safetensors, *.bin) to fingerprint")
    for name, tensor_digest in sorted(tensors):
        digest.update(f"tensor\0{name}\0{tensor_digest}\0".encode())
    return "sha256:" + digest.hexdigest(), files


def _file_digest(path: Path) -> str:
    """sha256 of a metadata file; JSON canonicalised without the keys a re-save changes."""
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return hashlib.sha256(data).hexdigest()
        data = json.dumps(_stable(value), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def _stable(value: Any) -> Any:
    """A JSON value without the volatile keys, at any depth (sub-configs carry their own)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safetensors_digests(path: Path) -> list[tuple[str, str]]:
    """(tensor name, digest of dtype, shape and sampled bytes) for every tensor of a safetensors file."""
    out = []
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
        base = 8 + header_len
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = (base + int(o) for o in meta["data_offsets"])
            digest = hashlib.sha256(f"{meta['dtype']}\0{meta['shape']}\0{end - start}\0".encode())
            for offset, size in _windows(start, end):
                fh.seek(offset)
                digest.update(fh.read(size))
            out.append((name, digest.hexdigest()))
    return out


def _windows(start: int, end: int) -> list[tuple[int, int]]:
    """Byte ranges hashed for a tensor stored in [start, end): all of it, or three windows."""
    size = end - start
    if size <= 3 * _WINDOW:
        return [(start, size)]
    middle = start + (size - _WINDOW) // 2
    return [(start, _WINDOW), (middle, _WINDOW), (end - _WINDOW, _WINDOW)]


def hub_snapshot(model: str, revision: str | None = None) -> tuple[str | None, Path | None]:
    """The commit a hub id resolves to in the local cache, and its snapshot directory.

    Reads the cache only (after `from_pretrained` the files it loaded are there); (None, None)
    if the id is not cached, `revision` (a branch, tag or commit; default "main") included.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None, None
    for filename in ("config.json", "adapter_config.json"):
        try:
            found = try_to_load_from_cache(model, filename, revision=revision or "main")
        except Exception:  # noqa: BLE001 - a malformed id or revision: nothing cached under it
            return None, None
        if isinstance(found, str):
            snapshot = Path(found).parent
            commit = snapshot.name
            return (commit if _COMMIT.match(commit) else None), snapshot
    return None, None


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex commit hash."""
    return bool(revision and _COMMIT.match(revision))


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose code computes the vectors."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("transformers", "colpali_engine", "torch"):
        try:
            versions[dist.replace("_", "-")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist.replace("_", "-")] = None
    from dse import __version__

    versions["dse"] = __version__
    return versions


def weights_identity(
    model: str,
    *,
    revision: str | None = None,
    builtin: bool = False,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """The identity a manifest records for weights loaded from `model` (a hub id or a directory).

    Args:
        model: The hub id or local directory passed to `from_pretrained`.
        revision: The revision requested (hub ids), resolved to a commit through the cache.
        builtin: A dse-built tiny checkpoint (recorded as such, with its fingerprint).
        dtype: The torch dtype the weights run in.
        trust_remote_code: Whether the checkpoint's own code was allowed to run.
    """
    local = Path(model)
    identity: dict[str, Any] = {"source": "builtin" if builtin else "local", "hub_id": None, "revision": None}
    directory: Path | None = local if local.is_dir() else None
    if directory is None:
        commit, directory = hub_snapshot(model, revision)
        identity.update(source="hub", hub_id=model, revision=commit or revision)
    identity["fingerprint"], identity["files"] = None, {}
    if directory is not None:
        try:
            identity["fingerprint"], identity["files"] = directory_fingerprint(directory)
        except (OSError, ValueError):
            pass
    identity["dtype"] = str(dtype).removeprefix("torch.") if dtype is not None else None
    identity["trust_remote_code"] = bool(trust_remote_code)
    identity["versions"] = library_versions()
    return identity


def same_weights(built: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> bool | None:
    """Whether two identities name the same weights: True, False, or None when they cannot tell.

    Fingerprints decide when both have one; else hub id and commit when both have them. The
    `trust_remote_code` flags must agree too (the checkpoint's code computes the vectors).
    """
    if not built or not now:
        return None
    if bool(built.get("trust_remote_code")) != bool(now.get("trust_remote_code")):
        return False
    if built.get("fingerprint") and now.get("fingerprint"):
        if built["fingerprint"] != now["fingerprint"]:
            return False
        files, other = built.get("files") or {}, now.get("files") or {}
        return all(files[name] == other[name] for name in set(files) & set(other))
    if built.get("hub_id") and now.get("hub_id") and is_commit(built.get("revision")) and is_commit(now.get("revision")):
        return (built["hub_id"], built["revision"]) == (now["hub_id"], now["revision"])
    return None


def describe_weights(model: Any, identity: Mapping[str, Any] | None) -> str:
    """One phrase naming weights for error messages: model, commit, fingerprint."""
    parts = [repr(model)]
    if identity:
        if identity.get("revision"):
            parts.append(f"@ {identity['revision']}")
        if identity.get("fingerprint"):
            parts.append(f"(weights {str(identity['fingerprint'])[:19]}...)")
        if identity.get("trust_remote_code"):
            parts.append("[trust_remote_code]")
    return " ".join(parts)
