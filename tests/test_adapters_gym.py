"""gymnasium wrappers: single env (Box, Dict, render) and vector env (one batched encode)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import runtime_fixtures
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from runtime_fixtures import IMAGE, DictSquareEnv, RenderOnlySquareEnv, SquareEnv

from vidistill.robot_adapters import FeatureObservationWrapper, VectorFeatureObservationWrapper

# session fixtures shared by the adapter tests
artefacts = runtime_fixtures.artefacts
onnx_encoder = runtime_fixtures.onnx_encoder

SHAPES = {"grid": (192, 6, 6), "tokens": (36, 192), "cls": (192,), "pooled": (192,)}


BENIGN = ("infinity", "different from the unwrapped", "not having a spec")


def _check_env(env):
    """gymnasium's check_env passes, and warns only about the (true) infinite feature bounds and
    about being given a wrapper: nothing on dtype, precision or non-deterministic observations."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=False)
    unexpected = [str(w.message) for w in caught if not any(b in str(w.message) for b in BENIGN)]
    assert not unexpected, unexpected


@pytest.mark.parametrize("output", list(SHAPES))
def test_box_env(onnx_encoder, output):
    env = FeatureObservationWrapper(SquareEnv(), onnx_encoder, output=output)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, SHAPES[output], np.float32)
    obs, _ = env.reset(seed=1)
    assert obs.shape == SHAPES[output] and obs.dtype == np.float32 and obs in env.observation_space
    raw, _ = SquareEnv().reset(seed=1)
    np.testing.assert_allclose(obs, onnx_encoder.encode(raw).select(output)[0], atol=1e-6)
    obs, reward, *_ = env.step(0)
    assert obs.shape == SHAPES[output]
    _check_env(env)


def test_encoder_given_as_path(artefacts):
    env = FeatureObservationWrapper(SquareEnv(), artefacts["export"], output="pooled")
    assert env.encoder.backend == "onnx"
    assert env.reset(seed=0)[0].shape == (192,)


def test_dict_env_keeps_proprio(onnx_encoder):
    env = FeatureObservationWrapper(DictSquareEnv(), onnx_encoder, output="cls")
    assert isinstance(env.observation_space, spaces.Dict)
    assert set(env.observation_space.spaces) == {"features", "proprio"}  # image replaced by features
    obs, _ = env.reset(seed=3)
    raw, _ = DictSquareEnv().reset(seed=3)
    np.testing.assert_array_equal(obs["proprio"], raw["proprio"])
    np.testing.assert_allclose(obs["features"], onnx_encoder.encode(raw["pixels"]).cls[0], atol=1e-6)
    assert obs in env.observation_space
    _check_env(env)
    kept = FeatureObservationWrapper(DictSquareEnv(), onnx_encoder, output="cls", keep_pixels=True)
    assert set(kept.observation_space.spaces) == {"features", "proprio", "pixels"}
    obs, _ = kept.reset(seed=3)
    np.testing.assert_array_equal(obs["pixels"], raw["pixels"])
    _check_env(kept)


def test_box_env_keep_pixels(onnx_encoder):
    env = FeatureObservationWrapper(SquareEnv(), onnx_encoder, output="pooled", keep_pixels=True)
    assert set(env.observation_space.spaces) == {"features", "pixels"}
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (IMAGE, IMAGE, 3) and obs in env.observation_space
    _check_env(env)


def test_render_only_env(onnx_encoder):
    env = FeatureObservationWrapper(RenderOnlySquareEnv(render_mode="rgb_array"), onnx_encoder, output="grid")
    assert env.observation_space.shape == (192, 6, 6)
    obs, _ = env.reset(seed=5)
    np.testing.assert_allclose(obs, onnx_encoder.encode(env.render()).grid()[0], atol=1e-6)
    _check_env(env)
    kept = FeatureObservationWrapper(
        RenderOnlySquareEnv(render_mode="rgb_array"), onnx_encoder, output="cls", keep_pixels=True
    )
    assert set(kept.observation_space.spaces) == {"features", "pixels", "state"}
    obs, _ = kept.reset(seed=5)
    assert obs["state"].shape == (2,) and obs["pixels"].shape == (IMAGE, IMAGE, 3)
    _check_env(kept)


@pytest.mark.parametrize("mode", [None, "human"])
def test_render_only_env_without_rgb_array_is_a_clear_error(onnx_encoder, mode):
    with pytest.raises(ValueError, match="render_mode='rgb_array'") as info:
        FeatureObservationWrapper(RenderOnlySquareEnv(render_mode=mode), onnx_encoder)
    assert "holds no RGB image" in str(info.value) and repr(mode) in str(info.value)


def test_pixel_key_errors(onnx_encoder):
    with pytest.raises(ValueError, match="no such key"):
        FeatureObservationWrapper(DictSquareEnv(), onnx_encoder, pixel_key="rgb")
    with pytest.raises(ValueError, match="expected a uint8 Box"):
        FeatureObservationWrapper(DictSquareEnv(), onnx_encoder, pixel_key="proprio")
    chw = gym.wrappers.TransformObservation(
        SquareEnv(), lambda o: o.transpose(2, 0, 1).copy(), spaces.Box(0, 255, (3, IMAGE, IMAGE), np.uint8)
    )
    with pytest.raises(ValueError, match="channels-first"):
        FeatureObservationWrapper(chw, onnx_encoder)
    with pytest.raises(ValueError, match="output must be one of"):
        FeatureObservationWrapper(SquareEnv(), onnx_encoder, output="mean")

    class TwoCams(DictSquareEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Dict({**self.observation_space.spaces, "wrist": self.observation_space["pixels"]})

    assert FeatureObservationWrapper(TwoCams(), onnx_encoder).source.keys == ("pixels", "wrist")  # both cameras
    assert FeatureObservationWrapper(TwoCams(), onnx_encoder, pixel_key="wrist").source.key == "wrist"
    with pytest.raises(ValueError, match="no such key"):
        FeatureObservationWrapper(TwoCams(), onnx_encoder, pixel_key=["wrist", "top"])


# -- vector ----------------------------------------------------------------------------------

def _vec(env_cls, n, mode=AutoresetMode.NEXT_STEP, **kw):
    return SyncVectorEnv([lambda: env_cls(episode_len=3, **kw) for _ in range(n)], autoreset_mode=mode)


def test_vector_batch_equals_per_env_encode(onnx_encoder):
    calls = []
    inner = onnx_encoder.encode

    class Spy:  # a duck-typed encoder is accepted by the wrappers
        def __getattr__(self, name):
            return getattr(onnx_encoder, name)

        def encode(self, images, **kw):
            calls.append(len(images))
            return inner(images, **kw)

    env = VectorFeatureObservationWrapper(_vec(SquareEnv, 4), Spy(), output="grid")
    assert env.single_observation_space == spaces.Box(-np.inf, np.inf, (192, 6, 6), np.float32)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (4, 192, 6, 6), np.float32)
    raw_env = _vec(SquareEnv, 4)
    obs, _ = env.reset(seed=7)
    raw, _ = raw_env.reset(seed=7)
    assert calls == [4]  # ONE batched call for all sub-envs
    for i in range(4):
        np.testing.assert_allclose(obs[i], onnx_encoder.encode(raw[i]).grid()[0], atol=1e-5)
    assert obs in env.observation_space


@pytest.mark.parametrize("output", ["pooled", "tokens"])
def test_vector_autoreset_next_step(onnx_encoder, output):
    env = VectorFeatureObservationWrapper(_vec(SquareEnv, 3), onnx_encoder, output=output)
    raw_env = _vec(SquareEnv, 3)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=11)
    raw, _ = raw_env.reset(seed=11)
    ends = 0
    for _ in range(8):  # episodes of 3 steps: crosses two episode ends and their autoreset steps
        actions = np.array([0, 1, 0])
        obs, rew, term, trunc, _ = env.step(actions)
        raw, rew_raw, term_raw, _, _ = raw_env.step(actions)
        ends += int(term.sum())
        assert obs.shape == (3, *SHAPES[output]) and obs.dtype == np.float32
        np.testing.assert_array_equal(term, term_raw)
        np.testing.assert_array_equal(rew, rew_raw)
        np.testing.assert_allclose(obs, onnx_encoder.encode(raw).select(output), atol=1e-5)
        assert obs in env.observation_space
    assert ends >= 3


def test_vector_dict_env(onnx_encoder):
    env = VectorFeatureObservationWrapper(_vec(DictSquareEnv, 2), onnx_encoder, output="cls")
    assert set(env.single_observation_space.spaces) == {"features", "proprio"}
    assert env.observation_space["features"].shape == (2, 192)
    obs, _ = env.reset(seed=0)
    assert obs["features"].shape == (2, 192) and obs["proprio"].shape == (2, 4)
    obs, *_ = env.step(np.array([1, 1]))
    assert obs in env.observation_space


def test_vector_render_only(onnx_encoder):
    env = VectorFeatureObservationWrapper(
        _vec(RenderOnlySquareEnv, 2, render_mode="rgb_array"), onnx_encoder, output="pooled"
    )
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, onnx_encoder.encode(np.stack(env.render())).pooled(), atol=1e-5)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        VectorFeatureObservationWrapper(_vec(RenderOnlySquareEnv, 2), onnx_encoder)


def test_vector_same_step_transforms_final_obs(onnx_encoder):
    env = VectorFeatureObservationWrapper(_vec(SquareEnv, 2, AutoresetMode.SAME_STEP), onnx_encoder, output="cls")
    raw_env = _vec(SquareEnv, 2, AutoresetMode.SAME_STEP)
    env.reset(seed=2)
    raw_env.reset(seed=2)
    seen_final = 0
    for _ in range(6):
        obs, _, term, trunc, info = env.step(np.array([0, 1]))
        raw, _, _, _, raw_info = raw_env.step(np.array([0, 1]))
        np.testing.assert_allclose(obs, onnx_encoder.encode(raw).cls, atol=1e-5)  # the reset obs
        if "final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                expected = onnx_encoder.encode(raw_info["final_obs"][i]).cls[0]
                np.testing.assert_allclose(info["final_obs"][i], expected, atol=1e-5)
                seen_final += 1
    assert seen_final >= 2


def test_async_vector_env(onnx_encoder):
    venv = gym.vector.AsyncVectorEnv([lambda: SquareEnv(episode_len=2) for _ in range(2)], context="spawn")
    try:
        env = VectorFeatureObservationWrapper(venv, onnx_encoder, output="pooled")
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 192)
        for _ in range(3):
            obs, *_ = env.step(np.array([0, 1]))
        assert obs.shape == (2, 192) and obs.dtype == np.float32
    finally:
        venv.close()
