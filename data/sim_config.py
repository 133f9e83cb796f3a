"""Every constant of IRecSim, with what it models. Each field is also a flag of data.generate.

Calibration targets (SIMULATOR.md, the paper's Table 1 of IRec-4B): overall CTR 9.41%
(355,019,232 / 3,770,955,760), 26.7 impressions and 2.52 clicks per session, 6.26 sessions per
user. `alpha`, `continue_bias` and `sessions_per_day` below were fitted to these by
`python -m data.calibrate` (docs/simulator.md gives the achieved figures). Setting an effect's weight
to 0 switches that effect off (the experiments need controls).
"""
from __future__ import annotations

import dataclasses

from data.config_flags import help_field

CHANNELS = ("news", "article", "long_video", "short_video")
USER_FIELDS = (("age", 6), ("gender", 2), ("city_tier", 4), ("device", 3), ("activity", 4))
ITEM_FIELDS = (("quality_bucket", 5), ("duration_bucket", 5))
CONTEXT_FIELDS = (("hour", 24), ("weekday", 7), ("network", 3), ("item_age_bucket", 6))
MAX_TAGS = 3


@dataclasses.dataclass(frozen=True)
class SimConfig:
    # --- population and period ---
    seed: int = help_field(0, "Random seed; the same seed and shard count give the same bytes.")
    n_users: int = help_field(6000, "Simulated users.")
    n_days: int = help_field(14, "Simulated days (two weeks: Fig. 4 compares adjacent weeks).")
    test_days: int = help_field(3, "Last days that form the chronological test split.")
    item_source: str = help_field("procedural", "Items and users: 'procedural' or 'kuairand' "
                                  "(real KuaiRand-Pure feature tables, see --kuairand_dir).")
    kuairand_dir: str = help_field("", "Folder with user_features_pure.csv and "
                                   "video_features_basic_pure.csv (for --item_source=kuairand).")
    # --- content ---
    n_topics: int = help_field(20, "Latent topics that group the tags.")
    n_tags: int = help_field(300, "Tag vocabulary shared by all channels (ids 1..n_tags).")
    latent_dim: int = help_field(16, "Dimension of user interest and item latent vectors.")
    item_noise: float = help_field(0.5, "Std of the item latent vector around its tags' mean.")
    new_items_per_day: tuple[int, ...] = help_field(
        (300, 60, 15, 15), "New items per day per channel (news, article, long, short video).")
    lifetime_days: tuple[int, ...] = help_field(
        (1, 7, 30, 30), "Days an item stays in the pool per channel (news expires in a day).")
    duration_median_s: tuple[float, ...] = help_field(
        (60.0, 180.0, 1200.0, 30.0), "Median item duration (reading/watching time) per channel, s.")
    duration_sigma: float = help_field(0.5, "Log-normal sigma of item durations.")
    quality_std: float = help_field(0.5, "Std of item quality q_i (a logit shift).")
    quality_obs_noise: float = help_field(0.5, "Noise on the observed quality bucket feature.")
    # --- users ---
    channel_mix: tuple[float, ...] = help_field(
        (0.3, 0.3, 0.2, 0.2), "Global channel mix pi of the preference prior.")
    channel_concentration: float = help_field(
        4.0, "kappa in rho_u ~ Dirichlet(kappa * pi): small = very personal channel preference.")
    topic_concentration: float = help_field(0.2, "Dirichlet concentration of user topic mixtures.")
    sessions_per_day: float = help_field(0.3669, "Mean sessions per user per day (before drift).")
    activity_sigma: float = help_field(0.8, "Log-normal sigma of user activity levels.")
    initial_profile_tags: int = help_field(8, "Tags in a user's long-term profile at day 0.")
    field_noise: float = help_field(1.0, "Gumbel temperature of profile fields given latents "
                                    "(higher = profile fields carry less signal).")
    # --- click model: z = alpha_c + ... (SIMULATOR.md step 3) ---
    alpha: tuple[float, ...] = help_field(
        (-3.148, -3.298, -2.798, -2.698), "Base click logit per channel (videos higher).")
    channel_pref_weight: float = help_field(1.0, "beta in beta*log(C*rho_u[c]).")
    match_weight: float = help_field(2.5, "s in <u, v_i>*s (item-level interest).")
    position_decay: float = help_field(0.6, "eta in examination e_k=(1+k)^-eta; 0 = no position bias.")
    repeat_free: int = help_field(2, "Same-channel items above a slot that cost nothing.")
    repeat_penalty: float = help_field(0.35, "lambda_rep per same-channel item above beyond the free "
                                       "count; 0 switches repetition off.")
    tag_repeat_penalty: float = help_field(0.3, "lambda_tag per item above sharing a tag.")
    novelty_weight: float = help_field(0.15, "lambda_nov per tag of i new to the user profile.")
    freshness_weight: float = help_field(0.4, "Weight of exp(-age/lifetime) in the logit.")
    idiosyncratic_std: float = help_field(0.5, "Std of the fixed user-item term eps_ui.")
    hour_drift: float = help_field(0.3, "Amplitude of the hour-of-day channel drift (videos in "
                                   "the evening, news in the morning); 0 = none.")
    network_effect: float = help_field(0.3, "Video logit shift on wifi vs cellular; 0 = none.")
    # --- dwell ---
    completion_bias: float = help_field(-0.5, "Completion logit intercept.")
    completion_match: float = help_field(1.5, "Completion logit slope on <u, v_i>.")
    dwell_sigma: float = help_field(0.4, "Log-normal noise of dwell time.")
    # --- feedback on the user ---
    interest_drift: float = help_field(0.05, "Step of u towards v_i after a click; 0 = frozen.")
    continue_bias: float = help_field(-0.475, "theta_0: logit of scrolling to another page.")
    continue_clicks: float = help_field(0.35, "theta_1: per click on the page.")
    continue_tags: float = help_field(0.04, "theta_2: per distinct tag on the page.")
    max_pages: int = help_field(30, "Pages a session can last at most.")
    return_weight: float = help_field(0.6, "theta_sat: session rate x exp(theta_sat * tanh("
                                      "satisfaction - reference)); 0 = no long-term effect.")
    satisfaction_new_tag: float = help_field(0.5, "Satisfaction per newly engaged tag.")
    satisfaction_boredom: float = help_field(0.15, "Satisfaction lost per repeated tag in a page.")
    satisfaction_reference: float = help_field(0.9, "Satisfaction per page that keeps the rate.")
    satisfaction_memory: float = help_field(0.5, "EMA factor of daily satisfaction.")
    # --- requests ---
    list_size: int = help_field(10, "Slots per page (the paper recommends top 10).")
    candidates_per_channel: int = help_field(200, "Matching stage output per channel (paper: 200).")
    match_noise: float = help_field(0.3, "Std of the matching stage's score noise.")
    recent_window: int = help_field(60, "Recent impressions the matching stage does not repeat.")
    page_gap_s: int = help_field(45, "Seconds between pages of one session.")
    # --- mechanisms the paper's claims are about (data/mechanisms.py; issue 22). Each is off
    # at 0, so sim_small's bytes are unchanged; configs/sim_claims.flags turns them on. ---
    clickbait_weight: float = help_field(
        0.0, "Click-logit weight of an item's clickbait score b_i ~ U(0, 1) (clicks now); "
        "0 = no clickbait.")
    clickbait_share: float = help_field(
        1.0, "Share of items that carry clickbait: b_i ~ U(0, 1) on a random share of the "
        "items, 0 on the rest (1 = every item, as before; a minority makes the click appeal "
        "and the long-term value of most items independent, so ranking can avoid it).")
    clickbait_satisfaction: float = help_field(
        0.0, "Satisfaction lost per click times b_i (satisfaction later; with "
        "--clickbait_weight, a click-maximiser loses return visits).")
    satisfaction_completion: float = help_field(
        0.0, "Satisfaction per click times its completion (dwell / duration): satisfaction "
        "from what was consumed, not from the click alone.")
    satisfaction_click: float = help_field(
        1.0, "Satisfaction per click (SIMULATOR.md step 6). 0 with --satisfaction_completion: "
        "satisfaction from what the clicks consumed only, not from their count.")
    completion_quality: float = help_field(
        0.0, "Completion-logit weight of an item's quality e_i ~ N(0, 1), drawn independently "
        "of its click appeal: items that attract the same clicks differ in what a click "
        "consumes (with --satisfaction_completion, in satisfaction later); 0 = none.")
    fatigue_weight: float = help_field(
        0.0, "Cross-day channel fatigue: the session rate is x exp(-w * F), F an EMA of the "
        "day's channel concentration sum_c share_c^2 - 1/C. Lowers returns, not today's clicks.")
    topic_fatigue_weight: float = help_field(
        0.0, "Cross-day topic fatigue: the session rate is x exp(-w * G), G an EMA of the "
        "day's topic concentration sum_k share_k^2 - 1/K over the topics of the items shown "
        "(an item's topic: its first tag's). The same interests day after day lower returns, "
        "not today's clicks.")
    satiation_weight: float = help_field(
        0.0, "Short-term channel satiation: the click logit falls by w * S_uc, S_uc the user's "
        "recent clicks on the channel decayed with --satiation_halflife_h.")
    satiation_halflife_h: float = help_field(2.0, "Half-life of channel satiation, hours.")
    triple_weight: float = help_field(
        0.0, "A pure third-order interaction (user age field x 6-hour block x channel, all its "
        "pairwise marginals zero) in the click logit: what pairwise models cannot represent.")
    shock_size: float = help_field(
        0.0, "Logit shift of --shock_channel's items from --shock_day for --shock_days days "
        "(a channel shock: negative = its content got worse).")
    shock_channel: str = help_field("short_video", "The channel of the shock.")
    shock_day: int = help_field(7, "First day of the channel shock.")
    shock_days: int = help_field(3, "Days the channel shock lasts.")
    # --- logging policy (the paper's online base) ---
    epsilon: float = help_field(0.1, "Online exploration: chance a slot gets a uniform candidate.")
    channel_quota: str = help_field("news,article,long_video,short_video,news,article,news,"
                                    "article,long_video,short_video",
                                    "Rule-based channel quota: one entry per slot (3 news, 3 article, "
                                    "2 long, 2 short); the LR orders the page.")
    quota_choices: str = help_field(
        "", "Randomised quotas: alternatives separated by ';', each the count of news, article, "
        "long video and short video items per page (e.g. '3,3,2,2;2,2,3,3;4,2,2,2;2,2,2,4'), "
        "one drawn uniformly per request; the logged propensities marginalise over the draw. "
        "Empty: the fixed --channel_quota.")
    lr_l2: float = help_field(1.0, "L2 strength of the logging policy's daily LR.")

    @classmethod
    def from_json(cls, config: dict) -> SimConfig:
        """The configuration stored in a dataset's metadata.json (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})

    def __post_init__(self):
        n_ch = len(CHANNELS)
        for name in ("new_items_per_day", "lifetime_days", "duration_median_s", "channel_mix",
                     "alpha"):
            if len(getattr(self, name)) != n_ch:
                raise ValueError(f"--{name} needs {n_ch} values (one per channel {CHANNELS}), "
                                 f"got {len(getattr(self, name))}")
        if not 0 < self.test_days < self.n_days:
            raise ValueError(f"--test_days={self.test_days} must be in (0, --n_days={self.n_days})")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"--epsilon={self.epsilon} must be in [0, 1]")
        quota = self.quota_channels()
        if len(quota) != self.list_size:
            raise ValueError(f"--channel_quota has {len(quota)} slots, --list_size is "
                             f"{self.list_size}")
        self.shock_channel_index()
        self.quota_counts()
        if self.satiation_halflife_h <= 0:
            raise ValueError(f"--satiation_halflife_h={self.satiation_halflife_h} must be > 0")
        if self.shock_days < 0:
            raise ValueError(f"--shock_days={self.shock_days} must be >= 0")
        if not 0.0 < self.clickbait_share <= 1.0:
            raise ValueError(f"--clickbait_share={self.clickbait_share} must be in (0, 1]")
        if self.item_source not in ("procedural", "kuairand"):
            raise ValueError(f"--item_source={self.item_source!r}: expected procedural|kuairand")
        if self.item_source == "kuairand" and not self.kuairand_dir:
            raise ValueError("--item_source=kuairand needs --kuairand_dir")
        for c, (per_day, life) in enumerate(zip(self.new_items_per_day, self.lifetime_days)):
            if self.item_source == "procedural" and per_day * life < self.candidates_per_channel:
                raise ValueError(
                    f"channel {CHANNELS[c]} keeps {per_day}x{life} items alive, fewer than "
                    f"--candidates_per_channel={self.candidates_per_channel}")

    def shock_channel_index(self) -> int:
        if self.shock_channel not in CHANNELS:
            raise ValueError(f"--shock_channel={self.shock_channel!r}: expected one of {CHANNELS}")
        return CHANNELS.index(self.shock_channel)

    def quota_counts(self) -> list[tuple[int, ...]]:
        """The alternative per-channel counts of --quota_choices ([] when it is empty)."""
        if not self.quota_choices.strip():
            return []
        out = []
        for part in self.quota_choices.split(";"):
            try:
                counts = tuple(int(x) for x in part.split(","))
            except ValueError:
                raise ValueError(f"--quota_choices: {part!r} is not {len(CHANNELS)} integers "
                                 f"(counts of {', '.join(CHANNELS)})") from None
            if len(counts) != len(CHANNELS) or min(counts) < 0 or sum(counts) != self.list_size:
                raise ValueError(f"--quota_choices: {part!r} needs {len(CHANNELS)} counts >= 0 "
                                 f"summing to --list_size={self.list_size}")
            out.append(counts)
        return out

    def quota_channels(self) -> tuple[int, ...]:
        names = [s.strip() for s in self.channel_quota.split(",")]
        unknown = [s for s in names if s not in CHANNELS]
        if unknown:
            raise ValueError(f"--channel_quota: unknown channels {unknown}; expected {CHANNELS}")
        return tuple(CHANNELS.index(s) for s in names)

    @property
    def test_start_day(self) -> int:
        return self.n_days - self.test_days
