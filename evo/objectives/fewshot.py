"""Few-shot skill after a lifetime of learning: selecting for what the born network can learn.

Each generation draws `episodes` N-way K-shot episodes from the *background*
classes of `data` (glyph scripts, or digits 0-4), every individual adapts on
every episode's support set with the lifetime rule and head (`lifetime.heads`,
batched over population x episodes), and is scored on the queries: the value
is the mean query cross-entropy (smoother than accuracy, which is reported
beside it). This is the Baldwin effect's loop (Hinton and Nowlan 1987): what
is selected is the genome, for what it lets the network learn; the learned
weights are not inherited. The born network's own output layer is not used:
the head reads the last hidden layer, as in `innate fewshot`.

The episodes of a generation are a pure function of the generator the run
gives (seeded by run seed and generation). The test is `test_episodes` fixed
episodes of the *evaluation* classes (seed 0), never seen in evolution; the
validation scripts stay free for choosing settings.

With glyphs, `samples` (default 20, Omniglot's number of drawings per
character) samples of every character are drawn once, when the objective
first reads a split (`tasks.glyphs.drawn_glyphs`: the background's from the
run's seed, the evaluation's from 0, so every run is tested on the same
images), and episodes pick among them: a generation's draw then costs a few
milliseconds instead of a fresh distortion of every image. `samples = 0`
distorts a fresh sample for every image of every episode.
"""

from __future__ import annotations

from typing import Any

import torch

from evo.objectives.base import Objective
from genome.phenotype import Phenotype

DATA = ("glyphs", "digits", "mnist")
HEADS = ("prototype", "linear", "all")
# Largest settings: an episode batch is [episodes, way * (shot + query), H, W].
MAX_SIZE, MAX_WAY, MAX_EXAMPLES, MAX_EPISODES = 128, 64, 100, 4096
# Glyph samples drawn per character (a set of [characters * samples, size, size] floats).
MAX_SAMPLES = 200


def _int(settings: dict[str, Any], key: str, low: int, high: int) -> int:
    v = settings[key]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ValueError(f"{key}: must be an integer from {low} to {high}, got {v!r}")
    return v


class FewShot(Objective):
    name = "fewshot"
    metrics = ("acc",)
    test_metrics = ("loss", "acc")
    differentiable = False

    @classmethod
    def setting_defaults(cls) -> dict[str, Any]:
        return {
            "data": "glyphs",
            "size": 28,
            "way": 5,
            "shot": 1,
            "query": 5,
            "episodes": 16,
            "within_groups": True,
            "rule": "sgd",
            "head": "linear",
            "rule_settings": {},
            "test_episodes": 200,
            "samples": 20,
        }

    @classmethod
    def check_settings(cls, settings: dict[str, Any]) -> None:
        from lifetime.rules import make_rule

        if settings["data"] not in DATA:
            raise ValueError(
                f"data: {settings['data']!r} is not valid; valid values: {', '.join(DATA)}"
            )
        _int(settings, "size", 4, MAX_SIZE)
        way = _int(settings, "way", 2, MAX_WAY)
        if settings["data"] in ("digits", "mnist"):
            from tasks.labelled import DIGIT_SPLITS

            n = min(len(DIGIT_SPLITS["background"]), len(DIGIT_SPLITS["evaluation"]))
            if way > n:
                raise ValueError(
                    f"way: {way}-way episodes need {way} classes; the background and "
                    f"evaluation digits have {n} each; valid: 2 to {n}"
                )
        for key in ("shot", "query"):
            _int(settings, key, 1, MAX_EXAMPLES)
        for key in ("episodes", "test_episodes"):
            _int(settings, key, 1, MAX_EPISODES)
        samples = _int(settings, "samples", 0, MAX_SAMPLES)
        need = settings["shot"] + settings["query"]
        if settings["data"] == "glyphs" and 0 < samples < need:
            raise ValueError(
                f"samples: an episode takes shot + query = {need} samples of each character, "
                f"but samples = {samples} are drawn per character; valid: 0 (a fresh sample "
                f"for every image) or {need} to {MAX_SAMPLES}"
            )
        if not isinstance(settings["within_groups"], bool):
            raise ValueError(
                f"within_groups: must be true or false, got {settings['within_groups']!r}"
            )
        if settings["head"] not in HEADS:
            raise ValueError(
                f"head: {settings['head']!r} is not valid; valid values: {', '.join(HEADS)}"
            )
        rule_settings = settings["rule_settings"]
        if not isinstance(rule_settings, dict):
            raise ValueError(
                f"rule_settings: must be a table (lr, steps, ...), got {rule_settings!r}"
            )
        try:
            make_rule(settings["rule"], **rule_settings)
        except (ValueError, TypeError) as e:
            raise ValueError(f"rule: {e}") from None

    def __init__(
        self, *, batch_size: int = 256, device: str = "cpu", seed: int = 0, **settings: Any
    ):
        super().__init__(
            batch_size=batch_size, device=device, dataset=settings.get("data", "glyphs"), seed=seed
        )
        unknown = sorted(set(settings) - set(self.setting_defaults()))
        if unknown:
            valid = ", ".join(self.setting_defaults())
            raise ValueError(f"objective 'fewshot': unknown setting(s) {unknown}; valid: {valid}")
        self.settings = {**self.setting_defaults(), **settings}
        self.check_settings(self.settings)
        self.seed = int(seed)

    def check_layers(self, n_layers: int) -> None:
        rule = self._rule()
        if rule is not None and self.settings["head"] == "all":
            try:
                rule.check_layers(n_layers)
            except ValueError as e:
                raise ValueError(f"rule: {e}") from None

    def _rule(self):
        from lifetime.rules import make_rule

        if self.settings["head"] == "prototype":
            return None
        return make_rule(self.settings["rule"], **self.settings["rule_settings"])

    def _source(self, split: str):
        key = f"_data_{split}"
        if getattr(self, key, None) is None:
            from tasks.episodes import check_episode_shape, load_source

            s = self.settings
            source = load_source(s["data"], split, self.input_shape, self.device)
            if s["data"] == "glyphs" and s["samples"]:
                from tasks.glyphs import drawn_glyphs

                # The background set is the run's (seed); the test's is every run's (0).
                seed = self.seed if split == "background" else 0
                source = drawn_glyphs(source, s["samples"], seed)
            check_episode_shape(source, s["way"], s["shot"], s["query"], s["within_groups"])
            setattr(self, key, source)
        return getattr(self, key)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.settings["size"], self.settings["size"])

    @property
    def n_outputs(self) -> int:
        return int(self.settings["way"])

    def _episodes(self, split: str, seed: int, n: int):
        from tasks.episodes import draw_episodes

        s = self.settings
        return draw_episodes(
            self._source(split),
            way=s["way"],
            shot=s["shot"],
            query=s["query"],
            seed=seed,
            split=split,
            indices=n,
            within_groups=s["within_groups"],
        ).to(self.device)

    def batch(self, generator: torch.Generator, batch_size: int | None = None) -> Any:
        """This generation's episodes of the background classes (`batch_size` is not used:
        the number of episodes is the objective's `episodes`)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        return self._episodes("background", seed, self.settings["episodes"])

    def _score(self, phenotype: Phenotype, episodes: Any) -> dict[str, torch.Tensor]:
        from lifetime.fewshot import scores

        acc, loss = scores(phenotype, episodes, self._rule(), self.settings["head"])
        dtype, device = phenotype.dtype, phenotype.device
        return {
            "loss": loss.mean(dim=1).to(device, dtype),
            "acc": acc.mean(dim=1).to(device, dtype),
        }

    def evaluate(self, phenotype: Phenotype, batch: Any) -> dict[str, torch.Tensor]:
        m = self._score(phenotype, batch)
        return {self.name: m["loss"], "acc": m["acc"]}

    def test(self, phenotype: Phenotype) -> dict[str, torch.Tensor]:
        if getattr(self, "_data_test", None) is None:
            self._data_test = self._episodes("evaluation", 0, self.settings["test_episodes"])
        return self._score(phenotype, self._data_test)
