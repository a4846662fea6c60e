"""Search algorithms by name (seeded PyGlove DNA generators) and their replay.

A generator's state is never pickled. On resume it is rebuilt by replaying the
store's history (proposals and feedbacks in their recorded order) into a fresh
generator with the same seed, which reproduces the uninterrupted run exactly.
"""

import logging
import random
from typing import Any, Callable, Dict, Hashable, List, Optional

import pyglove as pg

from trainer.algorithms import ppo as ppo_lib
from trainer.controller import store as store_lib

ALGORITHMS = ('random', 'grid', 'regularized_evolution', 'evolution', 'ppo',
              'nsga2')
# The best single-objective choice on NAS-Bench-201 (bench/nasbench201.py).
DEFAULT_ALGORITHM = 'evolution'
# (population_size, tournament_size) where the caller gives None.
EVOLUTION_SIZES = {'regularized_evolution': (20, 5), 'evolution': (10, 10),
                   'nsga2': (10, None)}


@pg.members([
    ('seed', pg.typing.Int().noneable(), 'Seeds the choice of decision and '
     'candidate.'),
])
class OneDecisionMutator(pg.evolution.Mutator):
  """Moves exactly one decision of a DNA to another candidate.

  PyGlove's Uniform mutator may redraw a decision's own value, or the whole
  DNA; a child one decision away from its parent is the local step that
  evolution gains most from on NAS benchmarks. Sub-spaces that the new choice
  enables are drawn at random. A subchoice of a distinct multi-choice that
  takes a sibling's candidate swaps with it; one of a sorted multi-choice
  moves between its neighbours. A DNA with no other valid value comes back as
  it is. Spaces with float or custom decisions get PyGlove's Uniform mutation.
  """

  def _on_bound(self):
    super()._on_bound()
    self._random = random.Random(self.seed)
    self._uniform = pg.evolution.mutators.Uniform(seed=self.seed)
    self._spec, self._table = None, None

  def mutate(self, dna: pg.DNA, step: int = 0) -> pg.DNA:
    if dna.spec is not self._spec:
      self._spec = dna.spec
      try:
        self._table = ppo_lib.DecisionTable(dna.spec)
      except ValueError:
        self._table = None
    if self._table is None:
      return self._uniform.mutate(dna, step)
    table = self._table
    values = list(table.values_from_dna(dna))
    movable = [(t, others) for t in range(len(table)) if values[t] >= 0
               for others in [_other_candidates(table, t, values)] if others]
    if not movable:
      return dna
    t, others = self._random.choice(movable)
    old, new = values[t], self._random.choice(others)
    for sibling in table.group[t]:
      if values[sibling] == new:  # Only for distinct, unsorted choices.
        values[sibling] = old
    values[t] = new
    for u in range(len(table)):  # Redraw what the moves enabled or disabled.
      if not table.is_active(u, values):
        values[u] = -1
      elif values[u] < 0:
        allowed = table.candidates_mask(u, values).nonzero()[0]
        values[u] = int(self._random.choice(allowed))
    return table.to_dna(values)


def _other_candidates(table: ppo_lib.DecisionTable, t: int,
                      values: List[int]) -> List[int]:
  """The candidates step t may move to, everything else staying valid."""
  low, high = 0, table.num_candidates[t] - 1
  if table.sorted[t]:
    group, position = table.group[t], table.position[t]
    gap = int(table.distinct[t])
    if position > 0:
      low = values[group[position - 1]] + gap
    if position + 1 < len(group):
      high = values[group[position + 1]] - gap
  return [v for v in range(low, high + 1) if v != values[t]]


def _decisions_key(dna: pg.DNA) -> Hashable:
  """Same decisions, same key: unlike PyGlove's default hash, which also
  covers the DNA's metadata (proposal ids), so nothing would repeat."""
  return tuple(dna.to_numbers())


class _Deduped(pg.geno.Deduping):
  """Proposes no architecture already rewarded (by its decisions).

  PyGlove's Deduping always reports a single objective, so it would refuse
  the tuple rewards of a multi-objective generator inside it.
  """

  @property
  def multi_objective(self) -> bool:
    return self.generator.multi_objective


def _deduped(generator: pg.DNAGenerator,
             architecture_key: Optional[Callable[[pg.DNA], Hashable]]
             ) -> pg.DNAGenerator:
  return _Deduped(generator, hash_fn=architecture_key or _decisions_key)


def make_algorithm(name: str, seed: int, population_size: Optional[int] = None,
                   tournament_size: Optional[int] = None, *,
                   ppo_batch_size: Optional[int] = None,
                   ppo_epochs: Optional[int] = None,
                   ppo_learning_rate: Optional[float] = None,
                   ppo_entropy_weight: Optional[float] = None,
                   ppo_clip: Optional[float] = None,
                   architecture_key: Optional[Callable[[pg.DNA], Hashable]] = None
                   ) -> pg.DNAGenerator:
  """A fresh, seeded generator; ValueError naming the valid ones if unknown.

  'random' and 'grid' sample and sweep the space. 'regularized_evolution' is
  PyGlove's (Uniform mutator). 'evolution' is regularized evolution tuned for
  small budgets: one-decision mutations, no architecture evaluated twice (the
  search ends once 100 mutations in a row were all evaluated already), and
  a tournament of the whole population, so the parent is the best of the
  last `population_size` rewarded. 'ppo' is an LSTM controller trained with
  PPO (trainer/algorithms/ppo.py), whose settings left None take ppo.PPO's defaults.
  'nsga2' is PyGlove's NSGA-II with one-decision mutations and the same
  de-duplication, for rewards that are tuples of objectives, all maximised
  (a float is one objective). Population and tournament sizes left None take
  EVOLUTION_SIZES. Their de-duplication compares `architecture_key(dna)`
  (e.g. search_spaces.architecture_key for the space), else the decisions.
  """
  if name == 'random':
    return pg.geno.Random(seed=seed)
  if name == 'grid':
    return pg.geno.Sweeping()
  if name == 'ppo':
    settings = dict(batch_size=ppo_batch_size, epochs=ppo_epochs,
                    learning_rate=ppo_learning_rate,
                    entropy_weight=ppo_entropy_weight, clip=ppo_clip)
    return ppo_lib.PPO(seed=seed, **{key: value for key, value in
                                     settings.items() if value is not None})
  if name not in EVOLUTION_SIZES:
    raise ValueError(
        f'unknown algorithm {name!r}; valid: {", ".join(ALGORITHMS)}')
  default_population, default_tournament = EVOLUTION_SIZES[name]
  if population_size is None:
    population_size = default_population
  if name == 'nsga2':
    if population_size < 2:
      raise ValueError('nsga2 needs --population_size >= 2')
    return _deduped(pg.evolution.nsga2(
        mutator=OneDecisionMutator(seed=seed), population_size=population_size,
        seed=seed), architecture_key)
  if tournament_size is None:
    tournament_size = default_tournament
  if not 2 <= tournament_size <= population_size:
    raise ValueError(f'{name} needs 2 <= --tournament_size '
                     '<= --population_size')
  if name == 'regularized_evolution':
    return pg.evolution.regularized_evolution(
        mutator=pg.evolution.mutators.Uniform(seed=seed),
        population_size=population_size, tournament_size=tournament_size,
        seed=seed)
  return _deduped(pg.evolution.regularized_evolution(
      mutator=OneDecisionMutator(seed=seed), population_size=population_size,
      tournament_size=tournament_size, seed=seed), architecture_key)


def replay(algorithm: pg.DNAGenerator, trials: List[store_lib.Trial],
           to_params: Callable[[pg.DNA], str],
           from_params: Callable[[str], pg.DNA],
           feedback_value: Callable[[str, dict, float], Any] = (
               lambda status, metrics, reward: reward)) -> Dict[int, pg.DNA]:
  """Replays recorded trials into a set-up generator; returns DNA by trial id.

  Each trial's proposal is re-made after as many feedbacks as it originally
  saw, each fed `feedback_value(status, metrics, reward)` as the controller
  fed it (None: it fed nothing). Should a generator not reproduce a recorded
  DNA (say, an unseeded user algorithm), the recorded one wins, carrying the
  proposal's metadata.
  """
  rewarded = sorted((t for t in trials if t.feedback_seq is not None),
                    key=lambda t: t.feedback_seq)
  proposals: Dict[int, pg.DNA] = {}
  fed = 0

  def feed_until(num_feedbacks: int) -> None:
    nonlocal fed
    while fed < min(num_feedbacks, len(rewarded)):
      trial = rewarded[fed]
      value = feedback_value(trial.status, trial.metrics, trial.reward)
      if value is not None:
        algorithm.feedback(proposals[trial.id], value)
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


@pg.members([('dnas', pg.typing.List(pg.typing.Any()), 'DNA, in order.')])
class FixedProposals(pg.DNAGenerator):
  """Proposes given DNA in order, then stops: the trials of a stage that
  trains chosen architectures (full training, the final model) rather than
  searching, so it gets the controller's store, resume and parallelism."""

  def _propose(self) -> pg.DNA:
    if self.num_proposals >= len(self.dnas):
      raise StopIteration()
    return self.dnas[self.num_proposals]
