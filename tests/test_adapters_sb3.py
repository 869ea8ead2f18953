"""Stable-Baselines3: VecEnv wrapper (terminal observations too), grid extractor, PPO learns."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

import runtime_fixtures  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402
from runtime_fixtures import DictSquareEnv, RenderOnlySquareEnv, SquareEnv  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from vidistill.robot_adapters import GridFeaturesExtractor, SB3FeatureVecEnvWrapper  # noqa: E402

# session fixtures shared by the adapter tests
artefacts = runtime_fixtures.artefacts
onnx_encoder = runtime_fixtures.onnx_encoder



def _dummy(env_cls, n, episode_len=3):
    return DummyVecEnv([lambda: env_cls(episode_len=episode_len) for _ in range(n)])


def test_vecenv_wrapper_encodes_obs_and_terminal_observation(onnx_encoder):
    venv = SB3FeatureVecEnvWrapper(_dummy(SquareEnv, 2), onnx_encoder, output="grid")
    raw = _dummy(SquareEnv, 2)
    assert venv.observation_space == spaces.Box(-np.inf, np.inf, (192, 6, 6), np.float32)
    venv.seed(4)
    raw.seed(4)
    obs, raw_obs = venv.reset(), raw.reset()
    assert obs.shape == (2, 192, 6, 6) and obs.dtype == np.float32
    np.testing.assert_allclose(obs, onnx_encoder.encode(raw_obs).grid(), atol=1e-5)
    terminals = 0
    for _ in range(7):
        actions = np.array([0, 1])
        obs, rewards, dones, infos = venv.step(actions)
        raw_obs, raw_rewards, raw_dones, raw_infos = raw.step(actions)
        np.testing.assert_array_equal(dones, raw_dones)
        np.testing.assert_allclose(obs, onnx_encoder.encode(raw_obs).grid(), atol=1e-5)  # reset obs on done
        for i in np.flatnonzero(dones):
            term = infos[i]["terminal_observation"]
            assert term.shape == (192, 6, 6) and term.dtype == np.float32
            expected = onnx_encoder.encode(raw_infos[i]["terminal_observation"]).grid()[0]
            np.testing.assert_allclose(term, expected, atol=1e-5)
            terminals += 1
    assert terminals >= 4


def test_vecenv_wrapper_dict_and_errors(onnx_encoder):
    venv = SB3FeatureVecEnvWrapper(_dummy(DictSquareEnv, 2, episode_len=2), onnx_encoder, output="pooled")
    assert set(venv.observation_space.spaces) == {"features", "proprio"}
    obs = venv.reset()
    assert obs["features"].shape == (2, 192) and obs["proprio"].shape == (2, 4)
    for _ in range(2):
        obs, _, dones, infos = venv.step(np.array([0, 0]))
    assert dones.all()
    assert set(infos[0]["terminal_observation"]) == {"features", "proprio"}
    assert infos[0]["terminal_observation"]["features"].shape == (192,)
    with pytest.raises(ValueError, match="AddRenderObservation"):
        SB3FeatureVecEnvWrapper(_dummy(RenderOnlySquareEnv, 1), onnx_encoder)


def test_grid_features_extractor_shapes_and_dict():
    box = spaces.Box(-np.inf, np.inf, (192, 6, 6), np.float32)
    ext = GridFeaturesExtractor(box, features_dim=32, channels=8)
    out = ext(torch.randn(3, 192, 6, 6))
    assert out.shape == (3, 32) and ext.features_dim == 32
    dspace = spaces.Dict({"features": box, "proprio": spaces.Box(-1, 1, (4,), np.float32)})
    ext = GridFeaturesExtractor(dspace, features_dim=16, channels=8)
    out = ext({"features": torch.randn(2, 192, 6, 6), "proprio": torch.randn(2, 4)})
    assert out.shape == (2, 16)
    out.sum().backward()
    with pytest.raises(ValueError, match="output='grid'"):
        GridFeaturesExtractor(spaces.Box(-1, 1, (192,), np.float32))


def test_ppo_learns_through_the_wrapper(onnx_encoder):
    """PPO on grid features of a pixel task (square left/right) beats the random policy (0.5)."""

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny policy nets: one thread is faster and immune to busy cores
    try:
        _train_and_evaluate(onnx_encoder)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate(onnx_encoder):
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    start = time.perf_counter()
    venv = SB3FeatureVecEnvWrapper(_dummy(SquareEnv, 8, episode_len=8), onnx_encoder, output="grid")
    venv.seed(0)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=128,
        n_epochs=4,
        learning_rate=1e-3,
        gamma=0.0,  # rewards are immediate
        ent_coef=0.0,
        policy_kwargs=dict(features_extractor_class=GridFeaturesExtractor,
                           features_extractor_kwargs=dict(features_dim=64, channels=16), net_arch=[]),
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=1536)
    eval_env = SB3FeatureVecEnvWrapper(_dummy(SquareEnv, 4, episode_len=8), onnx_encoder, output="grid")
    eval_env.seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not wrapped with a Monitor": episode stats are not used
        mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=16, deterministic=True)
    elapsed = time.perf_counter() - start
    print(f"PPO 1536 steps: mean episode reward {mean_reward:.2f} / 8 (random 4.0), {elapsed:.1f} s")
    assert mean_reward > 6.0
