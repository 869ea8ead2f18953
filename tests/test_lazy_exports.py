"""The packages that list their names lazily (vidistill.lazy_exports): every public name resolves,
importing the package loads none of the heavy libraries, and a wrong name is a clear AttributeError."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The public names as of issue 20; removing one breaks robot and user code.
PUBLIC = {
    "vidistill.runtime": {
        "load_encoder", "choose_backend", "Encoder", "Features", "tokens_to_grid", "grid_to_tokens",
        "MissingBackendError", "find_artefacts", "make_ort_session", "tensorrt_problem",
    },
    "vidistill.robot_adapters": {
        "FeatureObservationWrapper", "VectorFeatureObservationWrapper", "SB3FeatureVecEnvWrapper",
        "GridFeaturesExtractor", "VisionTower",
    },
    "vidistill.data": {
        "VideoSource", "VideoFileSource", "FrameFolderSource", "JpegCacheSource", "discover_sources",
        "discover", "ClipIndex", "ClipSampler", "select_usable", "ClipViews", "FrameViews", "ClipSample",
        "build_views", "clip_frames", "ClipBatch", "ClipDataset", "collate_clips", "build_dataset",
        "build_dataloader", "extract_cache",
    },
}
HEAVY = ("torch", "cv2", "onnxruntime", "av", "timm", "gymnasium", "tensorrt")


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_import_loads_nothing_heavy(package):
    loaded = run_python(f"""
        import sys, {package}
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert loaded == "[]", f"import {package} loaded {loaded}"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_resolves_from_its_module(package):
    out = run_python(f"""
        import importlib, {package} as pkg
        assert set(pkg.__all__) <= set(dir(pkg)), "dir() misses public names"
        for name in pkg.__all__:
            value = getattr(pkg, name)
            home = importlib.import_module(pkg.__name__ + "." + pkg._EXPORTS[name])
            assert value is getattr(home, name), name
            assert pkg.__dict__[name] is value, name + " was not kept after first use"
        print(",".join(sorted(pkg.__all__)))
    """)
    assert set(out.split(",")) == PUBLIC[package]


def test_a_wrong_name_is_an_attribute_error_naming_the_package():
    import vidistill.robot_adapters as adapters

    with pytest.raises(AttributeError, match="'vidistill.robot_adapters' has no attribute 'load_encoder'"):
        adapters.load_encoder  # noqa: B018  (moved to vidistill.runtime; not re-exported)
    with pytest.raises(ImportError):
        from vidistill.data import NoSuchSource  # noqa: F401
