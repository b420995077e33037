"""A run's logs: ``log.jsonl`` (one JSON dict per logging step), TensorBoard events, and the progress line.

    log = RunLog("runs/quick")
    log.resume_at(500)          # forget what a killed run logged after its last checkpoint (step 500)
    log.write(dict(step=510, d_loss=...))

Each step is logged once. A run killed between checkpoints had already logged steps past the checkpoint it will
resume from; the resumed run redoes those steps (exactly: see sagan_tut.train) and logs them again. So on resume
:meth:`RunLog.resume_at` rewrites ``log.jsonl`` and the TensorBoard event files without the records past the
restored step, each file atomically (written aside, then renamed over the original), before anything new is
written. TensorBoard itself would only hide the repeated scalars in some of its loaders; rewriting the files makes
every reader (TensorBoard, ``tf.compat.v1.train.summary_iterator``, pandas, a plot of log.jsonl) see each step once.

Records that are not a logging step (e.g. ``{"event": "config_change", "at_step": 500, ...}``, written when a run
resumes with new optimisation settings) carry ``at_step`` instead of ``step`` so that readers keyed on ``step``
(sagan_tut.viz.read_log) never confuse them with the metrics of that step.

TensorBoard events are written with TF's low-level ``tf.summary.write`` and the plugin metadata TensorBoard
expects, so training does not need the tensorboard package (only viewing the events does).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import atomic


def write_text_atomic(path: Path, text: str):
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new one, never a mix."""
    atomic.write_text(path, text)


def record_step(record: dict):
    """The step a log record belongs to (``step`` for metrics, ``at_step`` for events), or None."""
    return record.get("step", record.get("at_step"))


# ----------------------------------------------------------------------------------------------------------------
# TensorBoard
# ----------------------------------------------------------------------------------------------------------------
def _tb_metadata(plugin: str, data_class: str):
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    meta.data_class = getattr(summary_pb2, data_class)
    return meta


def tb_scalar(tag: str, value: float, step: int):
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                     metadata=_tb_metadata("scalars", "DATA_CLASS_SCALAR"))


def tb_image(tag: str, image_uint8: np.ndarray, step: int):
    """One (H, W, 3) uint8 image, stored as TensorBoard's image plugin does: [width, height, png]."""
    height, width = image_uint8.shape[:2]
    png = tf.io.encode_png(image_uint8)
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])
    tf.summary.write(tag, tensor, step=step, metadata=_tb_metadata("images", "DATA_CLASS_BLOB_SEQUENCE"))


def read_events(path, with_status: bool = False):
    """The ``Event`` protos of one events file; a record cut short by a kill ends the file (``with_status``:
    also return whether the file was whole)."""
    # tf.data's record reader, not tf.compat.v1.train.summary_iterator: that one prints a deprecation warning
    # into the user's output (and the book) the first time it runs.
    from tensorflow.core.util import event_pb2

    events, whole = [], True
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            events.append(event_pb2.Event.FromString(record.numpy()))
    except tf.errors.DataLossError:
        whole = False
    return (events, whole) if with_status else events


def truncate_events(tb_dir, step: int) -> int:
    """Drop summaries past ``step`` from every events file in ``tb_dir`` (``step=0``: all of them, a run starting
    over); events without summaries (the file-version header) stay. Returns the number of summaries dropped."""
    dropped = 0
    for path in sorted(Path(tb_dir).glob("*tfevents*")):
        events, whole = read_events(path, with_status=True)
        keep = [e for e in events if not e.summary.value or (step > 0 and e.step <= step)]
        if len(keep) == len(events) and whole:
            continue
        dropped += len(events) - len(keep)
        # The temp name has no "tfevents" in it, so TensorBoard never reads the half-written copy.
        tmp = path.with_name(f".rewrite-{path.name.replace('tfevents', 'tfev')}.tmp")
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for event in keep:
                writer.write(event.SerializeToString())
        os.replace(tmp, path)
    return dropped


def truncate_jsonl(path, step: int) -> int:
    """Drop the records of ``log.jsonl`` past ``step`` (``step=0``: all) and a line cut short by a kill.
    Returns the number of lines dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            at = record_step(json.loads(line))
        except json.JSONDecodeError:
            continue
        if step > 0 and (at is None or at <= step):
            keep.append(line)
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(k + "\n" for k in keep))
    return len(lines) - len(keep)


def model_scalars(**models) -> dict:
    """``gamma/<tag>/<layer>`` of each attention layer and ``sigma/<tag>/<layer>`` (the current sigma estimate of
    the raw kernel) of each top-level spectrally normalised layer, for ``model_scalars(G=G, D=D)``."""
    from .attention import SelfAttention
    from .spectral_norm import SpectralNormalization

    out = {}
    for tag, model in models.items():
        for layer in model.layers:
            if isinstance(layer, SelfAttention):
                out[f"gamma/{tag}/{layer.name}"] = float(layer.gamma.numpy())
        for layer in model.layers:
            if isinstance(layer, SpectralNormalization):
                out[f"sigma/{tag}/{layer.name}"] = float(layer.compute_sigma().numpy())
    return out


class RunLog:
    """``log.jsonl`` and the TensorBoard events of a run directory (written by the chief only)."""

    def __init__(self, out_dir, enabled: bool = True):
        self.out_dir, self.enabled = Path(out_dir), enabled
        self.path, self.tb_dir = self.out_dir / "log.jsonl", self.out_dir / "tb"
        self._writer = None

    def resume_at(self, step: int) -> int:
        """Forget every record past ``step``, the step a resumed run restarts from; returns how many went."""
        if not self.enabled:
            return 0
        if self._writer is not None:  # never rewrite a file that a writer of ours still appends to
            self._writer.close()
            self._writer = None
        return truncate_jsonl(self.path, step) + truncate_events(self.tb_dir, step)

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.tb_dir))
        return self._writer

    def write(self, record: dict, scalars: bool = True):
        """Append ``record`` to log.jsonl; with ``scalars``, its numbers also go to TensorBoard at its step."""
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if scalars and "step" in record:
            with self.writer.as_default():
                for key, value in record.items():
                    if key != "step" and isinstance(value, (int, float)):
                        tb_scalar(key, value, record["step"])
            self.writer.flush()

    def image(self, tag: str, image_uint8: np.ndarray, step: int):
        if not self.enabled:
            return
        with self.writer.as_default():
            tb_image(tag, image_uint8, step)
        self.writer.flush()

    def flush(self):
        if self._writer is not None:
            self._writer.flush()


class Progress:
    """A one-line ``\\r`` progress bar: step, steps/s, ETA and the latest losses (no dependency)."""

    def __init__(self, total: int, start: int, enabled: bool = True, stream=None, min_interval: float = 0.5,
                 clock=time.perf_counter):
        self.total, self.enabled, self.stream = total, enabled, stream or sys.stdout
        self.min_interval, self.clock = min_interval, clock
        self.t0, self.s0, self.last = clock(), start, 0.0
        self.text = ""

    def update(self, step: int, info: str = "", force: bool = False):
        now = self.clock()
        if not self.enabled or (not force and now - self.last < self.min_interval):
            return
        self.last = now
        rate = (step - self.s0) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        eta_text = "?" if math.isinf(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        width = 20
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {step}/{self.total} {rate:.2f} steps/s ETA {eta_text} {info}"
        self.stream.write("\r" + text.ljust(len(self.text)))
        self.stream.flush()
        self.text = text

    def close(self):
        if self.enabled and self.text:
            self.stream.write("\n")
            self.stream.flush()
            self.text = ""


__all__ = ["RunLog", "model_scalars", "Progress", "tb_scalar", "tb_image", "read_events", "truncate_events", "truncate_jsonl",
           "write_text_atomic", "record_step"]
