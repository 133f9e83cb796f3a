"""The static world of IRecSim: topics, tags, the item catalogue and the user population.

Everything here is drawn once from the seed and shared by all shards, so a user's or an item's
attributes never depend on how the population is sharded. Items and users are procedural by
default; `kuairand_world` takes them from the real KuaiRand-Pure feature tables instead.
"""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from data.sim_config import CHANNELS, ITEM_FIELDS, MAX_TAGS, USER_FIELDS, SimConfig

DAY = 86400


@dataclasses.dataclass
class Items:
    """Item catalogue; arrays indexed by item id."""

    channel: np.ndarray  # [I]
    publish_day: np.ndarray  # [I] day the item enters the pool (may be negative: pre-existing)
    tags: np.ndarray  # [I, MAX_TAGS] tag ids, 0 = padding
    latent: np.ndarray  # [I, d] unit vectors v_i
    quality: np.ndarray  # [I] q_i (latent, a logit shift)
    duration: np.ndarray  # [I] seconds
    fields: np.ndarray  # [I, len(ITEM_FIELDS)] observable categorical fields
    lifetime_days: np.ndarray  # [I] days in the pool

    def __len__(self):
        return len(self.channel)

    def alive(self, day: int, channel: int) -> np.ndarray:
        """Ids of channel items in the pool on `day`."""
        mask = ((self.channel == channel) & (self.publish_day <= day)
                & (day < self.publish_day + self.lifetime_days))
        return np.flatnonzero(mask)


@dataclasses.dataclass
class Users:
    """User population; arrays indexed by user id."""

    interest: np.ndarray  # [U, d] initial u
    channel_pref: np.ndarray  # [U, C] rho_u
    activity: np.ndarray  # [U] relative session rate
    fields: np.ndarray  # [U, len(USER_FIELDS)] categorical profile fields
    profile_tags: np.ndarray  # [U, MAX_PROFILE] initial long-term tag profile, 0 = padding
    field_names: tuple[str, ...]
    field_sizes: tuple[int, ...]

    def __len__(self):
        return len(self.activity)


@dataclasses.dataclass
class World:
    config: SimConfig
    topic_emb: np.ndarray  # [K, d]
    tag_topic: np.ndarray  # [n_tags + 1], -1 for the padding tag
    items: Items
    users: Users

    @property
    def n_tags(self) -> int:
        return len(self.tag_topic)

    def item_topic(self) -> np.ndarray:
        """[I] each item's topic: its first tag's (topic fatigue, data.mechanisms)."""
        return np.maximum(self.tag_topic[self.items.tags[:, 0]], 0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def _quantile_bucket(values: np.ndarray, n: int) -> np.ndarray:
    cuts = np.quantile(values, np.linspace(0, 1, n + 1)[1:-1])
    return np.searchsorted(cuts, values).astype(np.int64)


def _categorical_from_latents(rng, latents: np.ndarray, size: int, noise: float) -> np.ndarray:
    """A profile field correlated with the latents: argmax(latents @ W + Gumbel noise)."""
    w = rng.normal(size=(latents.shape[1], size)) * 2.0
    gumbel = -np.log(-np.log(rng.uniform(1e-9, 1.0, size=(len(latents), size))))
    return np.argmax(latents @ w + noise * gumbel, axis=1).astype(np.int64)


def _topics_and_tags(cfg: SimConfig, rng, n_tags: int):
    topic_emb = _unit(rng.normal(size=(cfg.n_topics, cfg.latent_dim)))
    tag_topic = np.r_[-1, rng.integers(0, cfg.n_topics, size=n_tags)]
    return topic_emb, tag_topic


def _draw_tags(rng, n: int, tag_topic: np.ndarray, topic_of_item: np.ndarray) -> np.ndarray:
    """1..MAX_TAGS tags per item: the first of the item's topic, the others mostly too."""
    n_tags = len(tag_topic) - 1
    tags_by_topic = [np.flatnonzero(tag_topic == k) for k in range(tag_topic.max() + 1)]
    count = rng.integers(1, MAX_TAGS + 1, size=n)
    tags = np.zeros((n, MAX_TAGS), np.int64)
    for j in range(MAX_TAGS):
        same_topic = (j == 0) | (rng.uniform(size=n) < 0.7)
        pick = rng.integers(1, n_tags + 1, size=n)
        for k, pool in enumerate(tags_by_topic):
            rows = np.flatnonzero(same_topic & (topic_of_item == k))
            if len(pool) and len(rows):
                pick[rows] = pool[rng.integers(0, len(pool), size=len(rows))]
        tags[:, j] = np.where(j < count, pick, 0)
    # Duplicated tags within an item become padding, kept left-aligned.
    for j in range(1, MAX_TAGS):
        dup = (tags[:, j:j + 1] == tags[:, :j]).any(axis=1) & (tags[:, j] > 0)
        tags[dup, j] = 0
    return -np.sort(-tags, axis=1)


def _item_latent(cfg, rng, tags, topic_emb, tag_topic):
    emb = np.where((tags > 0)[..., None], topic_emb[np.maximum(tag_topic[tags], 0)], 0.0)
    mean = emb.sum(1) / np.maximum((tags > 0).sum(1, keepdims=True), 1)
    noise = rng.normal(size=mean.shape) * cfg.item_noise / np.sqrt(cfg.latent_dim) * 2.0
    return _unit(mean + noise).astype(np.float32)


def _procedural_items(cfg: SimConfig, rng, topic_emb, tag_topic) -> Items:
    chans, days = [], []
    for c in range(len(CHANNELS)):
        # Items published from before the warm-up day (-1) so every pool is full from day -1 on.
        for day in range(-cfg.lifetime_days[c], cfg.n_days):
            chans.append(np.full(cfg.new_items_per_day[c], c))
            days.append(np.full(cfg.new_items_per_day[c], day))
    channel = np.concatenate(chans).astype(np.int64)
    publish_day = np.concatenate(days).astype(np.int64)
    n = len(channel)
    topic_popularity = rng.dirichlet(np.full(cfg.n_topics, 1.0))
    topic_of_item = rng.choice(cfg.n_topics, size=n, p=topic_popularity)
    tags = _draw_tags(rng, n, tag_topic, topic_of_item)
    latent = _item_latent(cfg, rng, tags, topic_emb, tag_topic)
    quality = rng.normal(size=n) * cfg.quality_std
    median = np.asarray(cfg.duration_median_s)[channel]
    duration = median * np.exp(rng.normal(size=n) * cfg.duration_sigma)
    return _finish_items(cfg, rng, channel, publish_day, tags, latent, quality, duration)


def _finish_items(cfg, rng, channel, publish_day, tags, latent, quality, duration) -> Items:
    observed_quality = quality + rng.normal(size=len(quality)) * cfg.quality_obs_noise
    fields = np.stack([_quantile_bucket(observed_quality, ITEM_FIELDS[0][1]),
                       _quantile_bucket(np.log(duration), ITEM_FIELDS[1][1])], axis=1)
    lifetime = np.asarray(cfg.lifetime_days, np.int64)[channel]
    return Items(channel=channel, publish_day=publish_day, tags=tags, latent=latent,
                 quality=quality.astype(np.float32), duration=duration.astype(np.float32),
                 fields=fields, lifetime_days=lifetime)


def _initial_profiles(cfg, rng, mixture, tag_topic) -> np.ndarray:
    """Each user's long-term tag profile: tags of topics drawn from the user's mixture."""
    n = len(mixture)
    k = cfg.initial_profile_tags
    cum = np.cumsum(mixture, axis=1)
    topics = (rng.uniform(size=(n, k, 1)) > cum[:, None, :]).sum(-1)
    topics = np.minimum(topics, cfg.n_topics - 1)
    tags_by_topic = [np.flatnonzero(tag_topic == t) for t in range(cfg.n_topics)]
    profile = np.zeros((n, k), np.int64)
    for t, pool in enumerate(tags_by_topic):
        if len(pool):
            rows, cols = np.nonzero(topics == t)
            profile[rows, cols] = pool[rng.integers(0, len(pool), size=len(rows))]
    return profile


def _procedural_users(cfg: SimConfig, rng, topic_emb, tag_topic) -> Users:
    n = cfg.n_users
    mixture = rng.dirichlet(np.full(cfg.n_topics, cfg.topic_concentration), size=n)
    interest = _unit(mixture @ topic_emb).astype(np.float32)
    pref = rng.dirichlet(cfg.channel_concentration * np.asarray(cfg.channel_mix), size=n)
    activity = np.exp(rng.normal(size=n) * cfg.activity_sigma - cfg.activity_sigma ** 2 / 2)
    latents = np.concatenate([np.log(pref), mixture * 3, np.log(activity)[:, None]], axis=1)
    fields = [_categorical_from_latents(rng, latents, size, cfg.field_noise)
              for _, size in USER_FIELDS[:-1]]
    fields.append(_quantile_bucket(activity, USER_FIELDS[-1][1]))
    return Users(interest=interest, channel_pref=pref.astype(np.float32),
                 activity=activity.astype(np.float32), fields=np.stack(fields, axis=1),
                 profile_tags=_initial_profiles(cfg, rng, mixture, tag_topic),
                 field_names=tuple(n for n, _ in USER_FIELDS),
                 field_sizes=tuple(s for _, s in USER_FIELDS))


def make_world(cfg: SimConfig) -> World:
    """The world for `cfg`: procedural, or items and users from KuaiRand-Pure."""
    if cfg.item_source == "kuairand":
        return kuairand_world(cfg)
    rng = np.random.default_rng([cfg.seed, 0])
    topic_emb, tag_topic = _topics_and_tags(cfg, rng, cfg.n_tags)
    items = _procedural_items(cfg, rng, topic_emb, tag_topic)
    users = _procedural_users(cfg, rng, topic_emb, tag_topic)
    return World(cfg, topic_emb, tag_topic, items, users)


# --- KuaiRand-Pure -------------------------------------------------------------------------------
# Channel mapping (docs/simulator.md): KuaiRand has only short-video platform content, so channels
# come from how the content was made: picture posts (LongPicture, PictureSet) -> article;
# Web uploads (reposted web content) -> news; other content -> short_video when at most 60 s,
# long_video otherwise (missing duration counts as short).
KUAIRAND_USER_FIELDS = ("user_active_degree", "follow_user_num_range", "fans_user_num_range",
                        "friend_user_num_range", "register_days_range", "is_video_author")


def _read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found (--kuairand_dir must hold the KuaiRand-Pure "
                                f"feature tables)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def kuairand_channel(upload_type: str, duration_ms: float) -> int:
    if upload_type in ("LongPicture", "PictureSet"):
        return CHANNELS.index("article")
    if upload_type == "Web":
        return CHANNELS.index("news")
    if np.isnan(duration_ms) or duration_ms <= 60_000:
        return CHANNELS.index("short_video")
    return CHANNELS.index("long_video")


def kuairand_world(cfg: SimConfig) -> World:
    """Items from video_features_basic_pure.csv, users from user_features_pure.csv.

    Real: channels (mapped as above), tags, durations, upload order (-> publish day) and the
    users' categorical profile fields. Latent: interest vectors, channel preferences, quality;
    they are drawn conditioned on the real fields so the fields carry signal.
    """
    rng = np.random.default_rng([cfg.seed, 0])
    videos = _read_csv(os.path.join(cfg.kuairand_dir, "video_features_basic_pure.csv"))
    raw_tags = sorted({t for v in videos for t in v["tag"].split(",") if t.strip()}, key=int)
    tag_index = {t: i + 1 for i, t in enumerate(raw_tags)}
    topic_emb, tag_topic = _topics_and_tags(cfg, rng, len(raw_tags))
    n = len(videos)
    duration_ms = np.array([float(v["video_duration"] or "nan") for v in videos])
    channel = np.array([kuairand_channel(v["upload_type"], d) for v, d in zip(videos, duration_ms)])
    tags = np.zeros((n, MAX_TAGS), np.int64)
    for i, v in enumerate(videos):
        ids = [tag_index[t] for t in v["tag"].split(",") if t.strip()][:MAX_TAGS]
        tags[i, :len(ids)] = ids
    # KuaiRand-Pure has three upload dates for its whole pool: the catalogue is one fixed pool,
    # in place before the warm-up day and alive for the whole period.
    publish_day = np.full(n, -1, np.int64)
    latent = _item_latent(cfg, rng, tags, topic_emb, tag_topic)
    quality = rng.normal(size=n) * cfg.quality_std
    median = np.asarray(cfg.duration_median_s)[channel]
    duration = np.where(np.isnan(duration_ms), median, duration_ms / 1000.0)
    items = _finish_items(cfg, rng, channel, publish_day, tags, latent, quality, duration)
    items.lifetime_days = np.full(n, cfg.n_days + 2, np.int64)
    users = _kuairand_users(cfg, rng, topic_emb, tag_topic)
    return World(cfg, topic_emb, tag_topic, items, users)


def _kuairand_users(cfg, rng, topic_emb, tag_topic) -> Users:
    rows = _read_csv(os.path.join(cfg.kuairand_dir, "user_features_pure.csv"))
    if cfg.n_users > len(rows):
        raise ValueError(f"--n_users={cfg.n_users} exceeds the {len(rows)} KuaiRand users")
    rows = [rows[i] for i in np.sort(rng.choice(len(rows), cfg.n_users, replace=False))]
    fields, sizes = [], []
    for name in KUAIRAND_USER_FIELDS:
        values = [r[name] for r in rows]
        vocab = {v: i for i, v in enumerate(sorted(set(values)))}
        fields.append(np.array([vocab[v] for v in values]))
        sizes.append(max(len(vocab), 1))
    fields = np.stack(fields, axis=1).astype(np.int64)
    n = cfg.n_users
    # Latents conditioned on the real fields: a random linear map of their one-hots.
    onehot = np.concatenate([np.eye(s)[fields[:, j]] for j, s in enumerate(sizes)], axis=1)
    pref_logits = onehot @ rng.normal(size=(onehot.shape[1], len(CHANNELS))) * 0.7
    pref = np.array([rng.dirichlet(cfg.channel_concentration * np.asarray(cfg.channel_mix)
                                   * np.exp(l)) for l in pref_logits])
    topic_logits = onehot @ rng.normal(size=(onehot.shape[1], cfg.n_topics))
    alpha = cfg.topic_concentration * np.exp(topic_logits - topic_logits.max(1, keepdims=True))
    mixture = np.array([rng.dirichlet(np.maximum(a, 1e-3)) for a in alpha])
    degree = np.array([r["user_active_degree"] for r in rows])
    activity = np.where(np.isin(degree, ["full_active", "high_active"]), 1.5, 0.7)
    activity = activity * np.exp(rng.normal(size=n) * 0.3)
    return Users(interest=_unit(mixture @ topic_emb).astype(np.float32),
                 channel_pref=pref.astype(np.float32), activity=activity.astype(np.float32),
                 fields=fields, profile_tags=_initial_profiles(cfg, rng, mixture, tag_topic),
                 field_names=KUAIRAND_USER_FIELDS, field_sizes=tuple(sizes))
