"""Search algorithms by name (seeded PyGlove DNA generators) and their replay.

A generator's state is never pickled. On resume it is rebuilt by replaying the
store's history (proposals and feedbacks in their recorded order) into a fresh
generator with the same seed, which reproduces the uninterrupted run exactly.
"""

import logging
from typing import Callable, Dict, List

import pyglove as pg

from trainer import store as store_lib

ALGORITHMS = ('random', 'grid', 'regularized_evolution')


def make_algorithm(name: str, seed: int, population_size: int = 20,
                   tournament_size: int = 5) -> pg.DNAGenerator:
  """A fresh, seeded generator; ValueError naming the valid ones if unknown."""
  if name == 'random':
    return pg.geno.Random(seed=seed)
  if name == 'grid':
    return pg.geno.Sweeping()
  if name == 'regularized_evolution':
    if not 2 <= tournament_size <= population_size:
      raise ValueError('regularized_evolution needs 2 <= --tournament_size '
                       '<= --population_size')
    return pg.evolution.regularized_evolution(
        mutator=pg.evolution.mutators.Uniform(seed=seed),
        population_size=population_size, tournament_size=tournament_size,
        seed=seed)
  raise ValueError(f'unknown algorithm {name!r}; valid: {", ".join(ALGORITHMS)}')


def replay(algorithm: pg.DNAGenerator, trials: List[store_lib.Trial],
           to_params: Callable[[pg.DNA], str],
           from_params: Callable[[str], pg.DNA]) -> Dict[int, pg.DNA]:
  """Replays recorded trials into a set-up generator; returns DNA by trial id.

  Each trial's proposal is re-made after as many feedbacks as it originally
  saw. Should a generator not reproduce a recorded DNA (say, an unseeded user
  algorithm), the recorded one wins, carrying the proposal's metadata.
  """
  rewarded = sorted((t for t in trials if t.feedback_seq is not None),
                    key=lambda t: t.feedback_seq)
  proposals: Dict[int, pg.DNA] = {}
  fed = 0

  def feed_until(num_feedbacks: int) -> None:
    nonlocal fed
    while fed < min(num_feedbacks, len(rewarded)):
      trial = rewarded[fed]
      algorithm.feedback(proposals[trial.id], trial.reward)
      fed += 1

  for trial in trials:
    feed_until(trial.proposed_after)
    dna = algorithm.propose()
    if to_params(dna) != trial.nas_params_str:
      logging.warning('algorithm replay diverged at trial %d; using the '
                      'recorded architecture', trial.id)
      recorded = from_params(trial.nas_params_str)
      for key, value in dna.metadata.items():
        recorded.set_metadata(key, value)
      dna = recorded
    proposals[trial.id] = dna
  feed_until(len(rewarded))
  return proposals
