"""Benchmark readers that all produce the lamar-hf schema (see :mod:`lamar_hf.data.schema`)."""

from .amazon2014 import download_amazon2014, read_amazon2014
from .amazon2023 import download_amazon2023, read_amazon2023
from .benchmark import Benchmark, load_prepared
from .errors import DataError
from .p5 import read_p5
from .schema import ITEM_FEATURES, PADDING_ITEM_ID, SEQUENCE_FEATURES
from .splits import leave_one_out, split_fingerprint, user_sequences

SOURCES = {"amazon2014": read_amazon2014, "amazon2023": read_amazon2023, "p5": read_p5}


def prepare(source: str, path, **kwargs) -> Benchmark:
    """Read a benchmark with the reader of ``source`` (``amazon2014``, ``amazon2023`` or ``p5``)."""
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[source](path, **kwargs)


__all__ = [
    "Benchmark",
    "DataError",
    "ITEM_FEATURES",
    "PADDING_ITEM_ID",
    "SEQUENCE_FEATURES",
    "SOURCES",
    "download_amazon2014",
    "download_amazon2023",
    "leave_one_out",
    "load_prepared",
    "prepare",
    "read_amazon2014",
    "read_amazon2023",
    "read_p5",
    "split_fingerprint",
    "user_sequences",
]
