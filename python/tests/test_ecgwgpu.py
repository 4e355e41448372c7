"""The installed package (never the source folder: run from anywhere but python/src) against
the command line, wfdb-python and bad input. `.ci/run` builds the wheel, installs it in a fresh
venv and runs these with ECGWGPU_BIN naming the `ecgwgpu` binary of the same checkout."""

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ecgwgpu

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "mitdb"
RECORD = DATA / "208"


def binary() -> str:
    found = os.environ.get("ECGWGPU_BIN") or shutil.which("ecgwgpu")
    if not found:
        for build in ("release", "debug"):
            candidate = ROOT / "target" / build / "ecgwgpu"
            if candidate.exists():
                found = str(candidate)
                break
    assert found, "set ECGWGPU_BIN to the ecgwgpu binary of this checkout"
    return found


@pytest.fixture(scope="module")
def clf():
    return ecgwgpu.Classifier()


@pytest.fixture(scope="module")
def from_file(clf):
    return clf.classify_file(RECORD)


def test_imported_from_the_installed_package():
    assert "site-packages" in ecgwgpu.__file__, ecgwgpu.__file__


def test_classify_file_writes_predicts_csv_byte_for_byte(from_file, tmp_path):
    out = tmp_path / "preds"
    subprocess.run([binary(), "predict", "--record", str(RECORD), "--out-dir", str(out)],
                   check=True, capture_output=True)
    cli = (out / "208_pred.csv").read_bytes()
    assert from_file.to_csv().encode() == cli
    assert len(from_file) > 2900
    assert from_file.annotated
    assert from_file.counts()["V"] > 500
    written = from_file.to_csv(tmp_path / "py.csv")
    assert (tmp_path / "py.csv").read_text() == written


def test_a_wfdb_record_and_annotation_give_the_files_probabilities(clf, from_file):
    wfdb = pytest.importorskip("wfdb")
    record = wfdb.rdrecord(str(RECORD))
    annotation = wfdb.rdann(str(RECORD), "atr")
    result = clf.classify(record, annotations=annotation)
    assert np.array_equal(result.sample, from_file.sample)
    assert np.array_equal(result.probabilities, from_file.probabilities)  # bit for bit
    assert np.array_equal(result.predicted, from_file.predicted)
    assert np.array_equal(result.reference, from_file.reference)


def test_r_peaks_from_the_caller_or_the_detector(clf, from_file):
    rec = ecgwgpu.read_record(RECORD)
    assert rec.lead == "MLII" and rec.fs == 360.0
    detected = clf.classify(rec.signal, rec.fs)
    assert not detected.annotated and (detected.reference == -1).all()
    assert abs(len(detected) - len(from_file)) < len(from_file) // 20
    peaks = from_file.sample[::2]
    given = clf.classify(rec.signal, rec.fs, r_peaks=peaks)
    assert np.array_equal(given.sample, peaks)
    assert (given.reference == -1).all(), "R peaks alone are positions, not references"
    two_d = np.stack([rec.signal, rec.signal * 0], axis=1)
    assert np.array_equal(clf.classify(two_d, rec.fs, channel=0).probabilities,
                          detected.probabilities)


def test_results_as_pandas_and_confidence(from_file):
    pd = pytest.importorskip("pandas")
    df = from_file.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(from_file)
    assert list(df.columns[:3]) == ["sample", "reference", "predicted"]
    assert ((from_file.confidence >= 0) & (from_file.confidence <= 1)).all()


def test_progress_is_reported_and_an_exception_in_it_stops_the_work(clf):
    seen = []
    clf.classify_file(RECORD, progress=lambda stage, done, total: seen.append(stage))
    assert "classifying" in seen

    class Cancel(Exception):
        pass

    def cancel(stage, done, total):
        raise Cancel("enough")

    with pytest.raises(Cancel):
        clf.classify_file(RECORD, progress=cancel)


def test_the_lock_is_released_while_the_gpu_works(clf):
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.01)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    clf.classify_file(RECORD)
    done.set()
    t.join()
    during = [x for x in ticks if x > start + 0.5]
    assert len(during) > 10, "another Python thread ran while classifying"


def test_bad_inputs_raise_the_documented_exceptions(clf, tmp_path):
    with pytest.raises(FileNotFoundError):
        clf.classify_file(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        ecgwgpu.Classifier(tmp_path / "none.safetensors")
    for ext in ("hea", "atr"):
        shutil.copy(DATA / f"208.{ext}", tmp_path / f"208.{ext}")
    (tmp_path / "208.dat").write_bytes((DATA / "208.dat").read_bytes()[:1000])
    with pytest.raises(ecgwgpu.EcgDataError) as bad:
        clf.classify_file(tmp_path / "208")
    assert "208.dat" in str(bad.value)
    assert issubclass(ecgwgpu.EcgDataError, ValueError)
    signal = np.zeros(3600, dtype=np.float32)
    signal[100] = np.nan
    with pytest.raises(ValueError, match="sample 100 is NaN"):
        clf.classify(signal, 360)
    with pytest.raises(ValueError, match="fs"):
        clf.classify(np.zeros(3600), 0)
    with pytest.raises(ValueError, match="channel"):
        clf.classify(np.zeros((3600, 2)), 360)
    with pytest.raises(ValueError, match="r_peaks"):
        clf.classify(np.zeros(3600), 360, r_peaks=[5000])
    with pytest.raises(ValueError, match="unknown train setting 'epoch'"):
        ecgwgpu.train(tmp_path / "run", data_dir=DATA, epoch=1)
    with pytest.raises(TypeError, match="epochs"):
        ecgwgpu.train(tmp_path / "run", data_dir=DATA, epochs="one")
    # nothing above broke the classifier
    assert len(clf.classify(np.sin(np.arange(36000) / 20.0) ** 31, 360)) >= 0


def test_train_writes_a_checkpoint_that_loads_and_evaluate_reproduces(tmp_path):
    epochs = []
    out = tmp_path / "tiny"
    metrics = ecgwgpu.train(out, data_dir=DATA, preset="tiny", epochs=1, lr=1e-3,
                            callback=epochs.append)
    assert [e["epoch"] for e in epochs] == [1]
    checkpoint = out / "best.safetensors"
    clf = ecgwgpu.Classifier(checkpoint)
    assert clf.members == 1
    assert ecgwgpu.Classifier(checkpoint.read_bytes()).class_names == clf.class_names
    evaluated = json.loads(subprocess.run(
        [binary(), "evaluate", "--json", "--checkpoint", str(checkpoint)],
        check=True, capture_output=True, text=True).stdout)
    assert evaluated["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)


def test_an_exception_in_the_train_callback_stops_the_run(tmp_path):
    class Stop(Exception):
        pass

    def stop(epoch):
        raise Stop("enough")

    with pytest.raises(Stop):
        ecgwgpu.train(tmp_path / "stopped", data_dir=DATA, preset="tiny", epochs=3, lr=1e-3,
                      callback=stop)
    history = json.loads((tmp_path / "stopped" / "history.json").read_text())
    assert len(history) == 1


def test_ctrl_c_stops_training_at_the_next_batch_naming_the_last_good_checkpoint(tmp_path):
    import signal
    import sys

    script = tmp_path / "train.py"
    # a shell that starts jobs in the background without job control (as CI runners may)
    # hands its children SIGINT ignored, and Python then installs no handler of its own
    script.write_text(
        "import signal, sys, ecgwgpu\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "def show(epoch):\n"
        "    print('epoch', epoch['epoch'], flush=True)\n"
        "try:\n"
        f"    ecgwgpu.train({str(tmp_path / 'run')!r}, data_dir={str(DATA)!r}, preset='tiny',\n"
        "                  epochs=50, lr=1e-3, callback=show)\n"
        "except KeyboardInterrupt as e:\n"
        "    print('interrupted:', e, *getattr(e, '__notes__', []), flush=True)\n"
        "    sys.exit(3)\n")
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().startswith("epoch 1")
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 3, out
    assert "last good checkpoint" in out and "last.safetensors" in out, out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert 1 <= len(history) < 50
