"""Each job's own random draw inside transformers' MusicGen decoding loop.

transformers samples with ``torch.multinomial`` from torch's global generator, so two jobs that
generate at once (two threads, or two rows of one batch) would share one stream of random numbers
and neither would be reproducible. :class:`JobSampler` takes the draw over: MusicGen's ``generate``
runs greedy (``do_sample=False``) and calls it once per decoding step with the raw scores, and it

1. combines the conditional and unconditional halves with each job's guidance scale (the rows
   arrive as 2·B·K: the conditional half first, each half laid out batch × codebook);
2. warps them with each job's temperature, top-k and top-p (as transformers' warpers do);
3. draws each job's tokens by the Gumbel-max rule (``argmax(logits + G)``, ``G = -log(-log U)``
   with ``U`` uniform, which picks token *i* with probability ``softmax(logits)[i]``) with noise
   from the job's own ``torch.Generator``, the same amount of it every step, whatever else is
   in the batch;
4. writes a finite one-hot of the winners into both halves, so the library's guidance processor
   (which runs after this one) and its argmax keep exactly those tokens. ``-inf`` would turn the
   guidance sum ``u + g·(c - u)`` into NaN.

It also records the tokens (so the codes never have to be read back from the library) and
reports each job's progress; after the last step a job needs it stops the loop with
:class:`SamplingComplete`, which skips the library's decode of the padded batch: each job's codes
are decoded at their own length instead (EnCodec is not causal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dgx_music.generation.request import ProgressCallback


class SamplingComplete(Exception):
    """Raised by :class:`JobSampler` after the last step: ends ``generate`` before its decode."""


@dataclass(frozen=True, kw_only=True)
class SamplingJob:
    """One job's rows of a batch.

    Parameters
    ----------
    seed
        Seeds the job's own ``torch.Generator``.
    steps
        Decoding steps the job needs (frames plus the codebook delay).
    temperature, top_k, top_p, guidance_scale
        As in :class:`dgx_music.generation.request.GenerationRequest`: top_k 0 and top_p 0 (or
        1) are off, guidance 1 is off.
    progress
        Called with (steps done, ``steps``) after each of the job's steps, below ``steps``; the
        backend reports the end itself once the audio is decoded.
    generator
        The job's generator when it already has one (the windows of a long track draw from one
        stream, so the seed reproduces the whole track); otherwise one is seeded from ``seed``.
    """

    seed: int
    steps: int
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    progress: ProgressCallback | None = None
    generator: torch.Generator | None = None


class JobSampler:
    """A logits processor that draws every job's tokens from its own generator.

    Parameters
    ----------
    jobs
        The batch's jobs, in row order.
    num_codebooks
        Codebooks per job (4 mono, 8 stereo): each job owns that many consecutive rows.
    guided
        Whether the library passes the unconditional half too (its guidance scale is > 1).
    device
        Where the scores are; each job's generator lives there.

    Attributes
    ----------
    tokens
        The winners of every step, each of shape (jobs, codebooks).
    errors
        What each job's progress callback raised (a cancelled job, a lost lease), or ``None``;
        such a job takes no further part, and the loop stops when no job is left.
    """

    def __init__(
        self,
        jobs: Sequence[SamplingJob],
        *,
        num_codebooks: int,
        guided: bool,
        device: torch.device | str = "cpu",
    ) -> None:
        self.jobs = list(jobs)
        self.num_codebooks = num_codebooks
        self.guided = guided
        self.device = torch.device(device)
        self.generators = [
            job.generator
            if job.generator is not None
            else torch.Generator(device=self.device).manual_seed(job.seed)
            for job in self.jobs
        ]
        self.tokens: list[torch.Tensor] = []
        self._stacked: torch.Tensor | None = None
        self.errors: list[BaseException | None] = [None] * len(self.jobs)
        rows = [(job, row) for job in self.jobs for row in range(num_codebooks)]
        self._guidance = self._column([job.guidance_scale for job, _ in rows])
        temperature = [job.temperature for job, _ in rows]
        self._temperature = self._column(temperature) if set(temperature) != {1.0} else None
        # Top-k: each row keeps its own k-th largest logit; 0 (or the whole vocabulary) is off.
        top_k = [job.top_k for job, _ in rows]
        self._top_k_largest = max(top_k)
        self._top_k_column = torch.tensor(
            [max(k - 1, 0) for k in top_k], device=self.device
        ).unsqueeze(1)
        self._top_k_off = torch.tensor([k == 0 for k in top_k], device=self.device).unsqueeze(1)
        # Top-p: 0 and 1 are off (transformers' off is 1).
        top_p = [job.top_p if 0 < job.top_p < 1 else 1.0 for job, _ in rows]
        self._top_p = self._column(top_p) if any(p < 1 for p in top_p) else None

    def _column(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device).unsqueeze(1)

    @property
    def steps_done(self) -> int:
        return len(self.tokens)

    def active(self, index: int) -> bool:
        """Whether job ``index`` still needs steps and has not dropped out."""
        return self.errors[index] is None and self.steps_done < self.jobs[index].steps

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows = len(self.jobs) * self.num_codebooks
        logits = scores.float()
        if self.guided:
            conditional, unconditional = logits[:rows], logits[rows:]
            logits = unconditional + (conditional - unconditional) * self._guidance
        winners = self._draw(self._warp(logits))
        self.tokens.append(winners.view(len(self.jobs), self.num_codebooks))
        self._report()
        if not any(self.active(index) for index in range(len(self.jobs))):
            raise SamplingComplete
        # The library hands over a copy of the step's logits: overwrite it in place, each half.
        scores.fill_(torch.finfo(scores.dtype).min)
        index = winners.unsqueeze(1)
        for half in scores.split(rows):
            half.scatter_(1, index, 0.0)
        return scores

    def _warp(self, logits: torch.Tensor) -> torch.Tensor:
        """Temperature, then top-k, then top-p, row by row (transformers' warpers' rules)."""
        if self._temperature is not None:
            logits = logits / self._temperature
        vocab = logits.shape[-1]
        if self._top_k_largest > 0:
            kth = torch.topk(logits, min(self._top_k_largest, vocab), dim=-1).values
            floor = kth.gather(1, self._top_k_column.clamp(max=vocab - 1))
            # Ties at the k-th stay; a k of 0 or beyond the vocabulary keeps every token.
            floor = floor.masked_fill(self._top_k_off | (self._top_k_column >= vocab), -torch.inf)
            logits = logits.masked_fill(logits < floor, -torch.inf)
        if self._top_p is not None:
            ordered, order = torch.sort(logits, descending=False, dim=-1)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative <= 1 - self._top_p
            drop[:, -1] = False  # the most likely token always stays
            logits = logits.masked_fill(drop.scatter(1, order, drop), -torch.inf)
        return logits

    def _draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Each job's winners from its own generator: one (codebooks, vocab) draw per step."""
        noise = torch.empty_like(logits, dtype=torch.float32)
        for rows, generator in zip(noise.split(self.num_codebooks), self.generators, strict=True):
            rows.uniform_(generator=generator)
        # Gumbel noise -log(-log U): the same draw as -log E with E ~ Exp(1), at a third of the
        # cost of exponential_ on the CPU (which samples element by element).
        return noise.log_().neg_().log_().neg_().add_(logits).argmax(dim=-1)

    def _report(self) -> None:
        done = self.steps_done
        for index, job in enumerate(self.jobs):
            if job.progress is None or self.errors[index] is not None or done >= job.steps:
                continue
            try:
                job.progress(done, job.steps)
            except Exception as exc:
                self.errors[index] = exc

    def codes(self, index: int, frames: int, delays: Sequence[int]) -> torch.Tensor:
        """Job ``index``'s codes, (codebooks, frames): codebook *k* of frame *f* was drawn at
        step ``f + delays[k]`` (MusicGen's delay pattern)."""
        if self._stacked is None or len(self._stacked) != len(self.tokens):
            # Once per loop, not once per job: (steps, jobs, codebooks).
            self._stacked = torch.stack(self.tokens)
        drawn = self._stacked[:, index]  # (steps, codebooks)
        return torch.stack(
            [drawn[delay : delay + frames, book] for book, delay in enumerate(delays)]
        )
