"""Real images for FID: an EG3D-layout dataset, as a folder or a zip, with its optional ``dataset.json``.

As in the original's ``ImageFolderDataset``: every file with an image extension, at any depth, sorted by its
relative path (``/``-separated), is one image; ``dataset.json`` (either label layout, see ``eg3d_core.labels``) gives
the 25-number camera of each image by that relative path. All images must be RGB (or greyscale) squares of one
resolution.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..labels import parse_labels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
LABEL_FILE = "dataset.json"


@dataclass
class ImageDataset:
    """``names`` (sorted relative paths), ``labels`` [N, 25] float32 or None, ``resolution`` (of the first image)."""

    path: Path
    names: list[str]
    labels: np.ndarray | None
    resolution: int
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def _bytes(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self.path / name).read_bytes()

    def image(self, index: int) -> torch.Tensor:
        """uint8 [3, R, R]; raises InputError for an unreadable image or one of another size."""
        from PIL import Image

        name = self.names[index]
        try:
            with Image.open(io.BytesIO(self._bytes(name))) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: cannot read image {name!r} ({e})") from None
        if arr.shape[:2] != (self.resolution, self.resolution):
            raise InputError(f"{self.path}: image {name!r} is {arr.shape[1]}x{arr.shape[0]}, the dataset's images "
                             f"are {self.resolution}x{self.resolution}")
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def images(self, indices: range | list[int]) -> torch.Tensor:
        """uint8 [len(indices), 3, R, R]."""
        return torch.stack([self.image(i) for i in indices])

    def content_hash(self) -> str:
        """SHA-256 over every image's relative path and content (for a zip: the stored CRC-32 and size, which
        identify the content without decompressing it)."""
        h = hashlib.sha256()
        for name in self.names:
            h.update(name.encode() + b"\0")
            if self._zip is not None:
                info = self._zip.getinfo(name)
                h.update(f"{info.CRC:08x}:{info.file_size}".encode())
            else:
                h.update(hashlib.sha256(self._bytes(name)).digest())
        return h.hexdigest()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _labels(path: Path, text: bytes | None, names: list[str]) -> np.ndarray | None:
    if text is None:
        return None
    import json

    try:
        _, pairs = parse_labels(json.loads(text.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: {LABEL_FILE} is not valid JSON ({e})") from None
    except InputError as e:
        raise InputError(f"{path}: {LABEL_FILE}: {e}") from None
    table = {name.replace("\\", "/"): values for name, values in pairs}
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"{path}: {LABEL_FILE} has no label for {len(missing)} image(s), e.g. {missing[0]!r}")
    return np.asarray([table[n] for n in names], dtype=np.float32)


def open_dataset(path: str | os.PathLike[str]) -> ImageDataset:
    """Open a dataset folder or zip; raises InputError (one line) if it has no images or unusable labels."""
    from PIL import Image

    path = Path(path).expanduser()
    zf = None
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        label_file = path / LABEL_FILE
        label_text = label_file.read_bytes() if label_file.is_file() else None
    elif path.is_file() and zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        members = [i.filename for i in zf.infolist() if not i.is_dir()]
        names = sorted(n for n in members if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        label_text = zf.read(LABEL_FILE) if LABEL_FILE in members else None
    elif path.exists():
        raise InputError(f"{path}: not a dataset folder or zip (for precomputed statistics use a .npz file)")
    else:
        raise InputError(f"{path}: no such dataset")
    try:
        if not names:
            raise InputError(f"{path}: no images found")
        data = ImageDataset(path=path, names=names, labels=None, resolution=0, _zip=zf)
        try:
            with Image.open(io.BytesIO(data._bytes(names[0]))) as im:
                width, height = im.size
        except OSError as e:
            raise InputError(f"{path}: cannot read image {names[0]!r} ({e})") from None
        if width != height:
            raise InputError(f"{path}: image {names[0]!r} is {width}x{height}, not square")
        data.resolution = width
        data.labels = _labels(path, label_text, names)
        return data
    except BaseException:
        if zf is not None:
            zf.close()
        raise
