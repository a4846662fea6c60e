"""nas-garden trainer: trials on TF Model Garden, and the search controller.

Importing the package is cheap; TensorFlow loads only with the modules that
build or train models.
"""

import os

# Model Garden and these modules build with tf_keras (Keras 2). Unless told
# otherwise, importing TensorFlow also imports Keras 3 (for `tf.keras`) and
# with it scikit-learn: 0.8 s of every trial process, for a module nothing
# here uses. With this set before TensorFlow loads, `tf.keras` is tf_keras.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
