"""Weights by name: Hugging Face Hub ids and short aliases, resolved into huggingface_hub's cache.

What a user passes as weights (`load_backbone`, `--weights`, pretrain's `model.init`) is, in order:
  - an existing local file or folder: itself;
  - an alias of `KNOWN_WEIGHTS` (`meddinov3-ct3m`, `dinov3-vitb16`, ...);
  - `hf://owner/name[@revision][/file]`;
  - a plain `owner/name[@revision]` that is no local path.
A repository named without a file is read in the transformers layout (config.json + safetensors
weights, sharded or not), the layout of the official DINOv3 repositories, unless it is a known
repository whose checkpoint file is recorded below. Downloads go through huggingface_hub into its
standard cache, so HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT, tokens (HF_TOKEN or
`hf auth login`) and its progress bars all apply as they do for every Hugging Face tool.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from meddinov3.backbone.errors import CheckpointError

HUB_PREFIX = "hf://"
# A plain `owner/name` ending like a checkpoint file is a mistyped local path, not a repository.
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".json")
_PLAIN_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
_TRANSFORMERS_WEIGHTS = "model.safetensors"
_TRANSFORMERS_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class KnownWeights:
    """A published backbone with its short alias; numbers as their sources state them."""

    alias: str
    repo_id: str
    filename: str | None  # None: the transformers layout (config.json + safetensors)
    preset: str  # its architecture among meddinov3.backbone.presets
    parameters_m: int  # millions, as published
    licence: str
    gated: bool  # the Hub asks users to accept the licence before downloading


# The official DINOv3 ViTs in the transformers layout, named facebook/dinov3-<preset>-pretrain-lvd1689m.
# Parameters (millions): the DINOv3 README's table of pretrained backbones (github.com/facebookresearch/
# dinov3); licence and gating: their model cards ("License: DINOv3 License"; "You need to agree to
# share your contact information to access this model").
_DINOV3_PARAMETERS_M = {"vits16": 21, "vits16plus": 29, "vitb16": 86, "vitl16": 300, "vith16plus": 840, "vit7b16": 6716}
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    # Model card metadata `license: apache-2.0`; the file name `model.pth` as the release's users
    # download it; ViT-B/16 as the card states (its parameter count is the ViT-B/16 one).
    KnownWeights("meddinov3-ct3m", "ricklisz123/MedDINOv3-ViTB-16-CT-3M", "model.pth", "meddinov3_vitb16", 86,
                 "Apache-2.0", False),
    *(
        KnownWeights(f"dinov3-{preset}", f"facebook/dinov3-{preset}-pretrain-lvd1689m", None, preset, millions,
                     "DINOv3 License", True)
        for preset, millions in _DINOV3_PARAMETERS_M.items()
    ),
)
_BY_ALIAS = {k.alias: k for k in KNOWN_WEIGHTS}
_BY_REPO = {k.repo_id.lower(): k for k in KNOWN_WEIGHTS}


class HubWeightsError(CheckpointError):
    """Weights named on the Hub that cannot be had; the message names them and says what to do."""


@dataclass(frozen=True)
class HubWeights:
    """A checkpoint on the Hub: a file of a repository, or its transformers layout (`filename=None`)."""

    name: str  # as the user wrote it
    repo_id: str
    revision: str | None = None
    filename: str | None = None

    @property
    def uri(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{HUB_PREFIX}{self.repo_id}{revision}" + (f"/{self.filename}" if self.filename else "")

    @property
    def label(self) -> str:
        """How errors start: the name as written, with the full id when that was an alias or a plain
        id, and for a plain id that it is no local path either (it may be a mistyped one)."""
        if self.name == self.uri:
            return self.name
        plain = not self.name.startswith(HUB_PREFIX) and self.name.lower() not in _BY_ALIAS
        return f"{self.name} ({self.uri})" + (f": no local file or folder {self.name!r}; as a Hub id" if plain else "")


def hub_weights(weights: str | os.PathLike) -> HubWeights | None:
    """The Hub checkpoint `weights` names, or None when it names a local path."""
    text = os.fspath(weights)
    if text.startswith(HUB_PREFIX):
        return _parse_uri(text, text)
    if Path(text).exists():
        return None
    if text.lower() in _BY_ALIAS:
        known = _BY_ALIAS[text.lower()]
        return HubWeights(text, known.repo_id, None, known.filename)
    if _PLAIN_REPO_ID.fullmatch(text) and not text.lower().endswith(_FILE_SUFFIXES):
        return _parse_uri(HUB_PREFIX + text, text)
    return None


def _parse_uri(uri: str, name: str) -> HubWeights:
    from huggingface_hub.errors import HfUriError
    from huggingface_hub.utils import parse_hf_uri

    try:
        parsed = parse_hf_uri(uri)
    except HfUriError as err:
        raise HubWeightsError(f"{name}: not a Hub id ({err}); write hf://owner/name[@revision][/file]") from None
    if parsed.type != "model":
        raise HubWeightsError(f"{name}: a {parsed.type} repository; weights come from model repositories")
    known = _BY_REPO.get(parsed.id.lower())
    filename = parsed.path_in_repo or (known.filename if known else None)
    return HubWeights(name, parsed.id, parsed.revision, filename or None)


def resolve_weights(weights: str | os.PathLike, local_only: bool = False) -> Path:
    """A local path for `weights`: itself, or the Hub checkpoint it names, downloaded into the cache
    (or only looked up there with `local_only`). Failures are `HubWeightsError`s in one line."""
    ref = hub_weights(weights)
    if ref is None:
        return Path(weights)
    with _hub_errors(ref):
        if ref.filename is not None:
            return _fetch(ref, ref.filename, local_only)
        return _fetch_transformers_folder(ref, local_only)


def _fetch(ref: HubWeights, filename: str, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    # A snapshot path (a link into the cache's blobs): kept as is, since readers go by its suffix.
    return Path(hf_hub_download(ref.repo_id, filename, revision=ref.revision, local_files_only=local_only))


def _fetch_transformers_folder(ref: HubWeights, local_only: bool) -> Path:
    """config.json and the safetensors weights (one file, or the shards of its index): the snapshot folder."""
    from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError

    try:
        config = _fetch(ref, "config.json", local_only)
    except RemoteEntryNotFoundError:
        raise HubWeightsError(
            f"{ref.label}: the repository has no config.json, so it is not a transformers model folder; "
            f"name its checkpoint file: {HUB_PREFIX}{ref.repo_id}/FILE"
        ) from None
    try:
        _fetch(ref, _TRANSFORMERS_WEIGHTS, local_only)
    except EntryNotFoundError as single_file_missing:
        try:
            index = _fetch(ref, _TRANSFORMERS_INDEX, local_only)
        except EntryNotFoundError:
            raise single_file_missing from None
        for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            _fetch(ref, shard, local_only)
    return config.parent


@contextmanager
def _hub_errors(ref: HubWeights) -> Iterator[None]:
    """huggingface_hub's failures as one line that names the weights and what to do."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{constants.ENDPOINT}/{ref.repo_id}"
    try:
        yield
    except GatedRepoError:
        if get_token() is None:
            raise HubWeightsError(
                f"{ref.label}: a gated repository and no Hugging Face token is set: accept its licence at {page}, "
                "then log in (`hf auth login`) or set HF_TOKEN"
            ) from None
        raise HubWeightsError(
            f"{ref.label}: a gated repository that your Hugging Face token may not read yet: accept its licence at "
            f"{page} with the account of that token"
        ) from None
    except RepositoryNotFoundError:
        raise HubWeightsError(
            f"{ref.label}: no repository {ref.repo_id!r} on {constants.ENDPOINT} "
            "(if it is private, log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise HubWeightsError(f"{ref.label}: the repository has no revision {ref.revision!r}") from None
    except RemoteEntryNotFoundError as err:
        raise HubWeightsError(f"{ref.label}: no such file on the Hub: {err.response.url}") from None
    except LocalEntryNotFoundError:
        where = f"the Hugging Face cache {constants.HF_HUB_CACHE}"
        if constants.HF_HUB_OFFLINE:
            raise HubWeightsError(
                f"{ref.label}: not in {where}, and HF_HUB_OFFLINE is set: download it once online "
                f"(`meddinov3 weights {ref.name}`) or pass a local path"
            ) from None
        raise HubWeightsError(
            f"{ref.label}: not in {where}, and {constants.ENDPOINT} cannot be reached: check the connection, "
            f"or download it where there is one (`meddinov3 weights {ref.name}`) and copy the cache"
        ) from None
    except HfHubHTTPError as err:
        raise HubWeightsError(f"{ref.label}: the download failed: {str(err).strip().splitlines()[0]}") from None
