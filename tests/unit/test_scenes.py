"""Generated shape scenes decode with Model Garden's detection/seg code."""

import contextlib
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder
from pycocotools.coco import COCO

from trainer.datasets import scenes

SIZE, NUM_TRAIN, NUM_EVAL, SEED = 64, 20, 8, 3
K = len(scenes.CLASS_NAMES)


@pytest.fixture(scope='module')
def scene_data(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('scenes') / 'data')
  return scenes.make_scenes(out, image_size=SIZE, num_train=NUM_TRAIN,
                            num_eval=NUM_EVAL, seed=SEED)


def _records(pattern):
  return [r.numpy() for r in
          tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))]


def _decode_all(pattern):
  detection = tf_example_decoder.TfExampleDecoder(include_mask=True)
  segmentation = segmentation_input.Decoder()
  out = []
  for record in _records(pattern):
    decoded = {k: v.numpy() for k, v in detection.decode(record).items()}
    seg = segmentation.decode(record)
    decoded['semantic'] = tf.io.decode_image(
        seg['image/segmentation/class/encoded'], channels=1).numpy()[..., 0]
    out.append(decoded)
  return out


def test_scene_records_are_consistent(scene_data):
  assert scene_data.num_classes == K + 1
  assert (scene_data.num_train, scene_data.num_eval) == (NUM_TRAIN, NUM_EVAL)
  train = _decode_all(scene_data.train_glob)
  evals = _decode_all(scene_data.eval_glob)
  assert (len(train), len(evals)) == (NUM_TRAIN, NUM_EVAL)
  ids = [int(d['source_id']) for d in train + evals]
  assert len(set(ids)) == len(ids)
  counts, class_counts = [], np.zeros(K + 1, int)
  for d in train + evals:
    assert d['image'].shape == (SIZE, SIZE, 3)
    boxes, classes = d['groundtruth_boxes'], d['groundtruth_classes']
    masks = d['groundtruth_instance_masks']
    n = len(classes)
    counts.append(n)
    assert 1 <= n <= 3
    assert boxes.shape == (n, 4) and masks.shape == (n, SIZE, SIZE)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert ((boxes >= 0) & (boxes <= 1)).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert ((classes >= 1) & (classes <= K)).all()
    np.add.at(class_counts, classes, 1)
    assert not d['groundtruth_is_crowd'].any()
    for box, mask, area in zip(boxes, masks, d['groundtruth_area']):
      rows = np.flatnonzero(mask.any(axis=1))
      cols = np.flatnonzero(mask.any(axis=0))
      assert area == mask.sum() >= 12
      want = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / SIZE
      np.testing.assert_allclose(box, want, atol=1.0 / SIZE)
    # Visible instance masks do not overlap, and the semantic mask is their
    # class ids with 0 elsewhere.
    assert masks.sum(axis=0).max() <= 1
    painted = np.zeros((SIZE, SIZE), np.uint8)
    for mask, cls in zip(masks, classes):
      painted[mask > 0] = cls
    assert set(np.unique(d['semantic'])) <= set(range(K + 1))
    np.testing.assert_array_equal(d['semantic'], painted)
    # Objects are visible in the pixels: their colour differs from the
    # image's average outside all objects.
    background = d['image'][painted == 0].astype(float).mean(axis=0)
    for mask in masks:
      inside = d['image'][mask > 0].astype(float).mean(axis=0)
      assert np.abs(inside - background).sum() > 10
  assert len(set(counts)) > 1  # a varying number of objects per image
  assert (class_counts[1:] > 0).all()  # every class occurs

  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(scene_data.eval_annotation_file)
  assert len(gt.anns) == sum(len(d['groundtruth_classes']) for d in evals)
  assert sorted(gt.getImgIds()) == sorted(int(d['source_id']) for d in evals)
  assert sorted(gt.getCatIds()) == list(range(1, K + 1))
  for d in evals:
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[int(d['source_id'])]))
    assert [a['category_id'] for a in anns] == d['groundtruth_classes'].tolist()
    np.testing.assert_array_equal(
        np.array([gt.annToMask(a) for a in anns]),
        d['groundtruth_instance_masks'])


def test_same_seed_same_bytes_other_seed_differs(scene_data, tmp_path):
  again = scenes.make_scenes(str(tmp_path / 'again'), image_size=SIZE,
                             num_train=NUM_TRAIN, num_eval=NUM_EVAL, seed=SEED)
  other = scenes.make_scenes(str(tmp_path / 'other'), image_size=SIZE,
                             num_train=2, num_eval=NUM_EVAL, seed=SEED + 1)
  fewer = scenes.make_scenes(str(tmp_path / 'fewer'), image_size=SIZE,
                             num_train=2, num_eval=NUM_EVAL, seed=SEED)
  assert _records(again.train_glob) == _records(scene_data.train_glob)
  assert _records(again.eval_glob) == _records(scene_data.eval_glob)
  with open(again.eval_annotation_file) as f1, open(
      scene_data.eval_annotation_file) as f2:
    assert f1.read() == f2.read()
  assert set(_records(other.eval_glob)).isdisjoint(
      _records(scene_data.eval_glob))
  # The eval split does not depend on how many training images there are.
  assert _records(fewer.eval_glob) == _records(scene_data.eval_glob)


def test_finished_data_is_reused_and_changed_settings_rewritten(tmp_path):
  out = str(tmp_path / 'reuse')
  first = scenes.make_scenes(out, image_size=32, num_train=2, num_eval=2)
  shard = tf.io.gfile.glob(first.eval_glob)[0]
  mtime = os.stat(shard).st_mtime_ns
  assert scenes.make_scenes(out, image_size=32, num_train=2, num_eval=2) == first
  assert os.stat(shard).st_mtime_ns == mtime
  changed = scenes.make_scenes(out, image_size=32, num_train=2, num_eval=3)
  assert changed.num_eval == 3 and len(_records(changed.eval_glob)) == 3


def test_retinanet_parser_accepts_scene_examples(scene_data):
  # Built as official/vision/tasks/retinanet.py builds it, from the config.
  model = retinanet_cfg.RetinaNet(num_classes=scene_data.num_classes,
                                  input_size=[SIZE, SIZE, 3], min_level=3,
                                  max_level=5)
  model.anchor.anchor_size = 2.0
  params = retinanet_cfg.DataConfig(is_training=True, dtype='float32')
  params.parser.aug_rand_hflip = True
  decoder = tf_example_decoder.TfExampleDecoder(
      regenerate_source_id=params.decoder.simple_decoder.regenerate_source_id)
  parser = retinanet_input.Parser(
      output_size=model.input_size[:2],
      min_level=model.min_level,
      max_level=model.max_level,
      num_scales=model.anchor.num_scales,
      aspect_ratios=model.anchor.aspect_ratios,
      anchor_size=model.anchor.anchor_size,
      dtype=params.dtype,
      match_threshold=params.parser.match_threshold,
      unmatched_threshold=params.parser.unmatched_threshold,
      box_coder_weights=model.detection_generator.box_coder_weights,
      aug_type=params.parser.aug_type,
      aug_rand_hflip=params.parser.aug_rand_hflip,
      aug_rand_jpeg=params.parser.aug_rand_jpeg,
      aug_scale_min=params.parser.aug_scale_min,
      aug_scale_max=params.parser.aug_scale_max,
      skip_crowd_during_training=params.parser.skip_crowd_during_training,
      max_num_instances=params.parser.max_num_instances,
      pad=params.parser.pad,
      keep_aspect_ratio=params.parser.keep_aspect_ratio)
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(scene_data.train_glob))
  dataset = dataset.take(4).map(decoder.decode).map(parser.parse_fn(True))
  num_anchors = 3 * len(model.anchor.aspect_ratios)
  for image, labels in dataset:
    assert image.shape == (SIZE, SIZE, 3)
    assert np.isfinite(image.numpy()).all()
    assert sorted(labels['cls_targets']) == ['3', '4', '5']
    for level in (3, 4, 5):
      grid = SIZE // 2 ** level
      cls = labels['cls_targets'][str(level)]
      assert cls.shape == (grid, grid, num_anchors)
      assert labels['box_targets'][str(level)].shape == (grid, grid,
                                                         4 * num_anchors)
    positives = np.concatenate([labels['cls_targets'][k].numpy().ravel()
                                for k in labels['cls_targets']])
    assert ((positives >= 1) & (positives <= K)).any()


def test_segmentation_parser_accepts_scene_examples(scene_data):
  parser = segmentation_input.Parser(output_size=[SIZE, SIZE])
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(scene_data.eval_glob))
  dataset = dataset.take(2).map(segmentation_input.Decoder().decode)
  for image, labels in dataset.map(parser.parse_fn(False)):
    assert image.shape == (SIZE, SIZE, 3)
    assert set(np.unique(labels['masks'].numpy())) <= set(range(K + 1))


def test_coco_evaluator_scores_perfect_boxes_as_ap_one(scene_data):
  from official.vision.evaluation import coco_evaluator  # pylint: disable=g-import-not-at-top
  evaluator = coco_evaluator.COCOEvaluator(
      annotation_file=scene_data.eval_annotation_file, include_mask=False,
      need_rescale_bboxes=False)
  decoder = tf_example_decoder.TfExampleDecoder()
  fields = {k: [] for k in ('source_id', 'num_detections', 'detection_boxes',
                            'detection_classes', 'detection_scores')}
  for record in _records(scene_data.eval_glob):
    d = decoder.decode(record)
    n = len(d['groundtruth_classes'])
    boxes = np.zeros((5, 4), np.float32)
    boxes[:n] = d['groundtruth_boxes'].numpy() * SIZE
    classes = np.zeros(5, np.int64)
    classes[:n] = d['groundtruth_classes'].numpy()
    fields['source_id'].append(int(d['source_id'].numpy()))
    fields['num_detections'].append(n)
    fields['detection_boxes'].append(boxes)
    fields['detection_classes'].append(classes)
    fields['detection_scores'].append((np.arange(5) < n).astype(np.float32))
  with contextlib.redirect_stdout(io.StringIO()):
    evaluator.update_state(None, {k: tf.constant(np.array(v))
                                  for k, v in fields.items()})
    result = evaluator.result()
  assert float(result['AP']) == pytest.approx(1.0)
