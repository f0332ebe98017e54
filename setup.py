"""gaussiansr-basicsr: GaussianSR (arbitrary-scale SR by 2D Gaussian splatting) as a BasicSR plugin."""
from setuptools import find_packages, setup

setup(
    name='gaussiansr-basicsr',
    version='0.1.0',
    description='GaussianSR arbitrary-scale super-resolution for the BasicSR toolbox',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',  # what the suite is run with (README, .ci/run); older versions are untested
    packages=find_packages(include=['gaussiansr_plugin', 'gaussiansr_plugin.*']),
    # Shipped weights (gaussiansr_plugin/weights): NAME.pth beside its option file NAME.yml.
    package_data={'gaussiansr_plugin.weights': ['*.pth', '*.yml', 'README.md']},
    install_requires=[
        'torch>=2.0',
        'torchvision',  # basicsr imports it
        'basicsr==1.4.2',
        'numpy',
        'opencv-python',
        'pyyaml',
        'lmdb',
        'tb-nightly',
        'scikit-image',  # its bundled photos feed the demo; basicsr declares it too
        'scipy',  # benchmark --pairs (t-interval); basicsr declares it too
        'pillow',
        'matplotlib',  # basicsr explain and the validation figures
        'tqdm',  # progress bars (validation, tools)
    ],
    # onnx: basicsr export and basicsr upscale --model EXPORT_DIR (tested with onnx 1.23.2,
    # onnxruntime 1.32.0, onnxscript 0.7.2, which torch's dynamo exporter needs).
    extras_require={'onnx': ['onnx', 'onnxruntime', 'onnxscript'],
                    'test': ['pytest', 'onnx', 'onnxruntime', 'onnxscript']},
    entry_points={'console_scripts': ['basicsr = gaussiansr_plugin.cli:main']},
)
