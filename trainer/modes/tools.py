"""Modes that read or convert rather than train: list, export, report,
augment_preview and make_data."""

import os

import search_spaces
from trainer import artifacts
from trainer import fileio
from trainer.controller import leaderboard
from trainer.controller import store as store_lib
from trainer.modes import common
from trainer.modes.common import UsageError


def export(args, job_dir: str, again: bool = True) -> str:
  """Exports --stage/--trial_id (default: the best final model) to
  --export_dir (default <job_dir>/export); returns the export dir. Without
  `again` (a resumed pipeline) a complete export of that trial is kept."""
  from trainer.training import export as export_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if args.given('stage') or args.trial_id:
    if not args.trial_id:
      raise UsageError('--trial_id is required with --stage in --mode=export')
    stage, trial_id = args.stage, args.trial_id
  else:
    stage, trial_id = export_lib.best_trial(job_dir)
  export_dir = fileio.absolute(args.export_dir or
                               os.path.join(job_dir, 'export'))
  if not again and export_lib.holds(export_dir, job_dir, stage, trial_id):
    print(f'{stage} trial {trial_id} is exported in {export_dir}', flush=True)
    return export_dir
  summary = export_lib.export_trial(job_dir, stage, trial_id, export_dir)
  print(f'exported {stage} trial {trial_id} to {export_dir}: saved_model/, '
        f'tflite: {summary["tflite"]}', flush=True)
  return export_dir


def run_export(args) -> None:
  export(args, common.job_dir(args))


def run_report(args) -> None:
  from trainer import report  # pylint: disable=g-import-not-at-top
  job_dir = common.job_dir(args)
  store_lib.Store.open(job_dir, read_only=True)  # A clear error if no job.
  print(f'wrote {report.write_hparams_summaries(job_dir)} (TensorBoard)')
  print(f'report: {report.write_report(job_dir)}')


def run_augment_preview(args) -> None:
  """A PNG grid: each row an image, then augmented copies with boxes/masks."""
  from augment import preview  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from trainer.training import trial  # pylint: disable=g-import-not-at-top  (TensorFlow)
  job_dir = common.job_dir(args)
  task = search_spaces.augmentation_task(args.search_space)
  if not task:
    raise UsageError(f'--search_space={args.search_space} is not an '
                     'augmentation space')
  nas_params_str = common.nas_params(args)
  if args.preview_images < 1 or args.preview_variants < 1:
    raise UsageError('--preview_images and --preview_variants must be >= 1')
  space = search_spaces.get_search_space(args.search_space)
  policy_spec = search_spaces.materialize(
      space, search_spaces.dna_from_nas_params(space, nas_params_str))
  params = trial.data_config(common.search_spec(args),
                             artifacts.data_dir(job_dir), task)
  path = args.output_path or os.path.join(job_dir, 'augment_preview.png')
  preview.write_preview(
      path, policy_spec, task, params, args.preview_images,
      args.preview_variants, args.seed)
  print(f'wrote {path}: {args.preview_images} images x '
        f'{args.preview_variants} augmented copies of '
        f'{search_spaces.architecture_summary(policy_spec)}')


def run_list(args) -> None:
  store = store_lib.Store.open(common.job_dir(args), read_only=True)
  identity = store.job_identity(args.stage) or {}
  space = search_spaces.get_search_space(
      identity.get('search_space', args.search_space))

  def summarize(nas_params_str):
    return search_spaces.architecture_summary(search_spaces.materialize(
        space, search_spaces.dna_from_nas_params(space, nas_params_str)))

  trials = store.trials(args.stage)
  print(leaderboard.table(trials, summarize,
                          identity.get('quality_metric', ''),
                          top=len(trials) or 1))
  print(leaderboard.best_report(trials))


def run_make_data(args) -> None:
  """Converts a dataset into the TFRecords a task reads: COCO JSON + images
  (detection, segmentation), NIfTI image/label folders (3D segmentation)
  or a KITTI folder (lidar), picked by the input flags given."""
  sources = {
      'coco': (('coco_annotation_file', 'coco_image_dir'), _make_coco_data),
      'nifti': (('nifti_image_dir', 'nifti_label_dir'), _make_volume_data),
      'kitti': (('kitti_dir',), _make_lidar_data),
  }
  given = [name for name, (names, _) in sources.items()
           if any(getattr(args, f) for f in names)]
  if len(given) > 1:
    raise UsageError('--mode=make_data converts one dataset: give the '
                     + ' or the '.join(f'--{name}_*' for name in given)
                     + ' flags, not both')
  if not given:
    raise UsageError('--mode=make_data needs a dataset: --coco_annotation_file'
                     ' and --coco_image_dir, --nifti_image_dir and '
                     '--nifti_label_dir, or --kitti_dir')
  names, convert = sources[given[0]]
  for flag in names + ('output_prefix',):
    if not getattr(args, flag):
      raise UsageError(f'--{flag} is required with --mode=make_data')
  convert(args)


def _make_coco_data(args) -> None:
  from trainer.datasets import coco  # pylint: disable=g-import-not-at-top  (TensorFlow)
  paths, num_images, num_classes = coco.coco_to_tfrecords(
      args.coco_annotation_file, args.coco_image_dir, args.output_prefix,
      args.num_shards)
  print(f'wrote {num_images} images to {len(paths)} shards: '
        f'{args.output_prefix}-*')
  print(f'use: --train_data=\'{args.output_prefix}-*\' --params_override='
        f'task.model.num_classes={num_classes},task.annotation_file='
        f'{coco.annotation_path(args.output_prefix)}')


def _make_volume_data(args) -> None:
  from trainer.datasets import nifti  # pylint: disable=g-import-not-at-top  (TensorFlow)
  converted = nifti.nifti_to_tfrecords(
      args.nifti_image_dir, args.nifti_label_dir, args.output_prefix,
      args.num_shards)
  print(f'wrote {converted.num_cases} volumes of {converted.volume_shape} x '
        f'{converted.num_channels} channels, {converted.num_classes} classes, '
        f'to {len(converted.paths)} shards: {args.output_prefix}-*')
  # Model Garden's 3D reader takes the sizes from the data configs, which
  # must equal the model's (trial._check_volume_sizes).
  sizes = {'input_size': list(converted.volume_shape),
           'num_classes': converted.num_classes,
           'num_channels': converted.num_channels}
  override = ','.join(
      f'task.{part}.{key}={value}'.replace(' ', '')
      for part in ('model', 'train_data', 'validation_data')
      for key, value in sizes.items())
  print(f'use: --train_data=\'{args.output_prefix}-*\' '
        f'--params_override={override}')


def _make_lidar_data(args) -> None:
  from trainer.datasets import kitti  # pylint: disable=g-import-not-at-top  (TensorFlow)
  converted = kitti.kitti_to_tfrecords(args.kitti_dir, args.output_prefix,
                                       args.num_shards)
  objects = ', '.join(f'{n} {name}' for name, n in
                      converted.num_objects.items())
  print(f'wrote {converted.num_frames} frames ({objects}) to '
        f'{len(converted.paths)} shards: {args.output_prefix}-*')
