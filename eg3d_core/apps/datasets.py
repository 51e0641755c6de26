"""Camera-label files: conversion between the official ``dataset.json`` and MMagic's annotation JSON.

Parsing and validation are the library's (``eg3d_core.labels``): every entry is checked before anything is
written, and the first bad entry is named in the error; the output is written to a temporary file and renamed
into place, so a refused or failed conversion creates nothing.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import InputError
from ..fileio import write_json
from ..labels import Labels, read_labels

LAYOUTS = ("official", "mmagic")


def to_layout(labels: Labels, layout: str) -> dict[str, Any]:
    """Validated labels -> the document of ``layout`` (``official`` or ``mmagic``)."""
    if layout == "official":
        return {"labels": [[name, values] for name, values in labels]}
    if layout == "mmagic":
        return {name: values for name, values in labels}
    raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def convert_labels(src: str | os.PathLike[str], dst: str | os.PathLike[str], to: str | None = None) -> tuple[str, str, int]:
    """Convert a label file; ``to`` None converts official -> mmagic and mmagic -> official.

    Returns (input layout, output layout, number of labels).
    """
    layout, labels = read_labels(src)
    target = to or ("mmagic" if layout == "official" else "official")
    write_json(to_layout(labels, target), dst)
    return layout, target, len(labels)


__all__ = ["LAYOUTS", "convert_labels", "to_layout"]
