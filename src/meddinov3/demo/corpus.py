"""Demo step 2: curate the training volumes and the bundled real slice into a CT-3M-style corpus.

Held-out test volumes stay out of the corpus, so the pretrained backbone never saw them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.demo.steps import StepContext
from meddinov3.demo.workspace import Workspace
from meddinov3.viz.ct_slice import BUNDLED_SLICE


def curate_corpus(context: StepContext) -> dict[str, Any]:
    from meddinov3.curate.config import CurateConfig
    from meddinov3.curate.runner import curate
    from meddinov3.curate.shards import ShardStore
    from meddinov3.curate.sources import discover

    workspace = context.workspace
    sources = discover([workspace.raw_dataset / "imagesTr", BUNDLED_SLICE])
    context.expect(len(sources), "volumes")
    slices = {"n": 0}

    def advance(outcome) -> None:
        slices["n"] += outcome.n_slices
        context.advance(status=f"{slices['n']} slices")

    summary = curate(sources, ShardStore(workspace.corpus, CurateConfig()), workers=1, on_outcome=advance)
    problems = summary.problems()
    if problems:
        listed = "; ".join(f"{p.source}: {p.reason}" for p in problems)
        raise RuntimeError(f"curation skipped or failed {len(problems)} source(s): {listed}")
    return {"volumes": summary.corpus_volumes, "slices": summary.corpus_slices,
            "size": CurateConfig().size, "spacing_mm": CurateConfig().spacing_mm,
            "real_slice": str(BUNDLED_SLICE.name)}


def corpus_outputs(workspace: Workspace) -> list[Path]:
    return [workspace.corpus]
