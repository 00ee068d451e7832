"""The site's reading worklist against queueing theory.

The harness drives the project's own machinery: ``SiteModel.read`` puts a ``ReadTask`` on the
site's ``simpy.FilterStore`` worklist and ``SiteModel.reader_loop`` serves it with
``read_exam`` (which draws the read time from the keyed ``read.minutes`` stream). Only two
things are changed for the theory checks, and only in the harness:

* working hours are switched off (readers on duty around the clock, every day), because
  Erlang-C and Pollaczek-Khinchine describe a queue that is always open;
* for the M/M/c check, the reader's read-time law is exponential (a ``Reader`` subclass);
  the project's radiologists read in log-normal time, which is checked against the exact
  M/G/1 (Pollaczek-Khinchine) formula with the unmodified ``Reader``.

Arrivals are Poisson, drawn from keyed streams, so every check is deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest
import simpy

import sandbox.workflow.site as site_module
from sandbox.agents.readers import Reader
from sandbox.programmes import programme_for
from sandbox.programmes.lung_ldct.disease import sample_history
from sandbox.programmes.lung_ldct.reading import Prior
from sandbox.rng import Streams, declare_streams, exam_key
from sandbox.workflow import Exam, SiteModel, SiteSetup, is_workday, make_policy
from sandbox.workflow.site import DAY_START

declare_streams({"queue.*": "the queueing harness's arrivals"})

MINUTES_PER_DAY = 1440.0


@dataclass(frozen=True)
class ExponentialReader(Reader):
    """A reader whose read time is exponential with mean ``read_minutes_median`` (harness only)."""

    def read_minutes(self, u: float) -> float:
        return -self.read_minutes_median * math.log(u)


def make_reader(k: int, minutes: float, sigma: float = 0.0, cls: type[Reader] = Reader) -> Reader:
    return cls(
        reader_id=k,
        site=0,
        profile="queue",
        c50=10.0,
        slope=2.0,
        fp_per_exam=0.0,
        fp_size_median_mm=5.0,
        size_error_sd_mm=0.5,
        size_bias_mm=0.0,
        read_minutes_median=minutes,
        read_minutes_sigma=sigma,
    )


@pytest.fixture(scope="module")
def tiny_history(small_cfg):
    return sample_history(small_cfg.scenario, Streams(0), 5)


def make_site(
    cfg, history, readers, hours: float, policy=None
) -> tuple[simpy.Environment, SiteModel]:
    scn = cfg.scenario
    site = dataclasses.replace(scn.sites[0], reading_hours_per_day=hours)
    env = simpy.Environment()
    setup = SiteSetup(
        index=0,
        site=site,
        readers=readers,
        programme=programme_for(scn),
        cohort=history,
        rows=np.arange(len(history)),
        schedule=scn.programme,
        policy=policy or make_policy(cfg.policy),
        streams=Streams(99),
    )
    model = SiteModel(env, setup)
    for r in readers:
        env.process(model.reader_loop(r))
    return env, model


def new_exam(model: SiteModel, person: int, day: float) -> Exam:
    return Exam(model, 0, person, 0, 0, "screen", day, day, [], Prior({}), exam_key(0, 0))


def run_queue(env, model, n: int, rate_per_day: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson arrivals of single reads; returns (arrival, service start, service minutes)."""
    gaps = Streams(2025).exponential("queue.arrivals", np.arange(n)) / rate_per_day
    arrive, start, minutes = np.zeros(n), np.full(n, np.nan), np.zeros(n)

    def source():
        for i in range(n):
            yield env.timeout(gaps[i])
            arrive[i] = env.now
            done = model.read(new_exam(model, 1_000_000 + i, env.now), 0)

            def finished(ev, i=i):
                minutes[i] = ev.value.minutes
                start[i] = env.now - ev.value.minutes / MINUTES_PER_DAY

            done.callbacks.append(finished)

    env.process(source())
    env.run()
    return arrive, start, minutes


def erlang_c_wait(c: int, lam: float, mu: float) -> float:
    """Mean wait in queue of M/M/c (Erlang-C)."""
    a = lam / mu
    top = a**c / math.factorial(c) * c / (c - a)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def batch_se(x: np.ndarray, batches: int = 20) -> float:
    means = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(means.std(ddof=1) / math.sqrt(batches))


@pytest.fixture
def always_open(monkeypatch):
    monkeypatch.setattr(site_module, "DAY_START", 0.0)
    monkeypatch.setattr(site_module, "is_workday", lambda day: True)


@pytest.mark.parametrize("c, rho", [(1, 0.7), (3, 0.75), (5, 0.8)])
def test_mean_wait_matches_erlang_c(small_cfg, tiny_history, always_open, c, rho):
    mean_minutes = 3.0
    mu = MINUTES_PER_DAY / mean_minutes
    lam = rho * c * mu
    readers = [make_reader(k, mean_minutes, cls=ExponentialReader) for k in range(c)]
    env, model = make_site(small_cfg, tiny_history, readers, hours=24.0)
    arrive, start, minutes = run_queue(env, model, 40_000, lam)
    assert not np.isnan(start).any()  # every read was served
    assert minutes.mean() == pytest.approx(mean_minutes, rel=0.03)
    wait = (start - arrive)[2000:]  # drop the warm-up
    assert wait.min() >= -1e-9
    expected = erlang_c_wait(c, lam, mu)
    assert wait.mean() == pytest.approx(expected, abs=max(4 * batch_se(wait), 0.05 * expected))
    # utilisation: busy reader-time over available reader-time
    assert minutes.sum() / MINUTES_PER_DAY / (env.now * c) == pytest.approx(rho, rel=0.05)


def test_mean_wait_with_lognormal_reads_matches_pollaczek_khinchine(
    small_cfg, tiny_history, always_open
):
    # the project's own Reader: log-normal read times, one radiologist (M/G/1 is exact)
    median, sigma, rho = 3.0, 0.4, 0.7
    es = median * math.exp(sigma**2 / 2) / MINUTES_PER_DAY
    es2 = (median / MINUTES_PER_DAY) ** 2 * math.exp(2 * sigma**2)
    lam = rho / es
    env, model = make_site(small_cfg, tiny_history, [make_reader(0, median, sigma)], hours=24.0)
    arrive, start, _ = run_queue(env, model, 40_000, lam)
    wait = (start - arrive)[2000:]
    expected = lam * es2 / (2 * (1 - rho))
    assert wait.mean() == pytest.approx(expected, abs=max(4 * batch_se(wait), 0.05 * expected))


def test_reads_start_only_in_working_hours(small_cfg, tiny_history):
    hours = 4.0
    readers = [make_reader(k, 3.0, 0.35) for k in range(2)]
    env, model = make_site(small_cfg, tiny_history, readers, hours=hours)
    arrive, start, minutes = run_queue(
        env, model, 3000, 150.0
    )  # arrivals round the clock, 7 days a week
    assert np.all(start >= arrive - 1e-9)
    day = np.floor(start + 1e-12)
    frac = start - day
    assert all(is_workday(int(d)) for d in day)
    assert np.all(frac >= DAY_START - 1e-9)
    assert np.all(frac < DAY_START + hours / 24 + 1e-9)
    # reader time used never exceeds the time on duty (plus the read in progress at closing)
    for r in readers:
        assert model.reader_minutes[r.reader_id] > 0


def make_fp_reader(k: int) -> Reader:
    # calls a spurious 8 mm nodule on half the exams, so two reads disagree about half the time
    return dataclasses.replace(make_reader(k, 3.0, 0.35), fp_per_exam=0.5, fp_size_median_mm=8.0)


def run_policy(cfg, history, policy, n_readers: int, n: int = 300):
    env, model = make_site(
        cfg, history, [make_fp_reader(k) for k in range(n_readers)], hours=24.0, policy=policy
    )
    decisions = []

    def one(i):
        d = yield from policy.process(model, new_exam(model, 5_000 + i, env.now))
        decisions.append(d)

    for i in range(n):
        env.process(one(i))
    env.run()
    assert len(decisions) == n
    return decisions


def test_double_read_arbitration_goes_to_a_third_reader(small_cfg, tiny_history, always_open):
    decisions = run_policy(small_cfg, tiny_history, make_policy(small_cfg.policy), 3)
    assert 0 < sum(d.arbitrated for d in decisions) < len(decisions)
    for d in decisions:
        ids = [r.reader_id for r in d.reads]
        assert len(ids) == len(set(ids))  # nobody reads the same exam twice
        first, second = d.reads[0], d.reads[1]
        if d.arbitrated:
            assert first.positive != second.positive and len(d.reads) == 3 and d.final is d.reads[2]
        else:
            assert first.positive == second.positive and len(d.reads) == 2
            assert d.final.category == max(first.category, second.category)


def test_double_read_consensus_is_reviewed_by_the_negative_reader(
    load_config, tiny_history, always_open
):
    cfg = load_config("policy=soc_double_read_consensus", "runtime=quiet")[0]
    decisions = run_policy(cfg, tiny_history, make_policy(cfg.policy), 2)
    discordant = [d for d in decisions if d.arbitrated]
    assert discordant
    for d in discordant:
        r1, r2, review = d.reads
        negative = r1 if not r1.positive else r2
        assert review.reader_id == negative.reader_id
        assert review.slot == 2
        # the consensus keeps only findings the positive reader reported
        positive = r2 if negative is r1 else r1
        assert {f.key for f in d.final.findings} <= {f.key for f in positive.findings}
