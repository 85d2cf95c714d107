"""JobSampler: each job's draw is the draw ``torch.multinomial`` makes, from its own generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers import TopKLogitsWarper, TopPLogitsWarper

from dgx_music.generation.sampling import JobSampler, SamplingComplete, SamplingJob

torch.set_num_threads(1)

#: Vocabulary of the test distributions (MusicGen's codebooks hold 2048; a small one keeps
#: every expected count of the chi-squared test large).
VOCAB = 12
#: Draws per distribution in the chi-squared tests: ROWS rows (as if codebooks) a step.
DRAWS = 20_000
ROWS = 1_000
#: Below this p-value the two samplers are taken to differ (the tests use fixed seeds, so this
#: is a fixed outcome, not a flaky one).
P_FLOOR = 1e-3


def job(seed: int = 0, steps: int = 10_000_000, **fields: float) -> SamplingJob:
    values = {"temperature": 1.0, "top_k": 0, "top_p": 0.0, "guidance_scale": 1.0, **fields}
    return SamplingJob(seed=seed, steps=steps, **values)  # type: ignore[arg-type]


def draw(sampler: JobSampler, scores: torch.Tensor) -> torch.Tensor:
    """One step: the one-hot the library sees, checked, and the winners."""
    out = sampler(torch.zeros((scores.shape[0], 1), dtype=torch.long), scores)
    assert torch.isfinite(out).all(), "the library's guidance sum would turn -inf into NaN"
    winners = sampler.tokens[-1].flatten()
    halves = 2 if sampler.guided else 1
    assert torch.equal(out.argmax(dim=-1), winners.repeat(halves))
    return winners


def sample_many(logits: torch.Tensor, one: SamplingJob) -> torch.Tensor:
    """DRAWS tokens from ``logits`` under ``one``'s warping, ROWS at a time."""
    sampler = JobSampler([one], num_codebooks=ROWS, guided=False)
    scores = logits[None].repeat(ROWS, 1)
    return torch.cat([draw(sampler, scores.clone()) for _ in range(DRAWS // ROWS)])


def counts_of(tokens: torch.Tensor) -> np.ndarray:
    return np.bincount(tokens.numpy(), minlength=VOCAB)


def multinomial_counts(logits: torch.Tensor) -> np.ndarray:
    generator = torch.Generator().manual_seed(1234)
    picks = torch.multinomial(logits.softmax(-1), DRAWS, replacement=True, generator=generator)
    return counts_of(picks)


def assert_same_distribution(ours: np.ndarray, reference: np.ndarray) -> None:
    """Chi-squared test of our counts against the reference sampler's on the same support."""
    support = (ours + reference) > 0
    table = np.vstack([ours[support], reference[support]])
    expected = table.sum(axis=0) / 2
    _, p_value = chisquare(table.ravel(), np.concatenate([expected, expected]), ddof=support.sum())
    assert p_value > P_FLOOR, f"our counts {ours} vs torch.multinomial {reference}: p={p_value}"


@pytest.fixture(scope="module")
def logits() -> torch.Tensor:
    return torch.randn(VOCAB, generator=torch.Generator().manual_seed(7)) * 2


@pytest.mark.parametrize(
    "fields",
    [{}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_k": 4}, {"top_p": 0.6}],
    ids=["plain", "cold", "hot", "top-k", "top-p"],
)
def test_draws_follow_the_warped_distribution(logits: torch.Tensor, fields: dict[str, float]):
    winners = sample_many(logits, job(**fields))
    # The reference: transformers' own warpers, then torch.multinomial.
    warped = logits[None] / fields.get("temperature", 1.0)
    if fields.get("top_k"):
        warped = TopKLogitsWarper(int(fields["top_k"]))(None, warped)
    if fields.get("top_p"):
        warped = TopPLogitsWarper(fields["top_p"])(None, warped)
    reference = multinomial_counts(warped[0])
    ours = counts_of(winners)
    assert (ours[reference == 0] == 0).all() or fields == {}, "a warped-out token was drawn"
    assert_same_distribution(ours, reference)


def test_a_wrong_distribution_is_caught(logits: torch.Tensor):
    # The check itself can fail: a temperature of 1 against the reference of 2 is refused.
    winners = sample_many(logits, job())
    with pytest.raises(AssertionError, match="multinomial"):
        assert_same_distribution(counts_of(winners), multinomial_counts(logits / 2))


def test_guidance_combines_the_halves_with_each_jobs_scale():
    conditional = torch.tensor([[0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    unconditional = torch.tensor([[0.0, 0.0, 6.0], [6.0, 0.0, 0.0]])
    scores = torch.cat([conditional, unconditional])
    # Job 0 with guidance 3: u + 3 (c - u) favours token 1 by 12 - (-12); job 1 with scale 1
    # takes the conditional half alone (token 2).
    sampler = JobSampler(
        [job(0, guidance_scale=3.0), job(1, guidance_scale=1.0)], num_codebooks=1, guided=True
    )
    picks = torch.stack([draw(sampler, scores.clone()) for _ in range(200)])
    assert (picks[:, 0] == 1).float().mean() > 0.99
    assert (picks[:, 1] == 2).float().mean() > 0.9


def test_each_job_draws_the_same_tokens_whatever_shares_the_batch(logits: torch.Tensor):
    scores = logits[None].repeat(4, 1)  # 2 codebooks for each of 2 jobs
    alone = JobSampler([job(5, top_k=6)], num_codebooks=2, guided=False)
    together = JobSampler([job(9, top_p=0.9), job(5, top_k=6)], num_codebooks=2, guided=False)
    for _ in range(50):
        draw(alone, scores[:2].clone())
        draw(together, scores.clone())
    assert torch.equal(torch.stack(alone.tokens)[:, 0], torch.stack(together.tokens)[:, 1])
    assert not torch.equal(torch.stack(together.tokens)[:, 0], torch.stack(together.tokens)[:, 1])


def test_progress_per_job_and_a_failing_job_drops_out_alone(logits: torch.Tensor):
    seen: dict[str, list[tuple[int, int]]] = {"short": [], "long": []}

    def failing(done: int, total: int) -> None:
        raise RuntimeError("cancelled")

    jobs = [
        dataclasses.replace(job(1, steps=3), progress=lambda d, t: seen["short"].append((d, t))),
        dataclasses.replace(job(2, steps=4), progress=failing),
        dataclasses.replace(job(3, steps=5), progress=lambda d, t: seen["long"].append((d, t))),
    ]
    sampler = JobSampler(jobs, num_codebooks=1, guided=False)
    scores = logits[None].repeat(3, 1)
    for _ in range(4):
        draw(sampler, scores.clone())
    with pytest.raises(SamplingComplete):
        draw(sampler, scores.clone())
    assert seen["short"] == [(1, 3), (2, 3)]
    assert seen["long"] == [(1, 5), (2, 5), (3, 5), (4, 5)]
    assert isinstance(sampler.errors[1], RuntimeError) and sampler.errors[0] is None
    assert sampler.steps_done == 5


def test_codes_follow_the_delay_pattern():
    sampler = JobSampler([job(0)], num_codebooks=4, guided=False)
    sampler.tokens = [torch.full((1, 4), step) + torch.arange(4) * 100 for step in range(6)]
    codes = sampler.codes(0, frames=3, delays=[0, 1, 2, 3])
    assert codes.tolist() == [[0, 1, 2], [101, 102, 103], [202, 203, 204], [303, 304, 305]]
    stereo = sampler.codes(0, frames=3, delays=[0, 0, 1, 1])
    assert stereo[1].tolist() == [100, 101, 102] and stereo[2].tolist() == [201, 202, 203]
