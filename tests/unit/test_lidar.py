"""Generated lidar scenes, their TFRecord format, and KITTI conversion: a
generated scene written as KITTI files (velodyne, label_2, calib) converts
back to the same points and boxes; bad frames are refused naming the file."""

import glob

import numpy as np
import pytest
import tensorflow as tf

from trainer.datasets import kitti
from trainer.datasets import lidar

# KITTI's published calibration of training frame 000000.
R0_RECT = (9.999239e-01, 9.837760e-03, -7.445048e-03, -9.869795e-03,
           9.999421e-01, -4.278459e-03, 7.402527e-03, 4.351614e-03,
           9.999631e-01)
TR_VELO_TO_CAM = (7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03,
                  1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02,
                  9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01)
KITTI_NAMES = {1: 'Car', 2: 'Pedestrian', 3: 'Cyclist'}


def _inside(points, box, margin=0.0):
  x, y, z, l, w, h, yaw = box
  d = points[:, :3] - [x, y, z]
  along = d[:, 0] * np.cos(yaw) + d[:, 1] * np.sin(yaw)
  across = -d[:, 0] * np.sin(yaw) + d[:, 1] * np.cos(yaw)
  return ((np.abs(along) <= l / 2 + margin) &
          (np.abs(across) <= w / 2 + margin) &
          (np.abs(d[:, 2]) <= h / 2 + margin))


def _scene(i=0):
  return lidar.render_scene(np.random.default_rng([0, 0, i]))


def test_a_scene_is_ground_and_the_visible_faces_of_its_boxes():
  scene = _scene()
  assert scene.points.dtype == np.float32 and scene.points.shape[1] == 4
  low, high = lidar.POINT_RANGE
  assert (scene.points[:, :3] >= low).all() and (
      scene.points[:, :3] < high).all()
  assert 2 <= (scene.classes == 1).sum() <= 8
  on_objects = np.zeros(len(scene.points), bool)
  for box in scene.boxes:
    inside = _inside(scene.points, box, margin=0.15)
    # Every object is seen: nearer ones by more points.
    assert inside.sum() >= 5, box
    on_objects |= inside
  ground = scene.points[~on_objects]
  assert np.abs(ground[:, 2] - lidar.GROUND_Z).max() < 0.2
  # Nothing but the objects rises above the ground.
  assert (scene.points[on_objects, 2] > lidar.GROUND_Z + 0.2).sum() > 0
  np.testing.assert_array_equal(scene.points, _scene().points)


def test_scenes_are_written_and_read_back_as_generated(tmp_path):
  made = lidar.make_scenes(str(tmp_path), num_train=3, num_eval=2, seed=4)
  records = [lidar.decode(r) for r in
             tf.data.TFRecordDataset(sorted(glob.glob(made.eval_glob)))]
  assert len(records) == 2
  for i, record in enumerate(records):
    scene = lidar.render_scene(np.random.default_rng([4, 1, i]))
    assert record['frame_id'].numpy() == f'validation/{i}'.encode()
    np.testing.assert_array_equal(record['points'].numpy(), scene.points)
    np.testing.assert_array_equal(record['boxes'].numpy(), scene.boxes)
    np.testing.assert_array_equal(record['classes'].numpy(), scene.classes)


def write_kitti(folder, scenes):
  """The scenes as a KITTI folder, labels in the rectified camera frame."""
  for sub in ('velodyne', 'label_2', 'calib'):
    (folder / sub).mkdir(parents=True, exist_ok=True)
  r0 = np.array(R0_RECT).reshape(3, 3)
  tr = np.array(TR_VELO_TO_CAM).reshape(3, 4)
  for i, scene in enumerate(scenes):
    frame = f'{i:06d}'
    scene.points.tofile(folder / 'velodyne' / f'{frame}.bin')
    lines = ['DontCare -1 -1 -10 100 120 130 140 -1 -1 -1 -1000 -1000 -1000 '
             '-10']
    for box, class_id in zip(scene.boxes.astype(np.float64), scene.classes):
      x, y, z, l, w, h, yaw = box
      camera = r0 @ tr @ [x, y, z - h / 2, 1.0]
      numbers = ' '.join(repr(float(v)) for v in (
          h, w, l, *camera, -yaw - np.pi / 2))
      lines.append(f'{KITTI_NAMES[class_id]} 0.00 0 0.0 10 20 30 40 {numbers}')
    lines.append('Van 0.00 0 0.0 10 20 30 40 2.0 1.9 4.5 1.0 1.7 20.0 0.1')
    (folder / 'label_2' / f'{frame}.txt').write_text('\n'.join(lines) + '\n')
    (folder / 'calib' / f'{frame}.txt').write_text(
        'P0: ' + ' '.join(['0'] * 12) + '\n'
        'R0_rect: ' + ' '.join(map(str, R0_RECT)) + '\n'
        'Tr_velo_to_cam: ' + ' '.join(map(str, TR_VELO_TO_CAM)) + '\n')


def test_kitti_frames_convert_back_to_the_scenes_points_and_boxes(tmp_path):
  scenes = [_scene(i) for i in range(3)]
  write_kitti(tmp_path / 'kitti', scenes)
  converted = kitti.kitti_to_tfrecords(str(tmp_path / 'kitti'),
                                       str(tmp_path / 'out' / 'kitti'), 2)
  assert converted.num_frames == 3
  assert converted.num_objects == {
      name: sum(int((s.classes == k).sum()) for s in scenes)
      for k, name in enumerate(lidar.CLASS_NAMES, start=1)}
  records = {r['frame_id'].numpy().decode(): r for r in (
      lidar.decode(x) for x in tf.data.TFRecordDataset(converted.paths))}
  assert sorted(records) == ['000000', '000001', '000002']
  for i, scene in enumerate(scenes):
    record = records[f'{i:06d}']
    np.testing.assert_array_equal(record['points'].numpy(), scene.points)
    np.testing.assert_array_equal(record['classes'].numpy(), scene.classes)
    boxes = record['boxes'].numpy()
    np.testing.assert_allclose(boxes[:, :6], scene.boxes[:, :6], atol=1e-4)
    turn = np.angle(np.exp(1j * (boxes[:, 6] - scene.boxes[:, 6])))
    np.testing.assert_allclose(turn, 0, atol=1e-5)


@pytest.mark.parametrize('break_frame, message', [
    ('points_size', 'velodyne/000001.bin: 17 bytes is not a whole number of '
                    'points'),
    ('unknown_class', "label_2/000001.txt line 2: unknown class 'Truk'"),
    ('short_label', 'label_2/000001.txt line 2: 9 fields, KITTI labels have '
                    '15'),
    ('no_calib', 'velodyne/000001.bin has no '),
    ('calib_key', 'calib/000001.txt: needs Tr_velo_to_cam with 12 numbers'),
])
def test_a_bad_frame_is_refused_naming_its_file_and_nothing_is_written(
    tmp_path, break_frame, message):
  write_kitti(tmp_path, [_scene(0), _scene(1), _scene(2)])
  label = tmp_path / 'label_2' / '000001.txt'
  calib = tmp_path / 'calib' / '000001.txt'
  if break_frame == 'points_size':
    (tmp_path / 'velodyne' / '000001.bin').write_bytes(b'\0' * 17)
  elif break_frame == 'unknown_class':
    lines = label.read_text().splitlines()
    label.write_text('\n'.join([lines[0], 'Truk' + lines[1][3:], *lines[2:]]))
  elif break_frame == 'short_label':
    lines = label.read_text().splitlines()
    label.write_text('\n'.join([lines[0], 'Car 0 0 0 1 2 3 4 5', *lines[2:]]))
  elif break_frame == 'no_calib':
    calib.unlink()
  else:
    calib.write_text('R0_rect: ' + ' '.join(map(str, R0_RECT)) + '\n')
  with pytest.raises((ValueError, FileNotFoundError)) as raised:
    kitti.kitti_to_tfrecords(str(tmp_path), str(tmp_path / 'out' / 'k'))
  assert message in str(raised.value)
  assert str(tmp_path) in str(raised.value)
  assert not glob.glob(str(tmp_path / 'out' / 'k*'))
