"""Weights by Hugging Face name: aliases, hf:// ids and plain owner/name resolved into huggingface_hub's
cache and loaded through `load_backbone`; offline and gated failures as one line. No download from
the internet: the cache is laid out by hand as huggingface_hub lays it out, and the download path
runs the real client against a local Hub server (tests/hub_fakes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import FIXTURES
from hub_fakes import FakeRepo, LocalHub, lay_out_cached_repo
from meddinov3.backbone import build_backbone, load_backbone
from meddinov3.backbone.export import save_hf
from meddinov3.backbone.hub import KNOWN_WEIGHTS, HubWeightsError, hub_weights, resolve_weights
from meddinov3.cli import app

RELEASE_REPO = "ricklisz123/MedDINOv3-ViTB-16-CT-3M"
DINOV3_VITB = "facebook/dinov3-vitb16-pretrain-lvd1689m"
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
TEACHER = FIXTURES / "meddinov3_tiny_teacher.pth"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, read offline (huggingface_hub reads both at call time)."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def tiny_hf_folder(folder: Path, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """The package's own transformers export of a tiny official-recipe ViT, and its state dict."""
    torch.manual_seed(seed)
    model = build_backbone("vitb16", embed_dim=48, num_heads=2, depth=2).eval()
    save_hf(model, folder)
    return folder, model.state_dict()


def hf_files(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in folder.iterdir()}


def assert_same_state(model, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize(
    "name",
    ["meddinov3-ct3m", "MedDINOv3-CT3M", f"hf://{RELEASE_REPO}", f"hf://{RELEASE_REPO}/model.pth", RELEASE_REPO,
     f"hf://{RELEASE_REPO}@main/model.pth"],
)
def test_release_alias_and_ids_load_the_cached_file(hub_cache, name):
    snapshot = lay_out_cached_repo(hub_cache, RELEASE_REPO, {"model.pth": TEACHER.read_bytes()}, COMMIT_A)
    path = resolve_weights(name)
    assert path == snapshot / "model.pth" and path.is_symlink()  # the snapshot link, not the suffix-less blob
    assert_same_state(load_backbone(name), load_backbone(TEACHER).state_dict())


def test_dinov3_alias_reads_the_transformers_layout(hub_cache, tmp_path):
    folder, expected = tiny_hf_folder(tmp_path / "export")
    snapshot = lay_out_cached_repo(hub_cache, DINOV3_VITB, hf_files(folder), COMMIT_A)
    assert resolve_weights("dinov3-vitb16") == snapshot
    assert_same_state(load_backbone("dinov3-vitb16"), expected)


def test_revision_selects_its_snapshot(hub_cache, tmp_path):
    main, main_state = tiny_hf_folder(tmp_path / "main", seed=0)
    other, other_state = tiny_hf_folder(tmp_path / "other", seed=1)
    lay_out_cached_repo(hub_cache, "someone/tiny-vit", hf_files(main), COMMIT_A)
    lay_out_cached_repo(hub_cache, "someone/tiny-vit", hf_files(other), COMMIT_B, revision="v2")
    assert_same_state(load_backbone("someone/tiny-vit"), main_state)
    assert_same_state(load_backbone("hf://someone/tiny-vit@v2"), other_state)
    assert_same_state(load_backbone(f"someone/tiny-vit@{COMMIT_B}"), other_state)


def test_sharded_safetensors_are_read_through_their_index(hub_cache, tmp_path):
    folder, expected = tiny_hf_folder(tmp_path / "export")
    tensors = load_file(folder / "model.safetensors")
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    files = {"config.json": (folder / "config.json").read_bytes()}
    for shard, shard_keys in shards.items():
        save_file({k: tensors[k] for k in shard_keys}, tmp_path / shard, metadata={"format": "pt"})
        files[shard] = (tmp_path / shard).read_bytes()
    index = {"metadata": {}, "weight_map": {k: shard for shard, shard_keys in shards.items() for k in shard_keys}}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    lay_out_cached_repo(hub_cache, "someone/sharded-vit", files, COMMIT_A)
    assert_same_state(load_backbone("hf://someone/sharded-vit"), expected)


def test_an_existing_local_path_wins_over_a_hub_id(hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, expected = tiny_hf_folder(tmp_path / "someone" / "tiny-vit")
    assert hub_weights("someone/tiny-vit") is None  # the folder exists: a path, no Hub look-up
    assert_same_state(load_backbone("someone/tiny-vit"), expected)
    assert hub_weights("runs/model.pth") is None  # named like a file: a (missing) path
    with pytest.raises(HubWeightsError, match="no local file or folder 'runs/latest'"):
        load_backbone("runs/latest")


def test_offline_and_not_cached_is_one_line_naming_the_weights(hub_cache):
    with pytest.raises(HubWeightsError) as err:
        load_backbone("dinov3-vitl16")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("dinov3-vitl16 (hf://facebook/dinov3-vitl16-pretrain-lvd1689m): not in the Hugging Face cache")
    assert str(hub_cache) in message and "HF_HUB_OFFLINE is set" in message


def test_features_command_reports_missing_hub_weights_in_one_line(hub_cache, tmp_path):
    result = CliRunner().invoke(app, ["features", "--weights", "meddinov3-ct3m", "--out", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: meddinov3-ct3m (hf://ricklisz123/MedDINOv3-ViTB-16-CT-3M/model.pth)")


def test_train_records_the_cached_file_and_loads_it(hub_cache):
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.network import load_pretrained_encoder
    from meddinov3.nnunet.spec import build_spec
    from meddinov3.segmentation import build_segmenter

    snapshot = lay_out_cached_repo(hub_cache, RELEASE_REPO, {"model.pth": TEACHER.read_bytes()}, COMMIT_A)
    spec = build_spec(get_method("meddinov3"), weights="meddinov3-ct3m")
    assert spec.pretrained_weights == str(snapshot / "model.pth")
    network = build_segmenter(build_backbone(spec.backbone_config()), num_classes=3)
    load_pretrained_encoder(network.dino_encoder, spec, num_input_channels=1)
    assert_same_state(network.dino_encoder, load_backbone(TEACHER).state_dict())


def test_pretraining_starts_from_a_hub_name_with_its_heads(hub_cache, tmp_path):
    from meddinov3.pretrain.config import load_config
    from meddinov3.pretrain.pretrainer import build_student

    lay_out_cached_repo(hub_cache, RELEASE_REPO, {"model.pth": TEACHER.read_bytes()}, COMMIT_A)
    config = load_config("tiny", [f"run.output_dir={tmp_path}", "model.init=meddinov3-ct3m", "model.arch_overrides={}", "model.head_batchnorm=false",
                                  "model.head_prototypes=32", "model.head_hidden_dim=48", "model.head_bottleneck_dim=16"])
    student = build_student(config)
    teacher = torch.load(TEACHER, weights_only=True)["teacher"]
    assert torch.equal(student.dino_head.state_dict()["mlp.0.weight"], teacher["dino_head.mlp.0.weight"])
    assert torch.equal(student.backbone.state_dict()["cls_token"], teacher["backbone.cls_token"])


@pytest.mark.parametrize("name", ["hf://datasets/someone/data", "hf://", "hf://only-owner"])
def test_malformed_or_non_model_ids_are_refused(hub_cache, name):
    with pytest.raises(HubWeightsError, match="hf://"):
        resolve_weights(name)


def test_published_parameter_counts_match_the_aliased_architectures():
    """The table's ids and published counts (DINOv3 README) against the presets the aliases load as."""
    dinov3 = sorted(k.repo_id for k in KNOWN_WEIGHTS if k.repo_id.startswith("facebook/"))
    assert dinov3 == sorted(f"facebook/dinov3-{size}-pretrain-lvd1689m"  # the README's list of ViTs on the Hub
                            for size in ("vits16", "vits16plus", "vitb16", "vitl16", "vith16plus", "vit7b16"))
    for known in KNOWN_WEIGHTS:
        with torch.device("meta"):
            count = sum(p.numel() for p in build_backbone(known.preset).parameters())
        assert abs(count / 1e6 / known.parameters_m - 1) < 0.05, (known.alias, count)


def test_weights_command_lists_every_alias_and_what_is_cached(hub_cache):
    lay_out_cached_repo(hub_cache, RELEASE_REPO, {"model.pth": TEACHER.read_bytes()}, COMMIT_A)
    result = CliRunner().invoke(app, ["weights"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│")}
    assert set(rows) == {k.alias for k in KNOWN_WEIGHTS}
    assert "Apache-2.0" in rows["meddinov3-ct3m"] and rows["meddinov3-ct3m"].rstrip(" │").endswith("yes")
    assert "DINOv3 License, gated" in rows["dinov3-vit7b16"] and "6,716M" in rows["dinov3-vit7b16"]
    assert rows["dinov3-vitb16"].rstrip(" │").endswith("no")


# The real client against a local Hub: environment variables as a user sets them, in fresh processes.


def hub_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HOME": str(tmp_path / "hf_home"), "HF_ENDPOINT": endpoint, **extra}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=120)


CHECK_OFFLINE = """
import torch
from meddinov3 import load_backbone
from meddinov3.backbone.hub import HubWeightsError
model = load_backbone("meddinov3-ct3m")
print(float(sum(t.double().sum() for t in model.state_dict().values())))
try:
    load_backbone("dinov3-vitl16")
except HubWeightsError as err:
    print(err)
"""


def test_download_into_hf_home_then_offline_reads_it(tmp_path):
    teacher = TEACHER.read_bytes()
    with LocalHub({RELEASE_REPO: FakeRepo(COMMIT_A, {"model.pth": teacher})}) as hub:
        # TQDM_POSITION=-1: huggingface_hub draws its bar off a terminal too (on one, it always does).
        env = hub_env(tmp_path, hub.endpoint, TQDM_POSITION="-1")
        fetched = run(env, "-m", "meddinov3.cli", "weights", "meddinov3-ct3m")
    assert fetched.returncode == 0, fetched.stderr
    storage = tmp_path / "hf_home" / "hub" / "models--ricklisz123--MedDINOv3-ViTB-16-CT-3M"
    path = Path(fetched.stdout.strip())
    assert path == storage / "snapshots" / COMMIT_A / "model.pth"
    assert path.read_bytes() == teacher and path.resolve().parent == storage / "blobs"
    assert (storage / "refs" / "main").read_text(encoding="utf-8") == COMMIT_A
    file_requests = [r[:2] for r in hub.requests if "/resolve/" in r[1]]
    assert file_requests == [("HEAD", f"/{RELEASE_REPO}/resolve/main/model.pth"), ("GET", f"/{RELEASE_REPO}/resolve/main/model.pth")]
    assert "model.pth" in fetched.stderr and "100%" in fetched.stderr, fetched.stderr  # the progress bar

    offline = run(hub_env(tmp_path, "http://127.0.0.1:9", HF_HUB_OFFLINE="1"), "-c", CHECK_OFFLINE)
    assert offline.returncode == 0, offline.stderr
    checksum, error = offline.stdout.strip().splitlines()
    expected = float(sum(t.double().sum() for t in load_backbone(TEACHER).state_dict().values()))
    assert float(checksum) == expected
    assert error.startswith("dinov3-vitl16 (hf://facebook/dinov3-vitl16-pretrain-lvd1689m): not in the Hugging Face cache")
    assert str(tmp_path / "hf_home" / "hub") in error and "HF_HUB_OFFLINE is set" in error


@pytest.mark.parametrize("token", [None, "hf_not_granted"])
def test_gated_repository_says_what_to_do(tmp_path, token):
    folder, _ = tiny_hf_folder(tmp_path / "export")
    with LocalHub({DINOV3_VITB: FakeRepo(COMMIT_A, hf_files(folder), gated=True)}) as hub:
        env = hub_env(tmp_path, hub.endpoint, **({"HF_TOKEN": token} if token else {}))
        result = run(env, "-m", "meddinov3.cli", "weights", "dinov3-vitb16")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: dinov3-vitb16 (hf://facebook/dinov3-vitb16-pretrain-lvd1689m): a gated repository")
    assert f"{hub.endpoint}/{DINOV3_VITB}" in lines[0]
    authorizations = {r[2] for r in hub.requests if "/resolve/" in r[1]}
    if token is None:
        assert "no Hugging Face token" in lines[0] and "HF_TOKEN" in lines[0]
        assert authorizations == {None}
    else:
        assert "your Hugging Face token may not read yet" in lines[0]
        assert authorizations == {f"Bearer {token}"}  # the token from HF_TOKEN was sent
    assert not list((tmp_path / "hf_home" / "hub").glob("**/config.json"))
