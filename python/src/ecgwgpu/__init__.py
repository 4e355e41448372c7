"""ecgwgpu: heartbeat classification (AAMI N, S, V, F, Q) on any GPU, from Python.

    import ecgwgpu
    clf = ecgwgpu.Classifier()                  # the shipped model
    result = clf.classify_file("mitdb/208")     # WFDB or EDF/EDF+, streamed
    result.counts()                             # {'N': 1586, 'S': 2, 'V': 992, ...}
    result.to_pandas()                          # one row per beat

Arrays, wfdb-python records and annotations, and R peaks from any detector (NeuroKit2's, say)
go in through ``Classifier.classify``. The work runs in Rust on the GPU (or Mesa's software
Vulkan without one) with Python's lock released.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _native
from ._native import EcgDataError, NoGpuError

__all__ = [
    "Classifier",
    "Result",
    "EcgDataError",
    "NoGpuError",
    "read_record",
    "devices",
    "train",
    "Record",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[str, int, int], Any]


class Result:
    """The beats of one recording: numpy arrays, one entry per beat."""

    def __init__(self, native: "_native.Classified"):
        self._native = native
        self.class_names: List[str] = list(native.class_names)
        self.sample: np.ndarray = native.sample
        self.predicted: np.ndarray = native.predicted
        self.reference: np.ndarray = native.reference
        self.probabilities: np.ndarray = native.probabilities
        self.rr: np.ndarray = native.rr
        self.rr_names: List[str] = list(native.rr_names)
        self.confidence: np.ndarray = native.confidence
        self.warnings: List[str] = list(native.warnings)
        self.annotated: bool = native.annotated

    def __len__(self) -> int:
        return len(self.sample)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"<ecgwgpu.Result: {len(self)} beats ({counts})>"

    def counts(self) -> Dict[str, int]:
        """Beats per decided class."""
        found = np.bincount(self.predicted, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, found)}

    def to_csv(self, path: Optional[PathLike] = None) -> str:
        """The CSV `ecgwgpu predict` writes, byte for byte; written to `path` when given."""
        text = self._native.to_csv()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_pandas(self):
        """One row per beat (needs pandas): sample, reference, predicted, p_<class>, the R–R
        features, confidence."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("to_pandas needs pandas: pip install pandas") from e
        names = self.class_names
        frame = {
            "sample": self.sample,
            "reference": [names[r] if r >= 0 else None for r in self.reference],
            "predicted": [names[p] for p in self.predicted],
        }
        for k, name in enumerate(names):
            frame[f"p_{name}"] = self.probabilities[:, k]
        for k, name in enumerate(self.rr_names):
            frame[name] = self.rr[:, k]
        frame["confidence"] = self.confidence
        return pd.DataFrame(frame)


class Record:
    """One lead of a recording as ``read_record`` returns it."""

    def __init__(self, signal, fs, lead, annotation_samples, annotation_symbols):
        self.signal: np.ndarray = signal
        self.fs: float = fs
        self.lead: str = lead
        self.annotation_samples: np.ndarray = annotation_samples
        self.annotation_symbols: List[str] = list(annotation_symbols)

    def __repr__(self) -> str:
        return (f"<ecgwgpu.Record: lead {self.lead}, {len(self.signal)} samples at {self.fs} Hz, "
                f"{len(self.annotation_samples)} annotations>")


def read_record(path: PathLike, lead: Optional[str] = None) -> Record:
    """One lead of a WFDB record (path without extension) or EDF/EDF+ file, in physical units,
    with its annotations. `lead` is a preference list such as "MLII,II"; the first signal
    when the record has none of them."""
    return Record(*_native.read_record(os.fspath(path), lead or "MLII"))


def devices() -> List[str]:
    """Every GPU adapter wgpu sees, one line each."""
    return list(_native.devices())


class Classifier:
    """A trained network ready to classify: the shipped model by default, or a checkpoint
    (a path or the bytes of a .safetensors file) written by ``ecgwgpu train``.

    ``device`` picks the GPU adapter as ``ecgwgpu --device`` does (an index from ``devices()``
    or part of its line); the fastest one by default."""

    def __init__(self, checkpoint: Union[None, PathLike, bytes] = None, *,
                 device: Optional[str] = None):
        if checkpoint is not None and not isinstance(checkpoint, (bytes, bytearray)):
            checkpoint = os.fspath(checkpoint)
        elif isinstance(checkpoint, bytearray):
            checkpoint = bytes(checkpoint)
        self._native = _native.Classifier(checkpoint, device=device)

    @property
    def class_names(self) -> List[str]:
        return list(self._native.class_names)

    @property
    def preprocessing(self) -> Dict[str, Any]:
        """What the checkpoint expects: beat mode, rate, window, lead, classes, task."""
        return json.loads(self._native.preprocessing_json)

    @property
    def members(self) -> int:
        """Networks in the ensemble (1 for a single network)."""
        return self._native.members

    def classify(self, signal, fs: Optional[float] = None, *, r_peaks=None, annotations=None,
                 channel: Optional[int] = None, progress: Optional[Progress] = None) -> Result:
        """Classifies one lead.

        `signal`: a 1-D array-like (one lead), a 2-D one ([samples, channels], with `channel`),
        or a ``wfdb.Record`` (the lead chosen as the CLI chooses it, unless `channel`).
        `fs`: samples per second (taken from a wfdb.Record). R peaks: `annotations` (a
        ``wfdb.Annotation``: its beats become the reference), else `r_peaks` (sample indices,
        e.g. NeuroKit2's), else the built-in QRS detector. `progress(stage, done, total)` is
        called as the work goes; an exception it raises stops the work and comes back."""
        name, lead = "signal", None
        if hasattr(signal, "p_signal") or hasattr(signal, "d_signal"):
            record = signal
            name = getattr(record, "record_name", None) or name
            names = list(getattr(record, "sig_name", None) or [])
            if channel is None:
                channel = _native.choose_lead(names, self.preprocessing.get("lead", "MLII"))
                if channel is None:
                    channel = 0
            lead = names[channel] if channel < len(names) else None
            if fs is None:
                fs = float(record.fs)
            data = record.p_signal if record.p_signal is not None else record.d_signal
            signal = np.asarray(data)[:, channel]
        else:
            signal = np.asarray(signal)
            if signal.ndim == 2:
                if channel is None:
                    raise ValueError(
                        f"signal has shape {signal.shape}: give channel= to pick its lead")
                signal = signal[:, channel]
            elif signal.ndim != 1:
                raise ValueError(f"signal has {signal.ndim} dimensions: give one lead (1-D) "
                                 "or [samples, channels] (2-D) with channel=")
        if fs is None:
            raise ValueError("fs: give the sampling rate in Hz")
        fs = float(fs)
        if not fs > 0 or not np.isfinite(fs):
            raise ValueError(f"fs {fs}: the sampling rate must be a positive number of Hz")
        if not np.issubdtype(signal.dtype, np.number):
            raise ValueError(f"signal of dtype {signal.dtype}: give numbers")
        signal = np.ascontiguousarray(signal, dtype=np.float32)
        symbols = None
        if annotations is not None:
            r_peaks = np.asarray(annotations.sample, dtype=np.int64)
            symbols = [str(s) for s in annotations.symbol]
        elif r_peaks is not None:
            r_peaks = np.asarray(r_peaks, dtype=np.int64)
        peaks = None if r_peaks is None else [int(p) for p in r_peaks]
        native = self._native.classify_array(signal, fs, peaks, symbols, name=str(name),
                                             lead=lead, progress=progress)
        return Result(native)

    def classify_file(self, path: PathLike, progress: Optional[Progress] = None) -> Result:
        """A WFDB record (path without extension) or an EDF/EDF+ file, streamed in bounded
        memory: its annotated beats, or those the QRS detector finds."""
        return Result(self._native.classify_file(os.fspath(path), progress=progress))


# the settings `train` takes, with their types: the engine's one list (ecgwgpu::run::TRAIN_SETTINGS)
_TRAIN_TYPES = {name: {"str": str, "int": int, "float": float, "bool": bool}[kind]
                for name, kind in _native.train_settings()}


def train(out: PathLike, *, data_dir: Optional[PathLike] = None, lead: str = "MLII",
          views: Sequence[str] = (), device: Optional[str] = None,
          callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
          **settings: Any) -> Dict[str, Any]:
    """Trains as ``ecgwgpu train`` does, into the run directory `out`, and returns its
    metrics.json. The settings are the command's flags with underscores (``preset="tiny"``,
    ``epochs=1``, ``lr=1e-3``, ``split="inter"``, ``balanced_batches=True``, ...); an unknown
    one or a wrong type is refused. `callback(epoch)` gets each epoch's figures; an exception
    it raises, or Ctrl-C, stops the run at the next batch and comes back with the last good
    checkpoint named."""
    for name, value in settings.items():
        want = _TRAIN_TYPES.get(name)
        if want is None:
            raise ValueError(f"unknown train setting '{name}'; the settings are: "
                             + ", ".join(sorted(_TRAIN_TYPES)))
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise TypeError(f"train setting {name}={value!r}: expected {want.__name__}")
    if data_dir is None:
        data_dir = "data/mitdb"
    wrapped = None
    if callback is not None:
        def wrapped(record: str) -> None:
            callback(json.loads(record))
    metrics = _native.train(os.fspath(out), json.dumps(settings), data_dir=os.fspath(data_dir),
                            lead=lead, views=list(views), device=device, callback=wrapped)
    return json.loads(metrics)
