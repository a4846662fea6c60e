"""PPO: a recurrent controller that learns which architectures earn reward.

The controller of the NASNet and MnasNet papers: an LSTM emits one decision
per step over a DNA spec's decision points, each step reading the embedding of
the decision before it, and a softmax head per decision point sized to its
candidates. It learns by proximal policy optimisation: a clipped surrogate
objective on the ratio of an architecture's probability now to its probability
when it was sampled, advantages normalised within each batch of `batch_size`
feedbacks (the batch mean is the baseline), an entropy bonus, and a few
epochs of Adam steps per batch. Logits are bounded, as ENAS's tanh constant.

An exponential-moving-average baseline, tried first, did worse on
NAS-Bench-201 (bench/nasbench201.py): advantages over a lagging baseline all
have one sign once rewards plateau, and scaled up they drove the policy onto
one architecture, whose repeats then taught it nothing.

Numpy only, backpropagation through time written out, so a controller needs no
TensorFlow. Its state is a function of its seed and the sequence of propose
and feedback calls, which is what replaying a search's history relies on.
"""

from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import pyglove as pg

# DNA metadata naming the proposal a DNA came from, so that a feedback finds
# the log-probability its architecture had when it was sampled.
PROPOSAL_KEY = 'ppo_proposal'


class DecisionTable:
  """A DNA spec's categorical decisions as one sequence of steps.

  Step t is `spec.decision_points[t]`, which is the order of
  `DNA.to_numbers()`. A step inside a candidate of another decision (a
  conditional sub-space) is active only when that candidate was chosen;
  inactive steps have value -1. A subchoice of `pg.manyof` is constrained by
  its earlier siblings: distinct ones never repeat a candidate; sorted ones
  never go below the one before and leave room for those after. So values
  chosen step by step from `candidates_mask` always make valid DNA.
  """

  def __init__(self, spec: pg.DNASpec):
    self.spec = spec
    points = spec.decision_points
    step_of = {id(point): t for t, point in enumerate(points)}
    self.num_candidates: List[int] = []
    self.enabled_by: List[Tuple[int, int]] = []  # (step, candidate); -1: always
    self.group: List[List[int]] = []  # Steps of its manyof ([] for a oneof).
    self.position: List[int] = []  # Its index in `group`.
    self.distinct: List[bool] = []
    self.sorted: List[bool] = []
    groups: Dict[int, List[int]] = {}
    for t, point in enumerate(points):
      if not isinstance(point, pg.geno.Choices):
        raise ValueError(
            f'only categorical decisions (pg.oneof, pg.manyof) can be '
            f'searched here; {point.id} is a {type(point).__name__} '
            '(e.g. pg.floatv)')
      self.num_candidates.append(len(point.candidates))
      self.enabled_by.append(self._enabling_choice(point, step_of))
      container = point.parent_spec if point.is_subchoice else None
      if container is None:
        self.group.append([])
        self.position.append(0)
        self.distinct.append(False)
        self.sorted.append(False)
      else:
        group = groups.setdefault(id(container), [])
        group.append(t)  # Shared: complete once all subchoices are seen.
        self.group.append(group)
        self.position.append(point.subchoice_index)
        self.distinct.append(bool(container.distinct))
        self.sorted.append(bool(container.sorted))
    offsets = np.cumsum([0] + self.num_candidates)
    self.token_offsets = offsets[:-1] + 1  # Token 0 starts every sequence.
    self.num_tokens = int(offsets[-1]) + 1
    self.max_candidates = max(self.num_candidates, default=1)

  @staticmethod
  def _enabling_choice(point, step_of) -> Tuple[int, int]:
    """The (step, candidate index) whose choice makes `point` exist."""
    parent = point.parent_choice
    if parent is None:
      return -1, -1
    node = point
    while node.parent_spec is not parent:
      node = node.parent_spec
    return step_of[id(parent)], node.index

  def __len__(self) -> int:
    return len(self.num_candidates)

  def is_active(self, t: int, values: Sequence[int]) -> bool:
    step, candidate = self.enabled_by[t]
    return step < 0 or values[step] == candidate

  def candidates_mask(self, t: int, values: Sequence[int]) -> np.ndarray:
    """Which candidates step t may take after `values[:t]`."""
    num = self.num_candidates[t]
    mask = np.ones(num, bool)
    taken = [values[s] for s in self.group[t][:self.position[t]]]
    if self.sorted[t]:
      if taken:
        mask[:taken[-1] + self.distinct[t]] = False
      if self.distinct[t]:  # Leave a candidate for each later subchoice.
        mask[num - (len(self.group[t]) - 1 - self.position[t]):] = False
    elif self.distinct[t]:
      mask[taken] = False
    return mask

  def values_from_dna(self, dna: pg.DNA) -> Tuple[int, ...]:
    """Each step's chosen candidate index (-1 where inactive)."""
    numbers = dna.to_numbers()
    values, used = [], 0
    for t in range(len(self)):
      if self.is_active(t, values):
        if used == len(numbers):
          raise ValueError(f'{dna!r} does not fit this DNA spec')
        values.append(int(numbers[used]))
        used += 1
      else:
        values.append(-1)
    if used != len(numbers):
      raise ValueError(f'{dna!r} does not fit this DNA spec')
    return tuple(values)

  def to_dna(self, values: Sequence[int]) -> pg.DNA:
    """The DNA (spec attached) of a valid sequence of step values.

    Built as the nested literal `pg.DNA` parses (a conditional choice as a
    tuple chain, several children as a list) with one `use_spec` at the end:
    much faster than `DNA.from_numbers`, which attaches a spec per node.
    """
    numbers = iter(v for v in values if v >= 0)

    def nested(spec):
      if spec.is_space:
        items = [nested(element) for element in spec.elements]
        return None if not items else items[0] if len(items) == 1 else items
      if spec.num_choices == 1:
        value = next(numbers)
        below = nested(spec.candidates[value])
        if below is None:
          return value
        return (value, *below) if isinstance(below, tuple) else (value, below)
      return [nested(subchoice) for subchoice in spec.choice_specs]

    return pg.DNA(nested(self.spec)).use_spec(self.spec)

  def encode(self, sequences: Sequence[Sequence[int]]) -> 'Rollouts':
    """The arrays a batched forward pass reads for these value sequences."""
    batch, steps = len(sequences), len(self)
    actions = np.asarray(sequences, np.int64).reshape(batch, steps)
    inputs = np.zeros((batch, steps), np.int64)
    masks = np.zeros((batch, steps, self.max_candidates), bool)
    for b, values in enumerate(sequences):
      token = 0
      for t, value in enumerate(values):
        inputs[b, t] = token
        if value < 0:
          masks[b, t, 0] = True  # Inactive: one sure "choice", no gradient.
        else:
          masks[b, t, :self.num_candidates[t]] = self.candidates_mask(t, values)
          token = self.token_offsets[t] + value
    return Rollouts(inputs, actions, masks)


class Rollouts(NamedTuple):
  """Sampled sequences as arrays [batch, steps(, candidates)]."""

  inputs: np.ndarray   # Token of the last active decision before each step.
  actions: np.ndarray  # Chosen candidate, -1 where the step is inactive.
  masks: np.ndarray    # Candidates each step could take.


def _sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))  # Overflow-free logistic.


def _log_softmax(logits, mask):
  """Log-probabilities over the allowed candidates (-inf elsewhere)."""
  logits = np.where(mask, logits, -np.inf)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Controller:
  """The LSTM policy over a DecisionTable's steps: its weights and passes.

  Logits are squashed to (-logit_bound, logit_bound), as ENAS's tanh
  constant: no candidate's probability reaches 0 or 1, so a policy that
  converged on one architecture still samples its neighbours, and the
  entropy bonus keeps a gradient.
  """

  def __init__(self, table: DecisionTable, hidden_size: int,
               embedding_size: int, logit_bound: float,
               rng: np.random.Generator):
    self.table, self.logit_bound = table, logit_bound

    def uniform(*shape):  # Small: the first policy is almost uniform.
      return rng.uniform(-0.1, 0.1, shape)

    bias = np.zeros(4 * hidden_size)
    bias[hidden_size:2 * hidden_size] = 1.0  # Forget gate open.
    self.params = {
        'embedding': uniform(table.num_tokens, embedding_size),
        'w_input': uniform(embedding_size, 4 * hidden_size),
        'w_hidden': uniform(hidden_size, 4 * hidden_size),
        'bias': bias,
        'w_out': uniform(len(table), table.max_candidates, hidden_size),
        'b_out': np.zeros((len(table), table.max_candidates)),
    }

  def _lstm_step(self, token, h, c):
    """One LSTM step on a batch: the new (h, c) and what backprop needs."""
    params, hidden = self.params, h.shape[1]
    x = params['embedding'][token]
    z = x @ params['w_input'] + h @ params['w_hidden'] + params['bias']
    i = _sigmoid(z[:, :hidden])
    f = _sigmoid(z[:, hidden:2 * hidden])
    o = _sigmoid(z[:, 2 * hidden:3 * hidden])
    g = np.tanh(z[:, 3 * hidden:])
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    return o * tanh_c, c_new, (x, i, f, o, g, tanh_c)

  def _logits(self, t, h):
    """Step t's bounded logits for hidden states h, and tanh of the raw ones
    over the bound (for backprop)."""
    raw = h @ self.params['w_out'][t].T + self.params['b_out'][t]
    squashed = np.tanh(raw / self.logit_bound)
    return self.logit_bound * squashed, squashed

  def _walk(self, pick) -> Tuple[Tuple[int, ...], float]:
    """Runs the policy one step at a time; `pick(t, probs)` gives active step
    t's value from its candidates' probabilities, or None to stop there.
    Returns the values chosen (-1 for inactive steps), their log-probability.
    """
    table = self.table
    hidden = self.params['w_hidden'].shape[0]
    h, c = np.zeros((1, hidden)), np.zeros((1, hidden))
    values: List[int] = []
    token, log_prob = 0, 0.0
    for t in range(len(table)):
      if not table.is_active(t, values):
        values.append(-1)
        continue
      h, c, _ = self._lstm_step([token], h, c)
      logits = self._logits(t, h)[0][0, :table.num_candidates[t]]
      log_probs = _log_softmax(logits, table.candidates_mask(t, values))
      value = pick(t, np.exp(log_probs))
      if value is None:
        break
      values.append(value)
      log_prob += float(log_probs[value])
      token = table.token_offsets[t] + value
    return tuple(values), log_prob

  def sample(self, rng: np.random.Generator) -> Tuple[Tuple[int, ...], float]:
    """One sequence of step values and its log-probability."""

    def draw(unused_step, probs):
      cumulative = np.cumsum(probs)
      value = int(np.searchsorted(cumulative, rng.random() * cumulative[-1],
                                  side='right'))
      # Rounding can land past the last allowed candidate: step back to it.
      return int(np.flatnonzero(probs[:value + 1])[-1])

    return self._walk(draw)

  def next_probabilities(self, values: Sequence[int] = ()) -> np.ndarray:
    """The policy over the candidates of the first active step after the
    step values `values` (-1 for inactive steps)."""
    found = []

    def pick(t, probs):
      if t < len(values):
        return values[t]
      found.append(probs)
      return None

    self._walk(pick)
    return found[0]

  def log_probs(self, rollouts: Rollouts, d_log_prob=None, d_entropy=None):
    """Batched forward pass: each sequence's log-probability and the entropy
    of its steps' policies, summed over its active steps.

    Given `d_log_prob` and `d_entropy` (d loss / d each, per sequence) it
    also backpropagates through time and returns the gradients.
    """
    params = self.params
    inputs, actions, masks = rollouts
    batch, steps = actions.shape
    hidden = params['w_hidden'].shape[0]
    active = (actions >= 0)[:, :, None]
    chosen = np.maximum(actions, 0)
    rows = np.arange(batch)
    h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    log_prob, entropy = np.zeros(batch), np.zeros(batch)
    trace = []
    for t in range(steps):
      h_new, c_new, gates = self._lstm_step(inputs[:, t], h, c)
      h_prev, c_prev = h, c
      h = np.where(active[:, t], h_new, h)
      c = np.where(active[:, t], c_new, c)
      logits, squashed = self._logits(t, h)
      log_probs = _log_softmax(logits, masks[:, t])
      probs = np.exp(log_probs)
      safe_log_probs = np.where(masks[:, t], log_probs, 0.0)
      step_entropy = -(probs * safe_log_probs).sum(axis=1)
      log_prob += safe_log_probs[rows, chosen[:, t]]
      entropy += step_entropy * active[:, t, 0]
      trace.append((h_prev, c_prev, h, gates, c_new, squashed, probs,
                    safe_log_probs, step_entropy))
    if d_log_prob is None:
      return log_prob, entropy

    grads = {name: np.zeros_like(value) for name, value in params.items()}
    dh, dc = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    for t in reversed(range(steps)):
      (h_prev, c_prev, h, (x, i, f, o, g, tanh_c), c_new, squashed, probs,
       safe_log_probs, step_entropy) = trace[t]
      a = active[:, t]
      one_hot = np.zeros_like(probs)
      one_hot[rows, chosen[:, t]] = 1.0
      d_logits = a * (
          d_log_prob[:, None] * (one_hot - probs) - d_entropy[:, None] * probs
          * (safe_log_probs + step_entropy[:, None]))
      d_raw = d_logits * (1.0 - squashed ** 2)
      grads['w_out'][t] += d_raw.T @ h
      grads['b_out'][t] += d_raw.sum(axis=0)
      dh = dh + d_raw @ params['w_out'][t]
      dh_new = a * dh
      dc_new = a * dc + dh_new * o * (1.0 - tanh_c ** 2)
      dz = np.concatenate([
          dc_new * g * i * (1.0 - i),
          dc_new * c_prev * f * (1.0 - f),
          dh_new * tanh_c * o * (1.0 - o),
          dc_new * i * (1.0 - g ** 2)], axis=1)
      grads['w_input'] += x.T @ dz
      grads['w_hidden'] += h_prev.T @ dz
      grads['bias'] += dz.sum(axis=0)
      np.add.at(grads['embedding'], inputs[:, t], dz @ params['w_input'].T)
      dh = dz @ params['w_hidden'].T + (1.0 - a) * dh
      dc = dc_new * f + (1.0 - a) * dc
    return log_prob, entropy, grads

  def ppo_loss_and_grads(self, rollouts: Rollouts, old_log_probs: np.ndarray,
                         advantages: np.ndarray, clip: float,
                         entropy_weight: float):
    """The clipped surrogate objective, negated to be minimised, less the
    weighted entropy bonus, averaged over the batch; and its gradients."""
    log_prob, entropy = self.log_probs(rollouts)
    ratio = np.exp(log_prob - old_log_probs)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages
    batch = len(advantages)
    loss = (-np.minimum(unclipped, clipped).mean()
            - entropy_weight * entropy.mean())
    # The gradient flows only where the unclipped term is the smaller one.
    d_log_prob = np.where(unclipped <= clipped, -unclipped / batch, 0.0)
    d_entropy = np.full(batch, -entropy_weight / batch)
    grads = self.log_probs(rollouts, d_log_prob, d_entropy)[2]
    return loss, grads


class _Adam:
  """Adam on a dict of arrays, in place."""

  def __init__(self, params, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8):
    self.learning_rate, self.beta1, self.beta2, self.eps = (
        learning_rate, beta1, beta2, eps)
    self.m = {k: np.zeros_like(v) for k, v in params.items()}
    self.v = {k: np.zeros_like(v) for k, v in params.items()}
    self.steps = 0

  def step(self, params, grads):
    self.steps += 1
    scale = (self.learning_rate * np.sqrt(1 - self.beta2 ** self.steps)
             / (1 - self.beta1 ** self.steps))
    for name, grad in grads.items():
      self.m[name] = self.beta1 * self.m[name] + (1 - self.beta1) * grad
      self.v[name] = self.beta2 * self.v[name] + (1 - self.beta2) * grad ** 2
      params[name] -= scale * self.m[name] / (np.sqrt(self.v[name]) + self.eps)


@pg.members([
    ('seed', pg.typing.Int(default=0), 'Seeds the weights and the sampling.'),
    ('batch_size', pg.typing.Int(min_value=2, default=8),
     'Feedbacks per policy update.'),
    ('epochs', pg.typing.Int(min_value=1, default=4),
     'Adam steps on each batch.'),
    ('learning_rate', pg.typing.Float(min_value=0.0, default=0.02),
     'Adam learning rate.'),
    ('clip', pg.typing.Float(min_value=0.0, default=0.2),
     'PPO ratio clipping.'),
    ('entropy_weight', pg.typing.Float(min_value=0.0, default=0.01),
     'Weight of the entropy bonus (summed over decisions).'),
    ('logit_bound', pg.typing.Float(min_value=0.01, default=2.5),
     'Logits are squashed to (-logit_bound, logit_bound).'),
    ('hidden_size', pg.typing.Int(min_value=1, default=32),
     'LSTM hidden units.'),
    ('embedding_size', pg.typing.Int(min_value=1, default=16),
     'Size of the embedding of the previous decision.'),
])
class PPO(pg.DNAGenerator):
  """An LSTM controller over the decision points, trained with PPO.

  Larger rewards are better. Feedback may come in any order (parallel trials):
  it is matched to its proposal through the DNA's `PROPOSAL_KEY` metadata,
  whose recorded log-probability is the sampling policy's for the PPO ratio. A
  DNA this generator did not propose as it stands (another generator's, or a
  replayed one that diverged) is scored by the current policy instead.

  Sorted multi-choices (`pg.manyof(..., choices_sorted=True)`) are sampled in
  increasing order, each subchoice masked to the candidates after the one
  before, so the sequence is the DNA itself and its log-probability exact,
  with no sorting afterwards (which would need a sum over all orders).
  Distinct ones mask the candidates already taken.
  """

  def _setup(self):
    self._table = DecisionTable(self.dna_spec)
    self._rng = np.random.default_rng(self.seed)
    self._controller = Controller(self._table, self.hidden_size,
                                  self.embedding_size, self.logit_bound,
                                  self._rng)
    self._adam = _Adam(self._controller.params, self.learning_rate)
    self._pending: Dict[int, Tuple[Tuple[int, ...], float]] = {}
    self._batch: List[Tuple[Tuple[int, ...], float, float]] = []

  def _propose(self) -> pg.DNA:
    values, log_prob = self._controller.sample(self._rng)
    dna = self._table.to_dna(values)
    dna.set_metadata(PROPOSAL_KEY, self.num_proposals)
    self._pending[self.num_proposals] = (values, log_prob)
    return dna

  def _feedback(self, dna: pg.DNA, reward: float) -> None:
    values = self._table.values_from_dna(dna)
    sampled = self._pending.pop(dna.metadata.get(PROPOSAL_KEY), None)
    if sampled is not None and sampled[0] == values:
      log_prob = sampled[1]
    else:
      log_prob = float(self._controller.log_probs(
          self._table.encode([values]))[0][0])
    self._batch.append((values, log_prob, float(reward)))
    if len(self._batch) >= self.batch_size:
      self._update()

  def _update(self) -> None:
    """A few epochs of Adam on the clipped surrogate over the batch.

    Advantages are the batch's rewards normalised: less their mean (the
    baseline), over their standard deviation, so any reward scale works and
    a batch of equal rewards moves nothing but the entropy.
    """
    sequences, old_log_probs, rewards = zip(*self._batch)
    self._batch = []
    advantages = np.asarray(rewards) - np.mean(rewards)
    spread = advantages.std()
    if spread > 0:
      advantages /= spread
    rollouts = self._table.encode(sequences)
    old_log_probs = np.asarray(old_log_probs)
    for _ in range(self.epochs):
      _, grads = self._controller.ppo_loss_and_grads(
          rollouts, old_log_probs, advantages, self.clip, self.entropy_weight)
      self._adam.step(self._controller.params, grads)

  def next_probabilities(self, values: Sequence[int] = ()) -> np.ndarray:
    """The current policy over the candidates of the first active step after
    the step values `values` (-1 for inactive steps): for tests and
    diagnostics."""
    return self._controller.next_probabilities(values)
