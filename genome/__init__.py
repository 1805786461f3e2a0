"""genome: a compressed genome grows the wiring of a much larger network.

Layouts place neurons in space; decoders (`DECODERS`) turn a population of
flat genomes [P, D] into a batched `Phenotype`; `wiring` measures and draws
the grown network; `files` saves and loads genomes as safetensors.
"""

from genome.blocks import Block, GenomeBlocks
from genome.decoders import DECODERS, Decoder, decoder_class, make_decoder
from genome.files import GenomeFile, GenomeFileError, load_genome, save_genome
from genome.layout import CODES, Layout, Sheet
from genome.phenotype import Phenotype
from genome.wiring import distances, wiring_cost

__all__ = [
    "CODES",
    "DECODERS",
    "Block",
    "Decoder",
    "GenomeBlocks",
    "GenomeFile",
    "GenomeFileError",
    "Layout",
    "Phenotype",
    "Sheet",
    "decoder_class",
    "distances",
    "load_genome",
    "make_decoder",
    "save_genome",
    "wiring_cost",
]
