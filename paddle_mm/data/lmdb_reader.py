"""Chinese-CLIP's LMDB datasets (``lmdb/{split}/{imgs,pairs}``), read and written without a 1 TB map.

Layout, as cn_clip/preprocess/build_lmdb_dataset.py writes it and cn_clip/training/data.py reads it:

- ``imgs``: key ``b"<image_id>"`` -> base64 of the image bytes (cn_clip decodes with urlsafe_b64decode), plus
  ``b"num_images"`` -> the count as ASCII digits;
- ``pairs``: key ``b"<n>"`` (n = 0, 1, ...) -> ``pickle.dumps((image_id, text_id, text))``, one per (text,
  image) of the texts jsonl in file order, plus ``b"num_samples"``.

Differences from cn_clip, on purpose:

- **Map size.** cn_clip opens every environment with ``map_size=1024**4``; on Windows LMDB creates a data
  file of the full map size, so building needs 1 TB of free disk (Chinese-CLIP issue #281). Readers here
  open read-only with a map the size of ``data.mdb``; the writer starts from an estimate made from the input
  and doubles the map when LMDB reports it full.
- **No code from the data.** Pair records are unpickled by an unpickler that refuses every global, so a
  crafted LMDB can give wrong text but cannot run code; anything but ``(int, int, str)`` is a bad record.

``load_lmdb_corpus(root, split)`` returns a :class:`paddle_mm.data.corpus.ImageTextCorpus`, so training,
evaluation and tools use it like a TSV or folder split. Needs the ``lmdb`` package (``pip install lmdb``).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .corpus import ImageReadError, ImageTextCorpus, LoadReport, TextRecord, decode_image_payload

NUM_IMAGES_KEY = b"num_images"
NUM_SAMPLES_KEY = b"num_samples"
_MiB = 1 << 20


def _lmdb():
    try:
        import lmdb
    except ImportError as err:
        raise ImportError(
            "reading or writing Chinese-CLIP LMDB datasets needs the lmdb package: pip install lmdb"
        ) from err
    return lmdb


def readonly_map_size(env_dir: str | os.PathLike) -> int:
    """The map size to open an existing environment read-only: ``data.mdb``'s size rounded up to 1 MiB."""
    data = Path(env_dir) / "data.mdb"
    if not data.is_file():
        raise FileNotFoundError(f"{data} not found; expected an LMDB environment directory (data.mdb inside)")
    return max(_MiB, -(-data.stat().st_size // _MiB) * _MiB)


def open_readonly(env_dir: str | os.PathLike, shared: bool = True):
    """A read-only ``lmdb.Environment`` of ``env_dir`` with :func:`readonly_map_size`.

    lmdb refuses to open one environment twice in a process, so with ``shared`` (image reads) the process
    keeps one handle per directory: do not close it. ``shared=False`` returns a private handle to close.
    ``lock=False`` lets it read from read-only media and is safe because nothing writes while we read.
    """
    key = (os.getpid(), os.path.realpath(env_dir))  # a forked child must not use its parent's handle
    if shared and key in _OPEN_ENVS:
        return _OPEN_ENVS[key]
    env = _lmdb().open(
        str(env_dir),
        map_size=readonly_map_size(env_dir),
        readonly=True,
        create=False,
        lock=False,
        readahead=False,
        meminit=False,
        max_readers=512,  # one per reading thread; the default 126 is tight with many DataLoader workers
    )
    if shared:
        _OPEN_ENVS[key] = env
    return env


_OPEN_ENVS: dict[tuple[int, str], Any] = {}


# ----------------------------------------------------------------------------- safe pair records


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Builds only plain containers and scalars: any global (class, function) is refused before it is loaded."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a pair record: only (int, int, str) is valid")


def decode_pair(value: bytes) -> tuple[int, int, str]:
    """``(image_id, text_id, text)`` of one ``pairs`` value; ValueError for anything else."""
    try:
        obj = _NoGlobalsUnpickler(io.BytesIO(value)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise ValueError(f"not a valid pair pickle ({err})") from None
    ok = isinstance(obj, tuple) and len(obj) == 3 and isinstance(obj[2], str)
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in obj[:2]):
        raise ValueError(f"expected (image_id: int, text_id: int, text: str), got {obj!r:.80}")
    return obj


def encode_pair(image_id: int, text_id: int, text: str) -> bytes:
    """The ``pairs`` value cn_clip writes (protocol 4 so that Python >= 3.4 reads it)."""
    return pickle.dumps((int(image_id), int(text_id), str(text)), protocol=4)


# ----------------------------------------------------------------------------- reading


class _LmdbImages:
    """Images of an ``imgs`` environment, for ImageTextCorpus (same duck type as its TSV/folder sources)."""

    def __init__(self, env_dir: Path, report: LoadReport):
        self.env_dir = env_dir
        self.index: dict[int, bytes] = {}  # image_id -> key
        with open_readonly(env_dir).begin() as txn:
            declared = txn.get(NUM_IMAGES_KEY)
            for key in txn.cursor().iternext(values=False):
                self._index_key(bytes(key), report)
        if declared is not None and declared.isdigit() and int(declared) != len(self.index):
            report.add("image count mismatches", f"{env_dir}: num_images says {int(declared)}, found {len(self.index)}")

    def _index_key(self, key: bytes, report: LoadReport) -> None:
        if key == NUM_IMAGES_KEY:
            return
        try:
            image_id = int(key)
        except ValueError:
            report.add("image keys without an integer id", f"{self.env_dir}: key {key[:40]!r} is not an image id")
            return
        self.index[image_id] = key

    def read(self, image_id: int) -> bytes:
        where = f"image {image_id} ({self.env_dir})"
        with open_readonly(self.env_dir).begin() as txn:
            payload = txn.get(self.index[image_id])
        if payload is None:
            raise ImageReadError("unreadable", image_id, f"{where}: key vanished from the LMDB")
        return decode_image_payload(bytes(payload).strip(), image_id, where)

    def describe(self, image_id: int) -> str:
        return f"{self.env_dir}, key {self.index[image_id].decode()}"


def read_pairs(env_dir: Path, report: LoadReport) -> list[TextRecord]:
    """Texts of a ``pairs`` environment, in write order: one TextRecord per text id (first text wins)."""
    with open_readonly(env_dir, shared=False) as env, env.begin() as txn:  # read once, then closed
        declared = txn.get(NUM_SAMPLES_KEY)
        records = []
        for key, value in txn.cursor():
            key = bytes(key)
            if key == NUM_SAMPLES_KEY:
                continue
            if not key.isdigit():
                report.add("malformed pairs", f"{env_dir}: key {key[:20]!r} is not a pair index; skipped")
                continue
            records.append((int(key), bytes(value)))
    records.sort()  # keys sort as strings ("10" < "2"); the index is the jsonl order cn_clip wrote
    by_text: dict[int, TextRecord] = {}
    for index, value in records:
        try:
            image_id, text_id, text = decode_pair(value)
        except ValueError as err:
            report.add("malformed pairs", f"{env_dir} pair {index}: {err}; pair skipped")
            continue
        record = by_text.setdefault(text_id, TextRecord(text_id, text, []))
        if record.text != text:
            report.add("conflicting texts", f"{env_dir}: text id {text_id} has two texts; keeping the first")
        if image_id not in record.image_ids:
            record.image_ids.append(image_id)
    if declared is not None and bytes(declared).isdigit() and int(declared) != len(records):
        report.add("pair count mismatches", f"{env_dir}: num_samples says {int(declared)}, found {len(records)}")
    return list(by_text.values())


def lmdb_split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/lmdb/<split>`` (a dataset folder) or ``root/<split>`` (the lmdb folder itself), whichever holds imgs/."""
    root = Path(root)
    for candidate in (root / "lmdb" / split, root / split):
        if (candidate / "imgs").is_dir() and (candidate / "pairs").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no LMDB split {split!r} under {str(root)!r}: expected {root / 'lmdb' / split}/{{imgs,pairs}} or "
        f"{root / split}/{{imgs,pairs}} (build one with tools/build_lmdb.py)"
    )


def load_lmdb_corpus(root: str | os.PathLike, split: str) -> ImageTextCorpus:
    """Split ``split`` of a Chinese-CLIP LMDB dataset as an ImageTextCorpus (see :func:`lmdb_split_dir`)."""
    split_dir = lmdb_split_dir(root, split)
    report = LoadReport(f"{root} {split} (lmdb)")
    texts = read_pairs(split_dir / "pairs", report)
    return ImageTextCorpus(_LmdbImages(split_dir / "imgs", report), texts, report)


# ----------------------------------------------------------------------------- writing


class _Writer:
    """Puts key/value pairs in transactions of ``chunk`` items; doubles the map whenever LMDB says it is full."""

    def __init__(self, env_dir: Path, map_size: int, chunk: int = 1000):
        self.lmdb = _lmdb()
        env_dir.mkdir(parents=True, exist_ok=True)
        self.env = self.lmdb.open(str(env_dir), map_size=map_size, subdir=True, readahead=False, meminit=False)
        self.chunk, self.pending = chunk, []

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.append((key, value))
        if len(self.pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except self.lmdb.MapFullError:  # the transaction was aborted: grow and redo it
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.env.sync(True)
        self.env.close()


def _initial_map_size(payload_bytes: int, n_items: int) -> int:
    # base64 values + one B-tree/overflow page of slack per item + 16 MiB; grown by _Writer if short
    return max(16 * _MiB, int(payload_bytes * 1.1) + n_items * 4096 + 16 * _MiB)


def write_lmdb_split(
    out_dir: str | os.PathLike, images: Iterable[tuple[int, str]], pairs: Iterable[tuple[int, int, str]], size_hint: int
) -> tuple[int, int]:
    """Write ``out_dir/imgs`` from (image_id, base64 str) and ``out_dir/pairs`` from (image_id, text_id, text).

    ``size_hint`` (bytes of base64 expected, e.g. the TSV file size) sets the first map size. Returns
    (number of images, number of pairs).
    """
    out_dir = Path(out_dir)
    n_pairs = 0
    writer = _Writer(out_dir / "pairs", _initial_map_size(0, 0))
    for image_id, text_id, text in pairs:
        writer.put(str(n_pairs).encode(), encode_pair(image_id, text_id, text))
        n_pairs += 1
    writer.put(NUM_SAMPLES_KEY, str(n_pairs).encode())
    writer.close()
    n_images = 0
    writer = _Writer(out_dir / "imgs", _initial_map_size(size_hint, 0))
    for image_id, b64 in images:
        writer.put(str(int(image_id)).encode(), b64.encode("ascii"))
        n_images += 1
    writer.put(NUM_IMAGES_KEY, str(n_images).encode())
    writer.close()
    return n_images, n_pairs


def corpus_pairs(texts: Iterable[TextRecord]) -> Iterator[tuple[int, int, str]]:
    """(image_id, text_id, text) for every image of every text, in cn_clip's order."""
    for t in texts:
        for image_id in t.image_ids:
            yield image_id, t.text_id, t.text
