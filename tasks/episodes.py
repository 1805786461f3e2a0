"""N-way K-shot Q-query episodes from any labelled image set.

The few-shot protocol of Vinyals et al. (Matching Networks, NeurIPS 2016) and
Lake et al. (Omniglot, Science 2015): an episode picks `way` classes, gives
`shot` labelled support images of each and asks for the labels of `query`
others of each. Labels are a fresh permutation in every episode, so nothing
about a class's identity carries from one episode to the next. Within groups
(Omniglot's harder standard), all classes of an episode come from one group
(one alphabet, one script); otherwise from anywhere in the set.

Episode i is a pure function of (seed, split, i): it is drawn from its own
generator, `seeded(seed, STREAM_EPISODES, split, i)`, never a global RNG, so
every genome, rule and process meets the same episodes, and any subset of
them can be drawn alone.

A source of classes is anything with `n_classes`, `groups` [C],
`group_names`, `image_shape` and `sample(classes, per_class, generator)`
([N, per_class, H, W]): `tasks.labelled.LabelledImages` for a fixed image set
(digits, a user's `.npz`), `tasks.glyphs.GlyphSet` for rendered glyphs;
`load_source` finds one by name or path.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor

from tasks.images import Device
from tasks.labelled import DataError
from tasks.seeds import seeded

STREAM_EPISODES = 7
DEFAULT_QUERY = 15


class ClassSource(Protocol):
    name: str
    groups: Tensor
    group_names: list[str]

    @property
    def n_classes(self) -> int: ...

    @property
    def image_shape(self) -> tuple[int, int]: ...

    def sample(self, classes: Tensor, per_class: int, generator: torch.Generator) -> Tensor: ...


@dataclasses.dataclass(frozen=True)
class Episodes:
    """E episodes: support [E, way*shot, H, W] with labels [E, way*shot], query likewise.

    Labels are 0..way-1; `classes` [E, way] names the source class behind each label.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: Tensor
    indices: Tensor
    way: int
    shot: int
    query: int

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    def select(self, index: slice | Tensor) -> Episodes:
        """A subset of the episodes (a chunk, for memory-bounded evaluation)."""
        return dataclasses.replace(
            self,
            support_x=self.support_x[index],
            support_y=self.support_y[index],
            query_x=self.query_x[index],
            query_y=self.query_y[index],
            classes=self.classes[index],
            indices=self.indices[index],
        )

    def to(self, device: Device) -> Episodes:
        return dataclasses.replace(
            self,
            support_x=self.support_x.to(device),
            support_y=self.support_y.to(device),
            query_x=self.query_x.to(device),
            query_y=self.query_y.to(device),
        )


def split_code(split: str) -> int:
    """A stable integer for a split's name, for seeding."""
    return zlib.crc32(split.encode())


def check_episode_shape(
    source: ClassSource, way: int, shot: int, query: int, within_groups: bool
) -> None:
    """Raise DataError unless `source` can serve `way`-way `shot`-shot `query`-query episodes."""
    for name, v, lo in (("way", way, 2), ("shot", shot, 1), ("query", query, 1)):
        if int(v) != v or v < lo:
            raise DataError(f"{name} must be an integer >= {lo}, got {v}")
    if source.n_classes < way:
        raise DataError(
            f"{source.name}: {way}-way episodes need {way} classes, the set has "
            f"{source.n_classes}; valid: way <= {source.n_classes}"
        )
    if within_groups:
        sizes = torch.bincount(source.groups.cpu(), minlength=len(source.group_names))
        if int(sizes.max()) < way:
            raise DataError(
                f"{source.name}: within-group {way}-way episodes need a group of {way} "
                f"classes, the largest has {int(sizes.max())}; use a smaller way or "
                "episodes across groups"
            )
    counts = getattr(source, "counts", None)
    if counts is not None:
        enough = counts >= shot + query
        if within_groups:
            per_group = torch.bincount(
                source.groups.cpu()[enough.cpu()], minlength=len(source.group_names)
            )
            ok = int(per_group.max()) >= way
        else:
            ok = int(enough.sum()) >= way
        if not ok:
            raise DataError(
                f"{source.name}: episodes need {shot} + {query} images of each of {way} "
                f"classes, but only {int(enough.sum())} classes have that many (fewest "
                f"images in a class: {int(counts.min())}); lower shot or query"
            )


def draw_episode(
    source: ClassSource,
    generator: torch.Generator,
    way: int,
    shot: int,
    query: int,
    within_groups: bool,
) -> tuple[Tensor, Tensor]:
    """One episode's classes [way] (label j is classes[j]) and images [way, shot + query, H, W]."""
    counts = getattr(source, "counts", None)
    usable = torch.ones(source.n_classes, dtype=torch.bool)
    if counts is not None:
        usable = (counts >= shot + query).cpu()
    gdev = generator.device
    if within_groups:
        groups = source.groups.cpu()
        sizes = torch.bincount(groups[usable], minlength=len(source.group_names))
        eligible = torch.nonzero(sizes >= way)[:, 0]
        g = eligible[torch.randint(len(eligible), (1,), generator=generator, device=gdev).cpu()]
        usable = usable & (groups == g)
    pool = torch.nonzero(usable)[:, 0]
    # A random order of the pool: its first `way` classes, labelled 0..way-1 in that order.
    pick = torch.randperm(len(pool), generator=generator, device=gdev).cpu()[:way]
    classes = pool[pick]
    return classes, source.sample(classes, shot + query, generator)


def draw_episodes(
    source: ClassSource,
    *,
    way: int,
    shot: int,
    query: int = DEFAULT_QUERY,
    seed: int = 0,
    split: str = "evaluation",
    indices: Iterable[int] | int = 600,
    within_groups: bool = True,
) -> Episodes:
    """Episodes `indices` (or range(n) for an int) of (seed, split), each from its own generator."""
    check_episode_shape(source, way, shot, query, within_groups)
    index = list(range(indices)) if isinstance(indices, int) else [int(i) for i in indices]
    if not index:
        raise DataError("no episodes asked for; give at least one")
    code = split_code(split)
    all_classes, images = [], []
    for i in index:
        # The draw itself is tiny; one generator per episode is what makes
        # episode i the same whichever others are drawn with it.
        classes, x = draw_episode(
            source, seeded(seed, STREAM_EPISODES, code, i), way, shot, query, within_groups
        )
        all_classes.append(classes)
        images.append(x)
    x = torch.stack(images)  # [E, way, shot + query, H, W]
    e, h, w = len(index), *x.shape[-2:]
    labels = torch.arange(way, device=x.device)[None, :, None]
    support_y = labels.expand(e, way, shot).reshape(e, way * shot)
    query_y = labels.expand(e, way, query).reshape(e, way * query)
    return Episodes(
        support_x=x[:, :, :shot].reshape(e, way * shot, h, w),
        support_y=support_y.contiguous(),
        query_x=x[:, :, shot:].reshape(e, way * query, h, w),
        query_y=query_y.contiguous(),
        classes=torch.stack(all_classes),
        indices=torch.tensor(index, dtype=torch.long),
        way=way,
        shot=shot,
        query=query,
    )


SOURCES = ("glyphs", "digits", "mnist")


def load_source(
    data: str, split: str, size: tuple[int, int], device: Device = "cpu"
) -> ClassSource:
    """The classes of `split` of `data` (a name in `SOURCES` or an `.npz` path), at `size`.

    A user's `.npz` has no splits: every split is the whole file.
    """
    from tasks.labelled import digit_classes, load_npz

    if data == "glyphs":
        from tasks.glyphs import load_glyphs

        return load_glyphs(split, size=size, device=device)
    if data in ("digits", "mnist"):
        return digit_classes(data, split, device).resized(size)
    if data.endswith(".npz"):
        return load_npz(data, size).to(device)
    raise DataError(f"unknown data {data!r}; valid: {', '.join(SOURCES)} or a FILE.npz")
