"""Text views of a job's trials: one progress line each, and the leaderboard."""

from typing import Callable, List, Optional

from trainer import objective
from trainer.controller import store as store_lib


def _fmt(value: Optional[float], spec: str) -> str:
  return format(value, spec) if isinstance(value, (int, float)) else '-'


def trial_line(trial: store_lib.Trial, quality_metric: str,
               summary: str = '') -> str:
  """`trial 3 completed acc=0.912 flops=0.0021B reward=0.912 31.2s | arch`,
  acc the stage's quality metric."""
  m = trial.metrics or {}
  acc = m.get(quality_metric)
  seconds = (trial.finished_at - trial.created_at) if trial.finished_at else None
  text = (f'trial {trial.id:>3} {trial.status:<9} acc={_fmt(acc, ".4f")} '
          f'flops={_fmt(m.get(objective.FLOPS), ".4f")}B '
          f'reward={_fmt(trial.reward, ".4f")} {_fmt(seconds, ".1f")}s')
  if trial.error:
    text += f' error: {trial.error}'
  return f'{text} | {summary}' if summary else text


def device(trial: store_lib.Trial) -> str:
  """Where the trial trained, as its metrics record it (`GPU:0 <name>`,
  `CPU`), with its replica count when it trained data-parallel; '' before
  it has metrics."""
  m = trial.metrics or {}
  text = m.get('device') or ''
  replicas = m.get('replicas')
  if text and isinstance(replicas, int) and replicas > 1:
    text += f' ({replicas} replicas)'
  return text


def ranked(trials: List[store_lib.Trial]) -> List[store_lib.Trial]:
  """Trained, rewarded trials, best first (infeasible ones were not trained)."""
  return sorted((t for t in trials if t.reward is not None and
                 t.status != store_lib.INFEASIBLE),
                key=lambda t: (-t.reward, t.id))


def best(trials: List[store_lib.Trial]) -> Optional[store_lib.Trial]:
  done = ranked(trials)
  return done[0] if done else None


def table(trials: List[store_lib.Trial], summarize: Callable[[str], str],
          quality_metric: str, top: int = 10) -> str:
  """The best `top` trials by reward (accuracy: the stage's quality
  metric), then counts by status."""
  shown = ranked(trials)[:top]
  devices = {t.id: device(t) or '-' for t in shown}
  width = max([len('device'), *map(len, devices.values())])
  lines = [f'{"rank":>4} {"trial":>5} {"reward":>8} {"accuracy":>8} '
           f'{"MAdds(B)":>9} {"params":>9}  {"device":<{width}}  architecture']
  for rank, t in enumerate(shown, 1):
    m = t.metrics or {}
    lines.append(
        f'{rank:>4} {t.id:>5} {t.reward:>8.4f} '
        f'{_fmt(m.get(quality_metric), ">8.4f")} '
        f'{_fmt(m.get(objective.FLOPS), ">9.4f")} '
        f'{_fmt(m.get("params"), ">9d")}  {devices[t.id]:<{width}}  '
        f'{summarize(t.nas_params_str)}')
  counts = {}
  for t in trials:
    counts[t.status] = counts.get(t.status, 0) + 1
  lines.append('trials: ' + ', '.join(f'{n} {s}' for s, n in sorted(counts.items()))
               if counts else 'trials: none yet')
  return '\n'.join(lines)


def best_report(trials: List[store_lib.Trial]) -> str:
  top = best(trials)
  if top is None:
    return 'no completed trial yet'
  return (f'best trial: {top.id} (reward {top.reward:.4f})\n'
          f'best nas_params_str: {top.nas_params_str}')

