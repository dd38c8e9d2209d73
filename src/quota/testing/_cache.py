"""What the tiny-checkpoint builders share: seeded construction, quiet saving, the marker file and the
per-process cache.

Used by :mod:`quota.testing.tiny_models` (video-language models) and :mod:`quota.testing.tiny_clip` (dual
encoders). Each of those modules makes one :class:`CheckpointCache` with its own marker file name, builder
version and folder prefix; both keep their checkpoints under the same root folder (``$QUOTA_TINY_CACHE`` when
set, else one temporary folder per process).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import UnsupportedModelError

#: Environment variable naming a folder where the tiny checkpoints are kept between runs.
CACHE_ENV = "QUOTA_TINY_CACHE"

_DEFAULT_ROOT: Path | None = None
_ROOT_LOCK = threading.Lock()


def cache_root() -> Path:
    """The folder named by ``$QUOTA_TINY_CACHE``, else one temporary folder for this process (removed at exit)."""
    global _DEFAULT_ROOT
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    with _ROOT_LOCK:
        if _DEFAULT_ROOT is None:
            _DEFAULT_ROOT = Path(tempfile.mkdtemp(prefix="quota-tiny-"))
            atexit.register(shutil.rmtree, _DEFAULT_ROOT, True)
        return _DEFAULT_ROOT


def seeded_model(model_class: Any, config: Any, seed: int) -> Any:
    """``model_class(config)`` in float32 eval mode with weights drawn from ``seed``; global RNG untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.to(torch.float32).eval()


def save_quietly(model: Any, folder: Path) -> None:
    """``model.save_pretrained(folder)`` without a progress bar and with only transformers' errors logged.

    (Saving a tiny SigLIP diffs its config against transformers' default SigLIP text config, whose own token
    ids do not fit its own vocabulary in transformers 5.x: that warning is about the defaults, not the
    checkpoint.)
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        model.save_pretrained(folder)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class CheckpointCache:
    """Marker files and a per-process cache for one module's tiny checkpoints.

    Args:
        families: the family names the module builds.
        what: what one checkpoint is called in error messages (``"tiny model"``).
        marker_file: name of the JSON file a finished checkpoint holds (family, seed, builder version,
            transformers version); a folder whose marker differs is rebuilt.
        builder_version: the module's builder version (bumped when the builders change what they write).
        build: ``build(family, folder, seed)`` writes a checkpoint into ``folder`` (including the marker,
            through :meth:`write_marker`).
        prefix: put before the family name in the cache folder's name (``"tiny_"`` -> ``tiny_clip``).
    """

    def __init__(
        self,
        *,
        families: tuple[str, ...],
        what: str,
        marker_file: str,
        builder_version: int,
        build: Callable[[str, Path, int], Any],
        prefix: str = "",
    ) -> None:
        self.families = families
        self.what = what
        self.marker_file = marker_file
        self.builder_version = builder_version
        self.prefix = prefix
        self._build = build
        self._folders: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()

    def check_family(self, family: str) -> str:
        """``family``, or :class:`UnsupportedModelError` listing the families there are."""
        if family not in self.families:
            raise UnsupportedModelError(
                f"No {self.what} for family {family!r}; choose one of {', '.join(self.families)}."
            )
        return family

    def marker(self, family: str, seed: int) -> dict[str, Any]:
        """What the marker file of a finished checkpoint says: family, seed, builder and transformers versions."""
        import transformers

        return {
            "family": family,
            "seed": seed,
            "builder_version": self.builder_version,
            "transformers": transformers.__version__,
        }

    def write_marker(self, folder: Path, family: str, seed: int) -> None:
        """Write the marker file into ``folder`` (the last file a builder writes)."""
        text = json.dumps(self.marker(family, seed), indent=2) + "\n"
        (folder / self.marker_file).write_text(text, encoding="utf-8")

    def is_current(self, folder: Path, family: str, seed: int = 0) -> bool:
        """True if ``folder`` holds a finished checkpoint of ``family``/``seed`` by this builder version."""
        try:
            info = json.loads((folder / self.marker_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return info == self.marker(family, seed)

    def get(self, family: str) -> Path:
        """The folder of the ``family`` checkpoint (seed 0), built at most once per process.

        Under ``$QUOTA_TINY_CACHE`` a finished checkpoint from an earlier run (same builder and transformers
        versions) is reused as is. Building goes to a scratch folder that is then renamed into place, so
        processes sharing one cache folder never see a half-written checkpoint.
        """
        self.check_family(family)
        root = cache_root()
        key = (family, str(root))
        with self._lock:
            if key in self._folders and self.is_current(self._folders[key], family):
                return self._folders[key]
            folder = root / f"{self.prefix}{family}"
            if not self.is_current(folder, family):
                root.mkdir(parents=True, exist_ok=True)
                scratch = root / f".{self.prefix}{family}-{uuid.uuid4().hex}"
                try:
                    self._build(family, scratch, 0)
                    # Another process may have finished the same checkpoint meanwhile: keep its copy then.
                    if not self.is_current(folder, family):
                        if folder.exists():  # stale (older builder or transformers version) or half-written
                            shutil.rmtree(folder, ignore_errors=True)
                        try:
                            os.replace(scratch, folder)
                        except OSError:
                            if not self.is_current(folder, family):
                                raise
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            self._folders[key] = folder
            return folder


__all__ = ["CACHE_ENV", "CheckpointCache", "cache_root", "save_quietly", "seeded_model"]
