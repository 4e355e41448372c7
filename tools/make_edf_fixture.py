#!/usr/bin/env python3
"""Writes data/edf/208-10s-pyedflib.edf: the first 10 s of MIT-BIH record 208 (both leads) as
EDF+, written by a third-party library (pyedflib, which wraps Teunis van Beelen's EDFlib), for
the EDF reader's tests. The digital values are the record's ADC values and the physical range is
chosen so that EDF's scaling gives exactly WFDB's (adc - 1024) / 200 mV. Beat annotations of the
10 s go in as EDF+ annotations (onset in s, text = the MIT code's mnemonic).

    pip install pyedflib wfdb
    python3 tools/make_edf_fixture.py        # run from the repository root
"""

import numpy as np
import pyedflib
import wfdb

record = wfdb.rdrecord("data/mitdb/208", sampto=3600, physical=False)
ann = wfdb.rdann("data/mitdb/208", "atr", sampto=3600)
fs = int(record.fs)
headers = []
for i, name in enumerate(record.sig_name):
    gain, base = record.adc_gain[i], record.baseline[i]
    dmin, dmax = 0, 2047
    headers.append({
        "label": name,
        "dimension": "mV",
        "sample_frequency": fs,
        "physical_min": (dmin - base) / gain,
        "physical_max": (dmax - base) / gain,
        "digital_min": dmin,
        "digital_max": dmax,
        "transducer": "",
        "prefilter": "",
    })
with pyedflib.EdfWriter("data/edf/208-10s-pyedflib.edf", len(headers),
                        file_type=pyedflib.FILETYPE_EDFPLUS) as w:
    w.setSignalHeaders(headers)
    # EDFlib stores one annotation per data record and annotation signal: 10 one-second records
    # need two annotation signals for the 17 beats of the first 10 s
    w.set_number_of_annotation_signals(2)
    w.setPatientCode("MIT-BIH 208")
    w.writeSamples([record.d_signal[:, i].astype(np.int32) for i in range(len(headers))],
                   digital=True)
    for sample, symbol in zip(ann.sample, ann.symbol):
        w.writeAnnotation(sample / fs, -1, symbol)
