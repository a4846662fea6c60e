"""COCO JSON + images convert to records Model Garden's decoders read back."""

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder
from pycocotools import mask as mask_api
from pycocotools.coco import COCO

from trainer.datasets import coco

# (file, height, width); the last image has no annotations.
IMAGES = [(11, 'a.jpg', 40, 50), (12, 'b.jpg', 30, 36), (15, 'c.jpg', 20, 24)]
MAPPED = {3: 1, 7: 2}  # sorted COCO category ids -> 1..K


def _rle_uncompressed(mask):
  """Uncompressed COCO RLE (column-major run lengths, starting with zeros)."""
  flat = mask.flatten(order='F')
  counts, current, run = [], 0, 0
  for v in flat:
    if v != current:
      counts.append(run)
      current, run = v, 0
    run += 1
  counts.append(run)
  return {'size': list(mask.shape), 'counts': [int(c) for c in counts]}


def _dataset():
  blob = np.zeros((40, 50), np.uint8)
  blob[10:30, 20:45] = 1
  crowd = np.zeros((30, 36), np.uint8)
  crowd[2:12, 3:30] = 1
  crowd_rle = mask_api.encode(np.asfortranarray(crowd))
  crowd_rle['counts'] = crowd_rle['counts'].decode('ascii')
  annotations = [
      # Image 11: a polygon (category 7), then an RLE blob (category 3) painted
      # over it, then a two-part polygon (category 7).
      {'id': 1, 'image_id': 11, 'category_id': 7, 'iscrowd': 0, 'area': 300.5,
       'bbox': [5.5, 3.25, 30.0, 20.5],
       'segmentation': [[5.5, 3.25, 35.5, 3.25, 35.5, 23.75, 5.5, 23.75]]},
      {'id': 2, 'image_id': 11, 'category_id': 3, 'iscrowd': 0, 'area': 500.0,
       'bbox': [20.0, 10.0, 25.0, 20.0], 'segmentation': _rle_uncompressed(blob)},
      {'id': 3, 'image_id': 11, 'category_id': 7, 'iscrowd': 0, 'area': 40.0,
       'bbox': [1.0, 30.0, 47.0, 8.0],
       'segmentation': [[1, 30, 9, 30, 9, 38, 1, 38], [40, 32, 48, 32, 44, 38]]},
      # Image 12: a crowd RLE (category 7) and a triangle (category 3).
      {'id': 4, 'image_id': 12, 'category_id': 7, 'iscrowd': 1, 'area': 270.0,
       'bbox': [3.0, 2.0, 27.0, 10.0], 'segmentation': crowd_rle},
      {'id': 5, 'image_id': 12, 'category_id': 3, 'iscrowd': 0, 'area': 120.25,
       'bbox': [10.0, 8.0, 20.0, 20.0],
       'segmentation': [[10, 28, 30, 28, 20, 8]]},
  ]
  return {
      'images': [{'id': i, 'file_name': f, 'height': h, 'width': w}
                 for i, f, h, w in IMAGES],
      'annotations': annotations,
      # Listed out of order: the mapping follows the ids, not the listing.
      'categories': [{'id': 7, 'name': 'dog'}, {'id': 3, 'name': 'cat'}],
  }


def _write(tmp_path, dataset, skip_image=None):
  image_dir = tmp_path / 'images'
  image_dir.mkdir(exist_ok=True)
  rng = np.random.default_rng(0)
  for _, name, h, w in IMAGES:
    if name != skip_image:
      pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      (image_dir / name).write_bytes(tf.io.encode_jpeg(pixels).numpy())
  ann_file = tmp_path / 'instances.json'
  ann_file.write_text(json.dumps(dataset))
  return str(ann_file), str(image_dir)


def _coco(path):
  with contextlib.redirect_stdout(io.StringIO()):
    return COCO(path)


def test_coco_round_trip_through_model_garden_decoders(tmp_path):
  dataset = _dataset()
  ann_file, image_dir = _write(tmp_path, dataset)
  prefix = str(tmp_path / 'out' / 'coco')
  paths, num_images, num_classes = coco.coco_to_tfrecords(
      ann_file, image_dir, prefix, num_shards=2)
  assert len(paths) == 2 and num_images == 3 and num_classes == 3

  gt = _coco(ann_file)
  detection = tf_example_decoder.TfExampleDecoder(include_mask=True)
  segmentation = segmentation_input.Decoder()
  seen = set()
  for record in tf.data.TFRecordDataset(paths):
    decoded = detection.decode(record)
    image_id = int(decoded['source_id'].numpy())
    seen.add(image_id)
    img = gt.imgs[image_id]
    h, w = img['height'], img['width']
    anns = [gt.anns[a] for a in gt.getAnnIds(imgIds=[image_id])]
    assert decoded['image'].shape == (h, w, 3)
    assert (int(decoded['height']), int(decoded['width'])) == (h, w)

    want_boxes = np.array([[y / h, x / w, (y + bh) / h, (x + bw) / w]
                           for x, y, bw, bh in (a['bbox'] for a in anns)],
                          np.float32).reshape(-1, 4)
    np.testing.assert_allclose(decoded['groundtruth_boxes'].numpy(),
                               want_boxes, atol=1e-6)
    assert decoded['groundtruth_classes'].numpy().tolist() == [
        MAPPED[a['category_id']] for a in anns]
    assert decoded['groundtruth_is_crowd'].numpy().tolist() == [
        bool(a['iscrowd']) for a in anns]
    np.testing.assert_allclose(decoded['groundtruth_area'].numpy(),
                               [a['area'] for a in anns], rtol=1e-6)

    masks = decoded['groundtruth_instance_masks'].numpy()
    want_masks = np.array([gt.annToMask(a) for a in anns],
                          np.float32).reshape(-1, h, w)
    assert masks.shape == want_masks.shape
    np.testing.assert_array_equal(masks, want_masks)
    assert all(m.any() for m in want_masks)

    painted = np.zeros((h, w), np.uint8)
    for a in anns:
      painted[gt.annToMask(a) > 0] = MAPPED[a['category_id']]
    seg = segmentation.decode(record)
    assert int(seg['image/height']) == h and int(seg['image/width']) == w
    label = tf.io.decode_image(seg['image/segmentation/class/encoded'],
                               channels=1).numpy()[..., 0]
    np.testing.assert_array_equal(label, painted)
  assert seen == {i for i, *_ in IMAGES}

  # Overlap really was painted over: image 11 has pixels of both classes and
  # the later RLE wins where it covers the polygon.
  a11 = [gt.anns[a] for a in gt.getAnnIds(imgIds=[11])]
  overlap = (gt.annToMask(a11[0]) > 0) & (gt.annToMask(a11[1]) > 0)
  assert overlap.any()

  with open(coco.label_map_path(prefix)) as f:
    label_map = json.load(f)
  assert label_map['categories'] == [
      {'id': 1, 'coco_id': 3, 'name': 'cat'},
      {'id': 2, 'coco_id': 7, 'name': 'dog'}]

  # The evaluation ground truth uses the same contiguous ids and pixel boxes.
  ev = _coco(coco.annotation_path(prefix))
  assert sorted(ev.getCatIds()) == [1, 2]
  assert sorted(ev.getImgIds()) == [11, 12, 15]
  assert len(ev.anns) == len(gt.anns)
  for a in gt.anns.values():
    (b,) = [e for e in ev.anns.values()
            if e['image_id'] == a['image_id'] and
            np.allclose(e['bbox'], a['bbox'], atol=1e-4)]
    assert b['category_id'] == MAPPED[a['category_id']]
    assert b['iscrowd'] == a['iscrowd']
    np.testing.assert_array_equal(ev.annToMask(b), gt.annToMask(a))


def test_detection_example_without_masks_has_no_mask_keys():
  example = coco.detection_example(
      tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy(), 8, 8,
      [[0.0, 0.0, 0.5, 0.5]], [1], image_id=4)
  keys = set(example.features.feature)
  assert 'image/object/mask' not in keys
  assert 'image/segmentation/class/encoded' not in keys
  decoded = tf_example_decoder.TfExampleDecoder().decode(
      example.SerializeToString())
  assert float(decoded['groundtruth_area'][0]) == 16.0
  assert decoded['source_id'].numpy() == b'4'


def _one_line_error(exc_type, *args):
  with pytest.raises(exc_type) as info:
    coco.coco_to_tfrecords(*args)
  message = str(info.value)
  assert message and '\n' not in message
  return message


def test_missing_image_is_one_line_error(tmp_path):
  ann_file, image_dir = _write(tmp_path, _dataset(), skip_image='b.jpg')
  message = _one_line_error(FileNotFoundError, ann_file, image_dir,
                            str(tmp_path / 'out'))
  assert 'b.jpg' in message


def test_bad_json_is_one_line_error(tmp_path):
  ann_file, image_dir = _write(tmp_path, _dataset())
  with open(ann_file, 'w') as f:
    f.write('{"images": [')
  message = _one_line_error(ValueError, ann_file, image_dir,
                            str(tmp_path / 'out'))
  assert 'not valid JSON' in message


def test_missing_annotation_file_and_bad_category(tmp_path):
  ann_file, image_dir = _write(tmp_path, _dataset())
  _one_line_error(FileNotFoundError, str(tmp_path / 'nope.json'), image_dir,
                  str(tmp_path / 'out'))
  dataset = _dataset()
  dataset['annotations'][0]['category_id'] = 5
  ann_file, image_dir = _write(tmp_path, dataset)
  message = _one_line_error(ValueError, ann_file, image_dir,
                            str(tmp_path / 'out'))
  assert 'category id 5' in message
