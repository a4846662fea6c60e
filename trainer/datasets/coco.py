"""Model Garden's detection/segmentation tf.Example format and COCO conversion.

One record serves RetinaNet, Mask R-CNN and semantic segmentation: it carries
the keys `official.vision.dataloaders.tf_example_decoder.TfExampleDecoder(
include_mask=True)` reads (boxes, labels, areas, crowd flags, PNG instance
masks) plus `image/segmentation/class/encoded`, the PNG class-id mask that
`official.vision.dataloaders.segmentation_input.Decoder` reads.

Class ids are contiguous, 1..K, with 0 meaning background (and, in the
semantic mask, "no object"). A user's COCO category ids are mapped to 1..K in
ascending category-id order; the mapping is written to
`<output_prefix>_label_map.json`. `num_classes` values returned here count the
background id, as Model Garden's detection and segmentation configs expect
(K + 1; COCO's own configs use 91 for ids 1..90).
"""

import contextlib
import io
import json
import os
from typing import (Any, Dict, Iterable, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple)

import numpy as np
import tensorflow as tf

from trainer import fileio
from trainer import outcome
from trainer.datasets import data

# Image formats `tf.io.decode_image` (used by Model Garden's decoders) reads;
# anything else is re-encoded as JPEG.
_DECODABLE = {'JPEG': b'jpeg', 'PNG': b'png', 'GIF': b'gif', 'BMP': b'bmp'}


class AnnotatedImage(NamedTuple):
  """One image's ground truth, shared by the TFRecord and COCO-JSON writers.

  boxes are normalised [ymin, xmin, ymax, xmax]; classes are contiguous ids
  1..K; masks (N, H, W) uint8 0/1 or None; segmentations, when given, are COCO
  segmentations (RLE dicts) used for the JSON instead of re-encoding masks.
  """
  image_id: int
  height: int
  width: int
  boxes: np.ndarray
  classes: np.ndarray
  areas: np.ndarray
  is_crowd: np.ndarray
  masks: Optional[np.ndarray] = None
  segmentations: Optional[List[Dict[str, Any]]] = None
  file_name: str = ''


def label_map_path(output_prefix: str) -> str:
  return f'{output_prefix}_label_map.json'


def annotation_path(output_prefix: str) -> str:
  return f'{output_prefix}_annotations.json'


def encode_png(array: np.ndarray) -> bytes:
  """A 2-D uint8 array as a single-channel PNG (as Model Garden's tools do)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode='L').save(
      buf, format='PNG')
  return buf.getvalue()


def semantic_from_instances(masks: Optional[np.ndarray], classes: Sequence[int],
                            height: int, width: int) -> np.ndarray:
  """Class id per pixel, 0 background; later instances paint over earlier."""
  semantic = np.zeros((height, width), np.uint8)
  if masks is None:
    return semantic
  for mask, cls in zip(masks, classes):
    semantic[mask > 0] = cls
  return semantic


def _bytes(values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def detection_example(encoded_jpeg: bytes, height: int, width: int,
                      boxes, classes, instance_masks=None, semantic_mask=None,
                      image_id: int = 0, areas=None, is_crowd=None,
                      image_format: str = 'jpeg') -> tf.train.Example:
  """One image in Model Garden's detection + segmentation tf.Example format.

  Args:
    encoded_jpeg: the encoded image (JPEG, or another format named by
      `image_format` that `tf.io.decode_image` reads).
    height, width: image size in pixels.
    boxes: (N, 4) normalised [ymin, xmin, ymax, xmax].
    classes: (N,) class ids, 1..K.
    instance_masks: (N, H, W) uint8 (non-zero = object) or None; stored as
      0/1 PNGs under `image/object/mask`.
    semantic_mask: (H, W) uint8 class ids or None; stored as a PNG under
      `image/segmentation/class/encoded`.
    image_id: integer id, stored as the decimal string `image/source_id`
      (Model Garden's parsers convert it to int64; the COCO evaluator matches it
      against the annotation file's image ids).
    areas: (N,) object areas in pixels; default the mask pixel count, or the
      box area when there are no masks.
    is_crowd: (N,) 0/1; default zeros.
    image_format: value of `image/format`.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  classes = np.asarray(classes, np.int64).reshape(-1)
  n = len(boxes)
  if len(classes) != n:
    raise ValueError(f'{n} boxes but {len(classes)} classes')
  if instance_masks is not None:
    instance_masks = np.asarray(instance_masks)
    if instance_masks.shape != (n, height, width):
      raise ValueError(f'instance_masks shape {instance_masks.shape} != '
                       f'{(n, height, width)}')
  if semantic_mask is not None:
    semantic_mask = np.asarray(semantic_mask)
    if semantic_mask.shape != (height, width):
      raise ValueError(f'semantic_mask shape {semantic_mask.shape} != '
                       f'{(height, width)}')
  if areas is None:
    if instance_masks is not None:
      areas = (instance_masks > 0).reshape(n, -1).sum(axis=1)
    else:
      areas = ((boxes[:, 2] - boxes[:, 0]) * height *
               (boxes[:, 3] - boxes[:, 1]) * width)
  areas = np.asarray(areas, np.float32).reshape(-1)
  is_crowd = (np.zeros(n, np.int64) if is_crowd is None
              else np.asarray(is_crowd, np.int64).reshape(-1))
  if len(areas) != n or len(is_crowd) != n:
    raise ValueError(f'{n} boxes but {len(areas)} areas, '
                     f'{len(is_crowd)} is_crowd flags')
  feature = {
      'image/encoded': _bytes([encoded_jpeg]),
      'image/format': _bytes([image_format.encode()]),
      'image/height': _ints([height]),
      'image/width': _ints([width]),
      'image/source_id': _bytes([str(int(image_id)).encode()]),
      'image/object/bbox/ymin': _floats(boxes[:, 0]),
      'image/object/bbox/xmin': _floats(boxes[:, 1]),
      'image/object/bbox/ymax': _floats(boxes[:, 2]),
      'image/object/bbox/xmax': _floats(boxes[:, 3]),
      'image/object/class/label': _ints(classes),
      'image/object/area': _floats(areas),
      'image/object/is_crowd': _ints(is_crowd),
  }
  if instance_masks is not None:
    feature['image/object/mask'] = _bytes(
        encode_png((m > 0).astype(np.uint8)) for m in instance_masks)
  if semantic_mask is not None:
    feature['image/segmentation/class/encoded'] = _bytes(
        [encode_png(semantic_mask)])
    feature['image/segmentation/class/format'] = _bytes([b'png'])
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _atomic_json(obj, path: str) -> str:
  fileio.write_text(path, json.dumps(obj))
  return path


def _rle(mask: np.ndarray) -> Dict[str, Any]:
  from pycocotools import mask as mask_api  # pylint: disable=g-import-not-at-top
  rle = mask_api.encode(np.asfortranarray((mask > 0).astype(np.uint8)))
  rle['counts'] = rle['counts'].decode('ascii')
  return rle


def coco_annotation_dataset(images: Iterable[AnnotatedImage],
                            category_names: Sequence[str]) -> Dict[str, Any]:
  """The COCO ground-truth dict for `images` (category ids 1..K)."""
  out_images, annotations = [], []
  for img in images:
    entry = {'id': int(img.image_id), 'height': int(img.height),
             'width': int(img.width)}
    if img.file_name:
      entry['file_name'] = img.file_name
    out_images.append(entry)
    boxes = np.asarray(img.boxes, np.float64).reshape(-1, 4)
    for k, (ymin, xmin, ymax, xmax) in enumerate(boxes):
      ann = {
          'id': len(annotations) + 1,  # COCOeval treats id 0 as unmatched.
          'image_id': int(img.image_id),
          'category_id': int(img.classes[k]),
          'bbox': [xmin * img.width, ymin * img.height,
                   (xmax - xmin) * img.width, (ymax - ymin) * img.height],
          'area': float(img.areas[k]),
          'iscrowd': int(img.is_crowd[k]),
      }
      if img.segmentations is not None:
        ann['segmentation'] = img.segmentations[k]
      elif img.masks is not None:
        ann['segmentation'] = _rle(img.masks[k])
      annotations.append(ann)
  categories = [{'id': i + 1, 'name': name}
                for i, name in enumerate(category_names)]
  return {'images': out_images, 'annotations': annotations,
          'categories': categories}


def write_coco_annotations(path: str, images: Iterable[AnnotatedImage],
                           category_names: Sequence[str]) -> str:
  """Writes the COCO-JSON ground truth for `images` (for Model Garden's
  `COCOEvaluator(annotation_file=...)`); category i+1 is category_names[i]."""
  return _atomic_json(coco_annotation_dataset(images, category_names), path)


def annotated_example(img: AnnotatedImage, encoded: bytes,
                      image_format: str = 'jpeg',
                      with_masks: bool = True) -> tf.train.Example:
  """`detection_example` for an AnnotatedImage (semantic mask painted)."""
  masks = img.masks if with_masks else None
  semantic = (semantic_from_instances(masks, img.classes, img.height, img.width)
              if masks is not None else None)
  return detection_example(encoded, img.height, img.width, img.boxes,
                           img.classes, masks, semantic, img.image_id,
                           img.areas, img.is_crowd, image_format)


# ---------------------------------------------------------------- COCO input


def _load_json(annotation_file: str) -> Dict[str, Any]:
  if not fileio.isfile(annotation_file):
    raise FileNotFoundError(
        f'COCO annotation file not found: {annotation_file}')
  try:
    dataset = json.loads(fileio.read_bytes(annotation_file))
  except json.JSONDecodeError as e:
    raise ValueError(f'{annotation_file} is not valid JSON: {e.msg} '
                     f'(line {e.lineno}, column {e.colno})') from None
  except UnicodeDecodeError:
    raise ValueError(f'{annotation_file} is not UTF-8 JSON') from None
  if not isinstance(dataset, dict):
    raise ValueError(f'{annotation_file}: expected a JSON object with '
                     f'"images", "annotations", "categories"')
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(dataset.get(key), list):
      raise ValueError(f'{annotation_file}: "{key}" must be a list')
  if not dataset['categories']:
    raise ValueError(f'{annotation_file}: "categories" is empty')
  return dataset


def _field(entry, key, kind, where):
  if not isinstance(entry, dict) or key not in entry:
    raise ValueError(f'{where} has no "{key}"')
  value = entry[key]
  if kind == 'int' and (isinstance(value, bool) or not isinstance(value, int)):
    raise ValueError(f'{where}: "{key}" must be an integer, got {value!r}')
  if kind == 'str' and not isinstance(value, str):
    raise ValueError(f'{where}: "{key}" must be a string, got {value!r}')
  return value


def _category_map(dataset, annotation_file) -> Tuple[Dict[int, int], List[str]]:
  cats = {}
  for i, cat in enumerate(dataset['categories']):
    cid = _field(cat, 'id', 'int', f'{annotation_file}: category #{i}')
    if cid in cats:
      raise ValueError(f'{annotation_file}: duplicate category id {cid}')
    cats[cid] = str(cat.get('name', cid))
  order = sorted(cats)
  return {cid: i + 1 for i, cid in enumerate(order)}, [cats[c] for c in order]


def _image_header(path: str) -> Tuple[int, int, str]:
  """Height, width and PIL format name, reading only the file header."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(fileio.read_bytes(path))) as im:
      width, height = im.size
      return height, width, im.format
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read image {path}: {outcome.one_line(e)}') from None


def _encoded_image(path: str, pil_format: str) -> Tuple[bytes, str]:
  """The file's bytes (re-encoded as JPEG if tf.io.decode_image can't read it)
  and the `image/format` value."""
  encoded = fileio.read_bytes(path)
  if pil_format in _DECODABLE:
    return encoded, _DECODABLE[pil_format].decode()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  with Image.open(io.BytesIO(encoded)) as im:
    im.convert('RGB').save(buf, format='JPEG', quality=95)
  return buf.getvalue(), 'jpeg'


def _silent_coco(dataset):
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  coco = COCO()
  coco.dataset = dataset
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco


def coco_to_tfrecords(annotation_file: str, image_dir: str, output_prefix: str,
                      num_shards: int = 1, include_masks: bool = True
                      ) -> Tuple[List[str], int, int]:
  """Converts a COCO dataset (JSON + image folder) into Model Garden TFRecords.

  Every image listed in the JSON becomes one record (also images without
  annotations), in JSON order. Per annotation: the bbox [x, y, w, h] in pixels
  is clipped to the image and normalised (boxes of zero width or height are
  skipped, as Model Garden's create_coco_tf_record does); category ids are
  mapped to 1..K in ascending COCO id order; with `include_masks`, the
  instance mask is pycocotools' `annToMask` (polygons or RLE) and the semantic
  mask paints each annotation's mapped id over the earlier ones (0 background;
  crowd regions included).

  Besides the shards `<output_prefix>-0000i-of-0000n` it writes
  `<output_prefix>_label_map.json` (the id mapping) and
  `<output_prefix>_annotations.json` (the COCO ground truth with the mapped ids,
  for Model Garden's COCO evaluator).

  Returns:
    (shard paths, number of images, num_classes = K + 1 including background).
  """
  dataset = _load_json(annotation_file)
  cat_map, names = _category_map(dataset, annotation_file)

  images, seen = [], set()
  for i, img in enumerate(dataset['images']):
    where = f'{annotation_file}: image #{i}'
    image_id = _field(img, 'id', 'int', where)
    file_name = _field(img, 'file_name', 'str', where)
    if image_id in seen:
      raise ValueError(f'{annotation_file}: duplicate image id {image_id}')
    seen.add(image_id)
    path = os.path.join(image_dir, file_name)
    if not fileio.isfile(path):
      raise FileNotFoundError(f'image {file_name!r} (id {image_id}) from '
                              f'{annotation_file} not found in {image_dir}')
    images.append((img, path))

  anns_by_image: Dict[int, list] = {image_id: [] for image_id in seen}
  for i, ann in enumerate(dataset['annotations']):
    ann_id = ann.get('id', '?') if isinstance(ann, dict) else '?'
    where = f'{annotation_file}: annotation #{i} (id {ann_id})'
    image_id = _field(ann, 'image_id', 'int', where)
    if image_id not in anns_by_image:
      raise ValueError(f'{where} refers to unknown image id {image_id}')
    category_id = _field(ann, 'category_id', 'int', where)
    if category_id not in cat_map:
      raise ValueError(f'{where} has unknown category id {category_id}')
    bbox = _field(ann, 'bbox', None, where)
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or
        not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in bbox)):
      raise ValueError(f'{where}: "bbox" must be [x, y, width, height], '
                       f'got {bbox!r}')
    if include_masks and 'segmentation' not in ann:
      raise ValueError(f'{where} has no "segmentation" '
                       '(convert with include_masks=False)')
    anns_by_image[image_id].append(ann)

  # annToMask reads each image's size from the JSON; fill in / check it
  # against the real file first.
  records = []
  for img, path in images:
    height, width, fmt = _image_header(path)
    for key, real in (('height', height), ('width', width)):
      if img.get(key, real) != real:
        raise ValueError(f'{annotation_file}: image id {img["id"]} says '
                         f'{key} {img[key]} but {path} has {real}')
    records.append((dict(img, height=height, width=width), path, fmt))
  coco = None
  if include_masks:
    coco = _silent_coco({'images': [r[0] for r in records],
                         'annotations': [a for v in anns_by_image.values()
                                         for a in v],
                         'categories': dataset['categories']})

  annotated: List[AnnotatedImage] = []

  def examples() -> Iterator[tf.train.Example]:
    for img, path, fmt in records:
      height, width = img['height'], img['width']
      boxes, classes, areas, crowd, masks, segms = [], [], [], [], [], []
      for ann in anns_by_image[img['id']]:
        x, y, w, h = (float(v) for v in ann['bbox'])
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if x1 <= x0 or y1 <= y0:
          continue
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
        classes.append(cat_map[ann['category_id']])
        crowd.append(int(ann.get('iscrowd', 0)))
        mask = None
        if include_masks:
          try:
            mask = coco.annToMask(ann).astype(np.uint8)
          except Exception as e:  # pylint: disable=broad-except
            raise ValueError(f'{annotation_file}: annotation id '
                             f'{ann.get("id")} has a bad segmentation: '
                             f'{outcome.one_line(e)}') from None
          masks.append(mask)
          segms.append(_rle(mask))
        area = ann.get('area')
        if not isinstance(area, (int, float)) or isinstance(area, bool):
          area = (float(mask.sum()) if mask is not None
                  else (x1 - x0) * (y1 - y0))
        areas.append(float(area))
      n = len(boxes)
      record = AnnotatedImage(
          image_id=img['id'], height=height, width=width,
          boxes=np.asarray(boxes, np.float64).reshape(n, 4),
          classes=np.asarray(classes, np.int64),
          areas=np.asarray(areas, np.float32),
          is_crowd=np.asarray(crowd, np.int64),
          masks=(np.asarray(masks, np.uint8).reshape(n, height, width)
                 if include_masks else None),
          segmentations=segms if include_masks else None,
          file_name=img['file_name'])
      encoded, image_format = _encoded_image(path, fmt)
      example = annotated_example(record, encoded, image_format,
                                  with_masks=include_masks)
      annotated.append(record._replace(masks=None))  # JSON keeps the RLEs.
      yield example

  paths = data.write_tfrecords(examples(), output_prefix, num_shards)
  _atomic_json({'num_classes': len(names) + 1,
                'categories': [{'id': cat_map[c], 'coco_id': c, 'name': n}
                               for c, n in zip(sorted(cat_map), names)]},
               label_map_path(output_prefix))
  write_coco_annotations(annotation_path(output_prefix), annotated, names)
  return paths, len(records), len(names) + 1
