"""Render a simulated robot benchmark with pybullet's CPU TinyRenderer (no GPU, no downloads).

A Franka Panda (``pybullet_data``) on a table moves through smooth joint trajectories (sums of
sinusoids around a pose above the table) next to a tray and a handful of objects with random
colours and poses, seen by a slowly moving camera. Output::

    DIR/videos/episode_000.mp4 ...          training video (one source per episode)
    DIR/probe/images/{training,validation}/NAME.png
    DIR/probe/annotations/{training,validation}/NAME.png   uint8 classes, 0 = ignore (unused)
    DIR/probe/depth/{training,validation}/NAME.png         uint16 millimetres, 0 = invalid
    DIR/manifest.json                                      parameters, classes, timings

The probe sets are HELD OUT from the training video: other seeds (other object layouts, colours
and trajectories) and a shifted camera. Probe ``training`` = set A, ``validation`` = set B,
disjoint episodes; ``vidistill eval probe|depth ENCODER --data DIR/probe`` reads them as ADE20K.

Classes (from pybullet's segmentation mask, object unique id -> class)::

    1 background (nothing hit)  2 floor  3 table  4 tray  5 robot  6 objects

``--scene b`` renders another workcell with the same classes (other objects, surfaces, light and
cameras; the adaptation benchmark's "robot's own footage", ``benchmarks/adapt``).
``--labelled-every N`` also writes every N-th training-video frame with its labels to
``DIR/labelled/`` (supervision for a base encoder; the probe sets stay held out).

Usage::

    python -m benchmarks.sim_robot.render --output data/sim --episodes 8 --frames 300 --size 256 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("sim_robot.render")

CLASSES = {0: "ignore", 1: "background", 2: "floor", 3: "table", 4: "tray", 5: "robot", 6: "objects"}
BACKGROUND, FLOOR, TABLE, TRAY, ROBOT, OBJECT = 1, 2, 3, 4, 5, 6

TABLE_POS = (0.5, 0.0, 0.0)
TABLE_TOP = 0.625  # table.urdf: slab of 0.05 centred at z = 0.6
ROBOT_BASE = (0.0, 0.0, TABLE_TOP)
TRAY_RANGE = ((0.55, 0.75), (-0.3, 0.3))
OBJECT_RANGE = ((0.3, 1.1), (-0.42, 0.42))
# (urdf, global scale) pairs sampled for the tabletop objects
OBJECT_URDFS = (
    ("cube_small.urdf", 2.5),
    ("sphere_small.urdf", 2.5),
    ("duck_vhacd.urdf", 1.8),
    ("lego/lego.urdf", 3.5),
    ("objects/mug.urdf", 1.4),
    ("jenga/jenga.urdf", 1.6),
    ("random_urdfs/000/000.urdf", 1.8),
    ("random_urdfs/001/001.urdf", 1.8),
    ("random_urdfs/002/002.urdf", 1.8),
)
# A Panda pose above the table (7 arm joints) and the joint limits of panda.urdf.
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])
LOWER = np.array([-2.9, -1.76, -2.9, -3.07, -2.9, -0.01, -2.9])
UPPER = np.array([2.9, 1.76, 2.9, -0.07, 2.9, 3.75, 2.9])
AMPLITUDE = np.array([1.1, 0.5, 0.6, 0.5, 0.9, 0.5, 1.2])  # radians, per joint, summed over terms

NEAR, FAR = 0.05, 6.0
FOV = 60.0


@dataclass
class Camera:
    """A camera orbiting the table slowly: yaw/pitch/distance oscillate around a centre."""

    yaw: float = 90.0  # degrees; 90 = looking from +x (across the table) back at the robot
    pitch: float = -35.0
    distance: float = 1.45
    target: tuple[float, float, float] = (0.45, 0.0, TABLE_TOP + 0.1)
    yaw_amp: float = 25.0
    pitch_amp: float = 6.0
    dist_amp: float = 0.15
    period: float = 20.0  # seconds for one full oscillation
    phase: float = 0.0

    def view_at(self, t: float) -> dict:
        w = 2 * math.pi * t / self.period + self.phase
        return dict(
            cameraTargetPosition=self.target,
            distance=self.distance + self.dist_amp * math.sin(0.7 * w + 1.0),
            yaw=self.yaw + self.yaw_amp * math.sin(w),
            pitch=self.pitch + self.pitch_amp * math.sin(1.3 * w + 0.5),
            roll=0.0,
            upAxisIndex=2,
        )


TRAIN_CAMERA = Camera()
# Held-out probe episodes: a camera shifted in yaw, pitch, height and distance.
HELD_OUT_CAMERA = Camera(yaw=125.0, pitch=-45.0, distance=1.6, target=(0.5, 0.05, TABLE_TOP + 0.05))

# Scene B's (tabletop) objects: none of scene A's shapes.
OBJECT_URDFS_B = (
    ("teddy_vhacd.urdf", 1.4),
    ("soccerball.urdf", 0.11),
    ("sphere8cube.urdf", 0.09),
    ("block.urdf", 1.2),
    ("cube.urdf", 0.08),
    ("random_urdfs/100/100.urdf", 1.4),
    ("random_urdfs/101/101.urdf", 1.3),
    ("random_urdfs/102/102.urdf", 1.4),
    ("random_urdfs/103/103.urdf", 1.4),
)


@dataclass(frozen=True)
class SceneStyle:
    """What makes one workcell look like itself: objects, surfaces, light and cameras.

    Scene "a" is the benchmark's original scene (Table 1; the adaptation benchmark's base
    encoder is trained on it). Scene "b" is "the robot's own footage" for the adaptation
    benchmark: other objects, a dark wooden table on a tinted floor, warm light from the other
    side, and cameras looking from the robot's side. The classes are the same, so one probe reads both.
    """

    objects: tuple[tuple[str, float], ...] = OBJECT_URDFS
    num_objects: int = 8
    table_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # times a random shade per episode
    floor_rgba: tuple[float, float, float, float] | None = None  # None: the plane's own texture
    tray_rgba: tuple[float, float, float, float] | None = None
    light_direction: tuple[float, float, float] = (1.0, 0.6, 2.0)
    light: dict = field(default_factory=dict)  # extra getCameraImage light kwargs (colour, coefficients)
    train_camera: Camera = field(default_factory=lambda: TRAIN_CAMERA)
    held_out_camera: Camera = field(default_factory=lambda: HELD_OUT_CAMERA)
    seed_offset: int = 0  # added to every episode seed: scenes never share a layout


SCENES = {
    "a": SceneStyle(),
    "b": SceneStyle(
        objects=OBJECT_URDFS_B,
        num_objects=10,
        table_rgb=(0.62, 0.42, 0.26),
        floor_rgba=(0.55, 0.6, 0.72, 1.0),
        tray_rgba=(0.25, 0.3, 0.35, 1.0),
        light_direction=(-1.2, -1.0, 1.6),
        light=dict(lightColor=(1.0, 0.85, 0.68), lightAmbientCoeff=0.45, lightDiffuseCoeff=0.6),
        train_camera=Camera(yaw=-35.0, pitch=-48.0, distance=1.25, target=(0.5, -0.05, TABLE_TOP),
                            yaw_amp=20.0, pitch_amp=5.0, dist_amp=0.1, period=16.0),
        held_out_camera=Camera(yaw=-60.0, pitch=-50.0, distance=1.55, target=(0.55, 0.05, TABLE_TOP),
                               yaw_amp=20.0, pitch_amp=5.0, dist_amp=0.1, period=16.0),
        seed_offset=50_000,
    ),
}


@dataclass
class Trajectory:
    """q(t) = HOME + sum_k a_k sin(2 pi f_k t + phi_k), clipped to the joint limits (smooth)."""

    amps: np.ndarray  # (terms, 7)
    freqs: np.ndarray  # (terms, 7) Hz
    phases: np.ndarray  # (terms, 7)
    grip_freq: float = 0.2
    grip_phase: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator, terms: int = 3) -> Trajectory:
        amps = rng.uniform(0.3, 1.0, (terms, 7)) * AMPLITUDE / terms
        freqs = rng.uniform(0.04, 0.25, (terms, 7))
        phases = rng.uniform(0, 2 * np.pi, (terms, 7))
        return cls(amps, freqs, phases, float(rng.uniform(0.1, 0.4)), float(rng.uniform(0, 2 * np.pi)))

    def joints(self, t: float) -> np.ndarray:
        q = HOME + (self.amps * np.sin(2 * np.pi * self.freqs * t + self.phases)).sum(0)
        return np.clip(q, LOWER, UPPER)

    def gripper(self, t: float) -> float:
        return 0.02 + 0.02 * math.sin(2 * math.pi * self.grip_freq * t + self.grip_phase)


@dataclass
class Scene:
    client: int
    robot: int
    arm_joints: list[int]
    finger_joints: list[int]
    class_of: dict[int, int] = field(default_factory=dict)  # body unique id -> class
    style: SceneStyle | None = None  # light and cameras (None: scene "a")


def _random_colour(rng: np.random.Generator) -> list[float]:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(120, 256)]]])
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    return [float(c) for c in rgb] + [1.0]


def build_scene(p, client: int, rng: np.random.Generator, num_objects: int | None = None,
                style: SceneStyle = SCENES["a"]) -> Scene:
    """Reset the simulation and lay out a new random scene (layout, colours) in ``style``."""
    import pybullet_data

    p.resetSimulation(physicsClientId=client)
    p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    class_of: dict[int, int] = {}

    def load(urdf: str, pos, cls: int, orn=(0, 0, 0, 1), scale: float = 1.0, fixed: bool = True) -> int:
        uid = p.loadURDF(urdf, pos, orn, useFixedBase=fixed, globalScaling=scale, physicsClientId=client)
        class_of[uid] = cls
        return uid

    floor = load("plane.urdf", (0, 0, 0), FLOOR)
    if style.floor_rgba is not None:
        p.changeVisualShape(floor, -1, rgbaColor=list(style.floor_rgba), physicsClientId=client)
    table = load("table/table.urdf", TABLE_POS, TABLE)
    shade = rng.uniform(0.45, 1.0)
    tint = np.clip(shade * np.asarray(style.table_rgb) * (1 + rng.uniform(-0.15, 0.15, 3)), 0, 1)
    p.changeVisualShape(table, -1, rgbaColor=[*tint.tolist(), 1.0], physicsClientId=client)
    tray_pos = (rng.uniform(*TRAY_RANGE[0]), rng.uniform(*TRAY_RANGE[1]), TABLE_TOP)
    tray_orn = p.getQuaternionFromEuler((0, 0, rng.uniform(-0.4, 0.4)))
    tray = load("tray/traybox.urdf", tray_pos, TRAY, tray_orn, scale=0.7)
    if style.tray_rgba is not None:
        p.changeVisualShape(tray, -1, rgbaColor=list(style.tray_rgba), physicsClientId=client)
    robot = load("franka_panda/panda.urdf", ROBOT_BASE, ROBOT)

    for _ in range(style.num_objects if num_objects is None else num_objects):
        urdf, scale = style.objects[int(rng.integers(len(style.objects)))]
        for _attempt in range(20):  # keep objects out of the tray (they sit on the table top)
            x, y = rng.uniform(*OBJECT_RANGE[0]), rng.uniform(*OBJECT_RANGE[1])
            if abs(x - tray_pos[0]) > 0.25 or abs(y - tray_pos[1]) > 0.25:
                break
        orn = p.getQuaternionFromEuler((0, 0, rng.uniform(0, 2 * np.pi)))
        uid = load(urdf, (x, y, TABLE_TOP + 0.05), OBJECT, orn, scale=scale, fixed=False)
        aabb_min, _ = p.getAABB(uid, physicsClientId=client)
        pos, orn = p.getBasePositionAndOrientation(uid, physicsClientId=client)
        # rest the object on the table top (kinematic scene: no physics stepping needed)
        p.resetBasePositionAndOrientation(uid, (pos[0], pos[1], pos[2] - (aabb_min[2] - TABLE_TOP)), orn,
                                          physicsClientId=client)
        for link in range(-1, p.getNumJoints(uid, physicsClientId=client)):
            p.changeVisualShape(uid, link, rgbaColor=_random_colour(rng), physicsClientId=client)

    arm, fingers = [], []
    for j in range(p.getNumJoints(robot, physicsClientId=client)):
        info = p.getJointInfo(robot, j, physicsClientId=client)
        name = info[1].decode()
        if info[2] == p.JOINT_REVOLUTE:
            arm.append(j)
        elif info[2] == p.JOINT_PRISMATIC and "finger" in name:
            fingers.append(j)
    return Scene(client, robot, arm, fingers, class_of, style)


def pose_robot(p, scene: Scene, traj: Trajectory, t: float) -> None:
    for j, q in zip(scene.arm_joints, traj.joints(t), strict=True):
        p.resetJointState(scene.robot, j, float(q), physicsClientId=scene.client)
    for j in scene.finger_joints:
        p.resetJointState(scene.robot, j, traj.gripper(t), physicsClientId=scene.client)


def projection_matrix(p, size: int) -> list[float]:
    return p.computeProjectionMatrixFOV(fov=FOV, aspect=1.0, nearVal=NEAR, farVal=FAR)


def metric_depth(buffer: np.ndarray, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """OpenGL depth buffer in [0, 1] -> metric depth along the optical axis (metres)."""
    return far * near / (far - (far - near) * buffer)


def render_frame(
    p, scene: Scene, view: list[float], proj: list[float], size: int, shadow: bool = True, labels: bool = True
):
    """(rgb uint8 HxWx3, class map uint8 HxW, depth metres float32 HxW, 0 where nothing was hit).

    ``labels=False`` (training video) skips the segmentation pass and returns (rgb, None, None).
    """
    style = scene.style or SCENES["a"]
    _, _, rgba, depth_buf, seg = p.getCameraImage(
        size, size, view, proj,
        renderer=p.ER_TINY_RENDERER, shadow=int(shadow), lightDirection=style.light_direction,
        flags=0 if labels else p.ER_NO_SEGMENTATION_MASK,
        physicsClientId=scene.client, **style.light,
    )
    rgb = np.asarray(rgba, np.uint8).reshape(size, size, 4)[..., :3].copy()
    if not labels:
        return rgb, None, None
    seg = np.asarray(seg, np.int64).reshape(size, size)
    depth = metric_depth(np.asarray(depth_buf, np.float64).reshape(size, size)).astype(np.float32)
    uid = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)  # low 24 bits: body id (link in the high bits)
    classes = np.full((size, size), BACKGROUND, np.uint8)
    for body, cls in scene.class_of.items():
        classes[uid == body] = cls
    depth[seg < 0] = 0.0
    return rgb, classes, depth


def unproject(depth: np.ndarray, view: list[float], proj: list[float]) -> np.ndarray:
    """Metric depth (along the optical axis) -> world points (H, W, 3), for checks and tools."""
    h, w = depth.shape
    v = np.asarray(view, np.float64).reshape(4, 4).T  # pybullet matrices are column-major
    pr = np.asarray(proj, np.float64).reshape(4, 4).T
    # TinyRenderer samples pixel (i, j) at NDC ((i + 1) / w * 2 - 1, 1 - (j + 1) / h * 2), not at the
    # pixel centre: measured, floor points then un-project to z = 0 within micrometres.
    xs = (np.arange(w) + 1.0) / w * 2 - 1
    ys = 1 - (np.arange(h) + 1.0) / h * 2
    xn, yn = np.meshgrid(xs, ys)
    cam = np.stack([xn * depth / pr[0, 0], yn * depth / pr[1, 1], -depth, np.ones_like(depth)], -1)
    world = cam @ np.linalg.inv(v).T
    return world[..., :3]


def episode_frames(
    p, scene: Scene, traj: Trajectory, camera: Camera, times, size: int, shadow: bool = True, labels: bool = True
):
    proj = projection_matrix(p, size)
    for t in times:
        pose_robot(p, scene, traj, t)
        view = p.computeViewMatrixFromYawPitchRoll(**camera.view_at(t))
        yield render_frame(p, scene, view, proj, size, shadow, labels)


def save_depth_mm(path: Path, depth_m: np.ndarray) -> None:
    mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(path), mm)


def write_still(root: Path, split: str, stem: str, rgb: np.ndarray, classes: np.ndarray, depth: np.ndarray) -> None:
    """One labelled still in the ADE layout: image, class map, depth (aligned, same size)."""
    cv2.imwrite(str(root / "images" / split / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "annotations" / split / f"{stem}.png"), classes)
    save_depth_mm(root / "depth" / split / f"{stem}.png", depth)


def make_ade_folders(root: Path, splits=("training", "validation")) -> None:
    for sub in ("images", "annotations", "depth"):
        for split in splits:
            (root / sub / split).mkdir(parents=True, exist_ok=True)


def render_training_video(
    p, client, path: Path, seed: int, frames: int, size: int, fps: float, shadow: bool,
    style: SceneStyle = SCENES["a"], labelled_root: Path | None = None, labelled_every: int = 0,
) -> int:
    """One training episode as mp4. With ``labelled_every`` > 0, every n-th frame is also written
    with its labels into ``labelled_root`` (ADE layout, split ``training``): supervision for a
    base encoder trained on this scene, never used by the probes. Returns labelled stills written."""
    rng = np.random.default_rng(seed)
    scene = build_scene(p, client, rng, style=style)
    traj = Trajectory.random(rng)
    cam = Camera(**{**style.train_camera.__dict__, "phase": float(rng.uniform(0, 2 * np.pi))})
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cv2.VideoWriter (mp4v) cannot write here")
    proj = projection_matrix(p, size)
    labelled = 0
    try:
        for i, t in enumerate(np.arange(frames) / fps):
            pose_robot(p, scene, traj, t)
            view = p.computeViewMatrixFromYawPitchRoll(**cam.view_at(t))
            with_labels = labelled_root is not None and labelled_every > 0 and i % labelled_every == 0
            rgb, classes, depth = render_frame(p, scene, view, proj, size, shadow, with_labels)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if with_labels:
                write_still(labelled_root, "training", f"{path.stem}_{i:05d}", rgb, classes, depth)
                labelled += 1
    finally:
        writer.release()
    return labelled


def render_probe_episode(
    p, client, root: Path, split: str, name: str, seed: int, stills: int, size: int, duration: float, shadow: bool,
    style: SceneStyle = SCENES["a"],
) -> None:
    """Stills spread over one held-out episode: image, class map, depth (aligned, same size)."""
    rng = np.random.default_rng(seed)
    scene = build_scene(p, client, rng, style=style)
    traj = Trajectory.random(rng)
    cam = Camera(**{**style.held_out_camera.__dict__, "phase": float(rng.uniform(0, 2 * np.pi))})
    times = np.linspace(0, duration, stills, endpoint=False) + rng.uniform(0, duration / max(stills, 1))
    for i, (rgb, classes, depth) in enumerate(episode_frames(p, scene, traj, cam, times, size, shadow)):
        write_still(root, split, f"{name}_{i:04d}", rgb, classes, depth)


# Seeds: training episodes use seed*1000 + i; probe set A seed*1000 + 500 + i; set B
# seed*1000 + 700 + i, so the three never share a layout or a trajectory (plus the scene's offset).
def episode_seed(seed: int, kind: str, i: int, scene: str = "a") -> int:
    return SCENES[scene].seed_offset + seed * 1000 + {"train": 0, "probe_a": 500, "probe_b": 700}[kind] + i


def render_benchmark(
    output: str | Path,
    episodes: int = 8,
    frames: int = 300,
    size: int = 256,
    seed: int = 0,
    probe_episodes: int | None = None,
    probe_frames: int = 8,
    probe_size: int | None = None,
    fps: float = 30.0,
    shadow: bool = True,
    scene: str = "a",
    labelled_every: int = 0,
) -> dict:
    """Render everything; returns the manifest (also written to ``output/manifest.json``).

    ``scene``: a key of ``SCENES``. ``labelled_every`` > 0 also writes every n-th training-video
    frame with labels to ``output/labelled`` (training supervision, separate from the probe sets).
    """
    import pybullet as p
    from tqdm import tqdm

    if scene not in SCENES:
        raise ValueError(f"scene {scene!r}: choose one of {sorted(SCENES)}")
    style = SCENES[scene]
    out = Path(output)
    probe_episodes = probe_episodes if probe_episodes is not None else max(2, episodes // 2)
    probe_size = probe_size or size
    (out / "videos").mkdir(parents=True, exist_ok=True)
    probe_root = out / "probe"
    make_ade_folders(probe_root)
    labelled_root = out / "labelled" if labelled_every > 0 else None
    if labelled_root is not None:
        make_ade_folders(labelled_root, ("training",))
    client = p.connect(p.DIRECT)
    timings = {}
    labelled = 0
    try:
        t0 = time.perf_counter()
        videos = []
        for i in tqdm(range(episodes), desc="training episodes", disable=None):
            path = out / "videos" / f"episode_{i:03d}.mp4"
            labelled += render_training_video(p, client, path, episode_seed(seed, "train", i, scene), frames, size,
                                              fps, shadow, style, labelled_root, labelled_every)
            videos.append(str(path.relative_to(out)))
        t1 = time.perf_counter()
        duration = frames / fps
        for split, kind in (("training", "probe_a"), ("validation", "probe_b")):
            for i in tqdm(range(probe_episodes), desc=f"probe {split}", disable=None):
                render_probe_episode(p, client, probe_root, split, f"{kind[-1]}{i:03d}",
                                     episode_seed(seed, kind, i, scene), probe_frames, probe_size, duration, shadow,
                                     style)
        t2 = time.perf_counter()
        timings = {
            "training_video_s": t1 - t0,
            "probe_s": t2 - t1,
            "ms_per_training_frame": 1000 * (t1 - t0) / max(1, episodes * frames),
            "ms_per_probe_frame": 1000 * (t2 - t1) / max(1, 2 * probe_episodes * probe_frames),
        }
    finally:
        p.disconnect(client)
    manifest = {
        "scene": scene,
        "classes": {str(k): v for k, v in CLASSES.items()},
        "episodes": episodes, "frames": frames, "size": size, "fps": fps, "seed": seed,
        "probe_episodes": probe_episodes, "probe_frames": probe_frames, "probe_size": probe_size,
        "videos": videos, "probe": "probe", "shadow": shadow,
        "depth": {"units": "millimetres, uint16 PNG, 0 = invalid", "near": NEAR, "far": FAR},
        "timings": timings,
    }
    if labelled_root is not None:
        manifest["labelled"] = {"path": "labelled", "every": labelled_every, "stills": labelled}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, help="output folder")
    ap.add_argument("--episodes", type=int, default=8, help="training video episodes (default 8)")
    ap.add_argument("--frames", type=int, default=300, help="frames per training episode (default 300 = 10 s)")
    ap.add_argument("--size", type=int, default=256, help="render size in pixels, square (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-episodes", type=int, default=None,
                    help="held-out episodes in EACH probe set A and B (default: max(2, episodes/2))")
    ap.add_argument("--probe-frames", type=int, default=8, help="stills per held-out episode (default 8)")
    ap.add_argument("--probe-size", type=int, default=None, help="probe still size (default: --size)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--no-shadow", action="store_true", help="no shadows (a little faster)")
    ap.add_argument("--scene", default="a", choices=sorted(SCENES),
                    help="a: the original workcell (default); b: other objects, surfaces, light and cameras")
    ap.add_argument("--labelled-every", type=int, default=0, metavar="N",
                    help="also write every N-th training frame with labels to OUTPUT/labelled (default 0: none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        import pybullet  # noqa: F401
    except ImportError:
        print("render.py needs pybullet: pip install 'vidistill[sim]'", file=sys.stderr)
        return 2
    m = render_benchmark(args.output, args.episodes, args.frames, args.size, args.seed, args.probe_episodes,
                         args.probe_frames, args.probe_size, args.fps, not args.no_shadow, args.scene,
                         args.labelled_every)
    t = m["timings"]
    print(f"rendered {args.episodes} x {args.frames} training frames ({t['ms_per_training_frame']:.1f} ms/frame) "
          f"and 2 x {m['probe_episodes']} x {args.probe_frames} probe stills "
          f"({t['ms_per_probe_frame']:.1f} ms/frame) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
