"""Decoders: genome -> weights. One file each; `DECODERS` maps name -> class."""

from __future__ import annotations

from typing import Any

from genome.decoders.base import Decoder
from genome.decoders.connectome import Connectome
from genome.decoders.cppn import CPPN
from genome.decoders.direct import Direct
from genome.decoders.gnet import GNet
from genome.layout import Layout

DECODERS: dict[str, type[Decoder]] = {cls.name: cls for cls in (GNet, Connectome, CPPN, Direct)}


def decoder_class(name: str) -> type[Decoder]:
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; valid decoders: {', '.join(DECODERS)}")
    return DECODERS[name]


def make_decoder(name: str, layout: Layout, **settings: Any) -> Decoder:
    """A decoder by registry name, e.g. make_decoder("gnet", layout, hidden=[8, 8])."""
    return decoder_class(name)(layout, **settings)


__all__ = [
    "CPPN",
    "DECODERS",
    "Connectome",
    "Decoder",
    "Direct",
    "GNet",
    "decoder_class",
    "make_decoder",
]
