"""Pictures of episodes: the support set, and the queries with what the adapted network said."""

from __future__ import annotations

from pathlib import Path

import torch

from genome.phenotype import Phenotype
from lifetime.heads import adapt
from lifetime.rules.base import Rule
from tasks.episodes import Episodes


def predictions(
    phenotype: Phenotype, episodes: Episodes, rule: Rule | None, head: str
) -> torch.Tensor:
    """Predicted labels [E, Q] of individual 0 after adapting on each episode."""
    with torch.no_grad():
        adapted = adapt(
            phenotype.select([0]), episodes.support_x, episodes.support_y, rule, head, episodes.way
        )
        return adapted.logits(episodes.query_x)[0].argmax(dim=-1)


def draw_episodes(
    phenotype: Phenotype,
    episodes: Episodes,
    rule: Rule | None,
    head: str,
    directory: str | Path,
    *,
    count: int = 3,
    max_queries: int = 5,
) -> list[Path]:
    """One PNG per episode (the first `count`): support images by label, queries with
    their predicted label, green when right and red when wrong."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shown = episodes.select(slice(0, count))
    pred = predictions(phenotype, shown, rule, head)
    way, shot = shown.way, shown.shot
    queries = min(max_queries, shown.query)
    paths = []
    for e in range(len(shown)):
        fig, axes = plt.subplots(
            shot + queries, way, figsize=(1.3 * way, 1.3 * (shot + queries)), squeeze=False
        )
        for c in range(way):
            for r in range(shot):
                ax = axes[r][c]
                ax.imshow(shown.support_x[e, c * shot + r].cpu().numpy(), cmap="gray")
                ax.set_title(f"support {c}", fontsize=7)
            for r in range(queries):
                k = c * shown.query + r
                ok = bool(pred[e, k] == shown.query_y[e, k])
                ax = axes[shot + r][c]
                ax.imshow(shown.query_x[e, k].cpu().numpy(), cmap="gray")
                ax.set_title(f"said {int(pred[e, k])}", fontsize=7, color="green" if ok else "red")
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"episode {int(shown.indices[e])}: {way}-way {shot}-shot", fontsize=9)
        fig.tight_layout()
        path = directory / f"episode_{int(shown.indices[e])}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
