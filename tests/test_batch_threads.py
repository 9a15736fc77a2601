"""``models.inference.run_batches``: batches read and run on several threads, results in order,
the caller's torch thread count restored; models and encoders give the same numbers that way."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from napari_xhisto.models.inference import batch_scheme, batch_threads, run_batches


def test_results_come_in_job_order_and_torch_threads_are_restored():
    before = torch.get_num_threads()
    seen = []

    def read(job):
        time.sleep(0.02 * (job % 3))  # later jobs can finish first
        return np.full(4, job)

    def forward(x):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return x * 10

    out = list(run_batches(range(9), read, forward, workers=3))
    assert [job for job, *_ in out] == list(range(9))
    assert all((res == 10 * job).all() for job, res, _, _ in out)
    assert all(r >= 0 and f >= 0 for _, _, r, f in out)
    assert {n for _, n in seen} == {1}  # one torch thread per batch thread
    assert threading.get_ident() not in {t for t, _ in seen}
    assert torch.get_num_threads() == before


def test_readers_only_runs_the_forward_here_with_all_threads():
    before = torch.get_num_threads()
    where = []
    out = list(run_batches(range(5), lambda j: j, lambda x: where.append(
        (threading.get_ident(), torch.get_num_threads())) or x + 1, workers=2,
        forward_in_threads=False))
    assert [r for _, r, _, _ in out] == [1, 2, 3, 4, 5]
    assert where == [(threading.get_ident(), before)] * 5


def test_closing_early_drops_batches_not_started():
    started = []

    def read(job):
        started.append(job)
        time.sleep(0.01)
        return job

    gen = run_batches(range(100), read, lambda x: x, workers=2, prefetch=3)
    assert next(gen)[0] == 0
    gen.close()
    time.sleep(0.1)
    assert len(started) < 10


def test_the_scheme_follows_device_model_and_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert batch_threads() == 2
        assert batch_scheme("cpu") == (True, 2)
        assert batch_scheme("cpu", parallel_batches=False)[0] is False
        assert batch_scheme("cuda")[0] is False
        torch.set_num_threads(1)  # a widget on 2 cores: readers beside the model instead
        readers = batch_scheme("cpu")
        assert readers[0] is False and 1 <= readers[1] <= 4
        torch.set_num_threads(12)
        assert batch_threads() == 8
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["contrastive", "supervised"])
def test_encoders_give_the_same_codes_on_several_threads(kind):
    """Several threads encode at once from a fresh encoder: its lazily built normalisation
    must be whole when another thread uses it, and the supervised encoder's feature hook must
    give each thread its own batch's features."""
    from napari_xhisto.nic.encoders import load_encoder

    enc = load_encoder(kind)  # fresh: its lazily built state is built by the threads below
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (8, enc.patch_px, enc.patch_px, 3), np.uint8)
               for _ in range(6)]
    together = threading.Barrier(3)

    def read(k):
        if k < 3:
            together.wait(timeout=10)  # the first three batches start encoding at once
        return batches[k]

    got = [z for _, z, _, _ in run_batches(range(6), read,
                                           lambda x: enc.encode(x, batch_size=8), workers=3)]
    ref = [enc.encode(b, batch_size=8) for b in batches]
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


def test_model_probabilities_match_on_several_threads():
    from napari_xhisto.models.loading import load_model

    model = load_model("demo", device="cpu")
    s = model.spec.network_input_size
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (8, s, s, 3), np.uint8) for _ in range(5)]
    ref = [model.predict_proba(b) for b in batches]
    got = [p for _, p, _, _ in run_batches(range(5), lambda k: batches[k],
                                           model.predict_proba, workers=2)]
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)
