"""Slate generation: S sequential LRA/HRA decisions over the candidates, in graph, batched.

For slot t = 0..S-1 of every request (Sec. 3.1):
  1. the LRA reads s^l_t (history plus the t items already placed) and gives a^l_t (Eq. 3); the
     channel c_t is the channel of the available candidate most cosine-similar to a^l_t;
  2. the HRA reads s^h_t = [state ; e(c_t)] and gives a^h_t (Eq. 6); the item d_t is the
     available candidate of channel c_t most cosine-similar to a^h_t (never an item already
     placed: the hard channel constraint and no repeats); with item_score="click" it is
     instead the one of highest f([a^l_t; a^h_t], d) (Eq. 16), the click model L_c trains
     (our option: the paper serves by the cosine, Sec. 3.5); with "wolpertinger_q" /
     "wolpertinger_f" the k items nearest a^h_t by cosine, then Q(s^h_t, d) / f chooses;
  3. with probability epsilon the slot instead shows an available candidate drawn uniformly
     (Sec. 3.5's online exploration), and the log records the exact propensity
         P(d_t) = (1 - epsilon) [d_t = greedy item] + epsilon / (available candidates).
The placed item enters the window as an impression with unknown feedback; only its position is
encoded anew, and a prefix-window GRU advances by one step per slot.

A request (dict, B requests, m history positions, N candidates):
    user_id [B], user_fields [B, F_u]
    hist_item_id, hist_channel, hist_slot, hist_feedback, hist_mask [B, m]
    hist_item_fields [B, m, F_i], hist_tags [B, m, T], hist_context [B, m, F_c]
    cand_item_id, cand_channel, cand_mask [B, N]
    cand_item_fields [B, N, F_i], cand_tags [B, N, T], cand_context [B, N, F_c]
        (cand_context: the request's context as seen with that item, e.g. its age bucket)
Output: item_id, channel, index (into the candidates), score (cosine of a^h_t and d_t),
ctr (f(a_t, d_t), Eq. 16), propensity, explored (the slot was an epsilon draw), lra_channel
(c_t), all [B, S];
item_id is -1 where no candidate was left. Greedy slots always show an item of the LRA's c_t.
"""
from __future__ import annotations

import tensorflow as tf

from hrl_rec.config import ITEM_SCORES
from hrl_rec.features import map_positions
from hrl_rec.model import HRLRec

WINDOW_PARTS = ("item_id", "channel", "slot", "item_fields", "tags", "context", "feedback",
                "mask")
CANDIDATE_PARTS = ("item_id", "channel", "item_fields", "tags", "context")
# Wolpertinger's k: the nearest candidates by cosine among which Q or f chooses (the original
# uses ~1-10% of the action space; 10 of a channel's 200 candidates is 5%)
WOLPERTINGER_K = 10


def cosine_matrix(a, d):
    """a [B, k], d [B, N, k] -> [B, N]."""
    return tf.einsum("bk,bnk->bn", tf.math.l2_normalize(a, -1), tf.math.l2_normalize(d, -1))


def masked_argmax(scores, allowed):
    return tf.argmax(tf.where(allowed, scores, tf.fill(tf.shape(scores), -3.0)), axis=-1,
                     output_type=tf.int32)


class SlatePolicy:
    """`policy(request)` -> slate dict (see the module docstring). `epsilon` > 0 explores;
    `item_score` is how the HRA picks the item of channel c_t: "cosine" (Sec. 3.5), "click"
    (Eq. 16's f), or Wolpertinger, the `wolpertinger_k` nearest by cosine and then the HRA
    critic's Q ("wolpertinger_q") or f ("wolpertinger_f") among them."""

    def __init__(self, model: HRLRec, list_size: int, epsilon: float = 0.0, seed: int = 0,
                 item_score: str = "cosine", wolpertinger_k: int = WOLPERTINGER_K):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if item_score not in ITEM_SCORES:
            raise ValueError(f"item_score must be one of {ITEM_SCORES}, got {item_score!r}")
        self.model, self.list_size, self.epsilon = model, list_size, epsilon
        if wolpertinger_k < 1:
            raise ValueError(f"wolpertinger_k must be >= 1, got {wolpertinger_k}")
        self.item_score, self.wolpertinger_k = item_score, wolpertinger_k
        self.seed = tf.Variable(seed, dtype=tf.int64, trainable=False)
        self._compiled = tf.function(self.slate, reduce_retracing=True)

    def __call__(self, request):
        return self._compiled(request)

    def _states(self, agent, f, mask, h0, t: int):
        """The state before slot t from behaviour features f [B, m + S, d_h]."""
        m = self.model.max_seq_len
        lo = 0 if agent.encoder.window == "prefix" else t
        return agent.encoder(f[:, lo:t + m], mask[:, lo:t + m], h0)[:, -1]

    def slate(self, request):
        """The raw-history path: encodes the request's m history behaviours, then the slots."""
        m = self.model.max_seq_len
        d, window, available = self._start(request)
        agents = (("lra", self.model.lra), ("hra", self.model.hra))
        # A prefix GRU advances one step per slot; other encoders re-read their window.
        hist_f, running = {}, {}
        for name, agent in agents:
            f, h0 = agent.behaviours(window)  # history positions do not change below
            hist_f[name] = (f[:, :m], h0)
            if agent.encoder.gru and agent.encoder.window == "prefix":
                running[name] = agent.encoder(f[:, :m], window["mask"][:, :m], h0)[:, -1]
        return self._slots(request, d, window, available, m, running, hist_f)

    # --- the cached-state path (issue 24) ---------------------------------------------------
    def initial_state(self, user_id, user_fields) -> dict:
        """A user's state before any behaviour (STATE_KEYS): each agent's GRU state h_0 (the
        profile, Eq. 2), an empty tail of `span` positions and last_event_id -1."""
        self._check_cacheable()
        b, span = tf.shape(user_id)[0], self.span
        state = {"last_event_id": -tf.ones([b], tf.int64)}
        for name, agent in self._agents():
            profile = agent.fields.profile(user_id, user_fields)
            state[f"{name}_h"] = agent.initial_state(tf.reshape(profile, [b, -1]))
        for k, width in self._part_widths().items():
            state[f"tail_{k}"] = tf.zeros(tf.concat([[b, span], width], 0), tf.int64)
        return state

    def update_state(self, state: dict, user_id, user_fields, events: dict) -> dict:
        """Advances cached states by newly logged behaviours -> the new state.

        events: event_{k} [B, n, ...] for k in WINDOW_PARTS (as hist_{k}) and event_id [B, n],
        an id that grows with time per user (e.g. the impression's timestamp). Behaviours with
        event_mask 0 or an event_id <= the state's last_event_id are ignored, so replaying an
        already-seen behaviour leaves the state as it is (idempotent). Each agent encodes the
        new behaviours' fields (their cumulative fields read the cached tail) and steps its GRU
        over them in event_id order; the tail keeps the last `span` behaviours.
        """
        self._check_cacheable()
        mask = tf.cast(events["event_mask"], tf.bool)
        event_id = tf.cast(events["event_id"], tf.int64)
        fresh = mask & (event_id > state["last_event_id"][:, None])
        lowest = tf.constant(tf.int64.min, tf.int64)
        # the fresh behaviours in event_id order, at the end of the block
        order = tf.argsort(tf.where(fresh, event_id, lowest), axis=1, stable=True)
        kept = tf.gather(fresh, order, batch_dims=1)
        new = {}
        for k in WINDOW_PARTS:                    # ignored behaviours become zero padding
            v = tf.gather(tf.cast(events[f"event_{k}"], tf.int64), order, batch_dims=1)
            keep = tf.reshape(kept, tf.concat([tf.shape(kept), tf.ones_like(
                tf.shape(v)[2:])], 0))
            new[k] = tf.where(keep, v, tf.zeros_like(v))
        new["mask"] = tf.cast(kept, tf.int64)
        window = {k: tf.concat([state[f"tail_{k}"], new[k]], axis=1) for k in WINDOW_PARTS}
        width = tf.shape(window["mask"])[1]
        # compact: padding first, then the tail's behaviours, then the new ones (as a raw
        # history is), so each behaviour's cumulative fields read the same `span` positions
        position = tf.range(width, dtype=tf.int64)[None]
        compact = tf.argsort(tf.where(window["mask"] > 0, position, -1), axis=1, stable=True)
        window = {k: tf.gather(v, compact, batch_dims=1) for k, v in window.items()}
        window["user_id"], window["user_fields"] = user_id, user_fields
        n_fresh = tf.reduce_sum(tf.cast(fresh, tf.int32), axis=1)
        n = tf.shape(new["mask"])[1]
        steps = tf.range(n)[None] >= (n - n_fresh)[:, None]           # [B, n]: fresh ones
        out = {"last_event_id": tf.maximum(state["last_event_id"], tf.reduce_max(
            tf.where(fresh, event_id, lowest), axis=1))}
        for name, agent in self._agents():
            fields, _ = agent.fields(window)
            f = agent.attention(fields[:, -n:])
            seq = agent.encoder.cell(f, mask=steps, initial_state=state[f"{name}_h"])
            out[f"{name}_h"] = tf.where((n_fresh > 0)[:, None], seq[:, -1], state[f"{name}_h"])
        for k in WINDOW_PARTS:
            out[f"tail_{k}"] = window[k][:, -self.span:]
        return out

    def slate_from_state(self, state: dict, request: dict):
        """A slate from cached states: `request` holds user_id, user_fields and the cand_*
        keys (no history). Equals `slate` on a request whose m history behaviours built the
        state from `initial_state` (tested)."""
        self._check_cacheable()
        d = self.model.items({k: request[f"cand_{k}"] for k in CANDIDATE_PARTS})
        window = {k: tf.concat([state[f"tail_{k}"], tf.zeros_like(tf.repeat(
            state[f"tail_{k}"][:, :1], self.list_size, axis=1))], axis=1) for k in WINDOW_PARTS}
        window["user_id"], window["user_fields"] = request["user_id"], request["user_fields"]
        running = {name: state[f"{name}_h"] for name, _ in self._agents()}
        return self._slots(request, d, window, tf.cast(request["cand_mask"], tf.bool),
                           self.span, running, {})

    @property
    def span(self) -> int:
        """Earlier positions a behaviour's cumulative fields read (= the tail a state keeps)."""
        return self.model.lra.fields.span

    def _agents(self):
        return (("lra", self.model.lra), ("hra", self.model.hra))

    def _part_widths(self) -> dict:
        """Trailing dims of each window part: [] or [F_i] / [T] / [F_c]."""
        spec = self.model.spec
        widths = {k: [] for k in WINDOW_PARTS}
        widths.update(item_fields=[len(spec["item_field_names"])], tags=[spec["max_tags"]],
                      context=[len(spec["context_field_names"])])
        return {k: tf.constant(v, tf.int32) for k, v in widths.items()}

    def _check_cacheable(self) -> None:
        for name, agent in self._agents():
            if not (agent.encoder.gru and agent.encoder.window == "prefix"):
                raise ValueError(
                    f"a cached user state needs the prefix GRU (--state_window=prefix, "
                    f"--state_encoder_gru=true); this model's {name.upper()} has "
                    f"state_window={agent.encoder.window}, gru={agent.encoder.gru}: the "
                    "sliding window re-reads the last m behaviours for every state, so serve "
                    "it by the raw-history signature")

    def _slots(self, request, d, window, available, hist_len: int, running: dict,
               hist_f: dict):
        """The S slot decisions. window: hist_len positions then S empty ones; running: the
        GRU state after the history of each agent that steps (prefix GRU); hist_f: the
        history's (f, h_0) of the others (they re-read their window every slot)."""
        model, s, m = self.model, self.list_size, hist_len
        b = tf.shape(request["cand_item_id"])[0]
        n = tf.shape(request["cand_item_id"])[1]
        outputs = {k: [] for k in ("item_id", "channel", "index", "score", "ctr", "propensity",
                                   "explored", "lra_channel")}
        seed = tf.stack([self.seed, tf.constant(0, tf.int64)])
        agents = self._agents()
        running = dict(running)
        placed_f = {"lra": [], "hra": []}
        for t in range(s):
            states = {}
            for name, agent in agents:
                stepped = name in running
                if t > 0:  # encode the item placed at slot t - 1 (only that position is new)
                    # its cumulative fields read the `span` positions before it, no others
                    lo = max(0, m + t - 1 - agent.fields.span)
                    part = map_positions(window, lambda v: v[:, lo:m + t])
                    fields, _ = agent.fields(part)
                    f_new = agent.attention(fields[:, -1:])
                    if stepped:
                        running[name] = agent.encoder.step(f_new[:, 0], running[name],
                                                           window["mask"][:, m + t - 1])
                    else:
                        placed_f[name].append(f_new)
                if stepped:
                    states[name] = running[name]
                    continue
                f_hist, h0 = hist_f[name]
                pad = tf.zeros_like(tf.repeat(f_hist[:, :1], s - t, axis=1))
                f = tf.concat([f_hist, *placed_f[name], pad], axis=1)
                states[name] = self._states(agent, f, window["mask"], h0, t)
            a_low = model.lra.actor(states["lra"])
            channel_pick = masked_argmax(cosine_matrix(a_low, d), available)
            c_t = tf.gather(request["cand_channel"], channel_pick, batch_dims=1)
            s_high = model.hra.with_constraint(states["hra"], c_t)
            a_high = model.hra.actor(s_high)
            sim_high = cosine_matrix(a_high, d)
            a = tf.concat([a_low, a_high], -1)
            in_channel = available & tf.equal(request["cand_channel"], c_t[:, None])
            if self.item_score == "click":
                f_all = model.click.probability(                           # [B, N] in (0, 1)
                    tf.repeat(a[:, None], n, axis=1), d, tf.fill([b, n], t))
                greedy = masked_argmax(f_all, in_channel)
            elif self.item_score.startswith("wolpertinger"):
                greedy = self._wolpertinger(sim_high, in_channel, d, a, s_high, t)
            else:
                greedy = masked_argmax(sim_high, in_channel)
            pick, explore, prob, any_left = self._explore(greedy, available, seed + [0, t])
            item = tf.gather(request["cand_item_id"], pick, batch_dims=1)
            # an item listed twice among the candidates is still shown once
            available &= ~(tf.equal(request["cand_item_id"], item[:, None]) & any_left[:, None])
            d_t = tf.gather(d, pick, batch_dims=1)
            ctr = model.click.probability(a, d_t, tf.fill([b], t))
            channel = tf.gather(request["cand_channel"], pick, batch_dims=1)
            for key, value in (("item_id", tf.where(any_left, item, -tf.ones_like(item))),
                               ("channel", channel), ("index", pick),
                               ("score", tf.gather(sim_high, pick, batch_dims=1)),
                               ("ctr", ctr), ("propensity", prob), ("explored", explore),
                               ("lra_channel", c_t)):
                outputs[key].append(value)
            window = self._place(window, request, pick, t, any_left)
        self.seed.assign_add(1)
        return {k: tf.stack(v, axis=1) for k, v in outputs.items()}

    def _wolpertinger(self, sim, allowed, d, a, s_high, t: int):
        """Wolpertinger (Dulac-Arnold et al. 2015): the k allowed candidates nearest a^h_t by
        cosine, then the one of highest HRA critic value Q(s^h_t, d) ("wolpertinger_q") or
        click probability f(a_t, d) ("wolpertinger_f") among them. -> index [B]."""
        k = tf.minimum(self.wolpertinger_k, tf.shape(sim)[1])
        _, top = tf.math.top_k(tf.where(allowed, sim, tf.fill(tf.shape(sim), -3.0)), k)
        top_allowed = tf.gather(allowed, top, batch_dims=1)                    # [B, k]
        d_top = tf.gather(d, top, batch_dims=1)                                # [B, k, dim]
        if self.item_score == "wolpertinger_q":
            score = self.model.hra.q(tf.repeat(s_high[:, None], k, axis=1), d_top)
        else:
            b = tf.shape(top)[0]
            score = self.model.click.probability(tf.repeat(a[:, None], k, axis=1), d_top,
                                                 tf.fill([b, k], t))
        return tf.gather(top, masked_argmax(score, top_allowed), batch_dims=1)

    def _start(self, request):
        """-> (candidate embeddings d [B, N, k]; the window: m history positions, then S empty
        ones filled slot by slot; the available candidates [B, N] bool)."""
        d = self.model.items({k: request[f"cand_{k}"] for k in CANDIDATE_PARTS})
        s = self.list_size
        window = {k: tf.concat([request[f"hist_{k}"], tf.zeros_like(
            tf.repeat(request[f"hist_{k}"][:, :1], s, axis=1))], axis=1) for k in WINDOW_PARTS}
        window["user_id"], window["user_fields"] = request["user_id"], request["user_fields"]
        return d, window, tf.cast(request["cand_mask"], tf.bool)

    def _explore(self, greedy, available, step_seed):
        """Sec. 3.5's epsilon-greedy step over the available candidates [B, N] -> (pick,
        explored, propensity, any candidate left), all [B]."""
        b, n = tf.shape(available)[0], tf.shape(available)[1]
        count = tf.reduce_sum(tf.cast(available, tf.float32), axis=1)
        pick, explore = greedy, tf.zeros([b], tf.bool)
        prob = tf.ones([b])
        if self.epsilon > 0:
            explore = tf.random.stateless_uniform([b], step_seed) < self.epsilon
            gumbel = -tf.math.log(-tf.math.log(tf.random.stateless_uniform(
                [b, n], step_seed + [1, 0], minval=1e-9, maxval=1.0)))
            uniform = masked_argmax(gumbel, available)
            pick = tf.where(explore, uniform, greedy)
            prob = (1.0 - self.epsilon) * tf.cast(pick == greedy, tf.float32) + (
                self.epsilon / tf.maximum(count, 1.0))
        return pick, explore, prob, count > 0

    def _place(self, window, request, pick, t, any_left):
        """Writes the candidate picked for slot t into the window (its history, then the S
        slots) at position history + t (feedback unknown)."""
        width = window["mask"].shape[1]
        position = width - self.list_size + t
        here = tf.one_hot(position, width, on_value=True, off_value=False)[None]  # [1, W]
        new = {k: tf.gather(request[f"cand_{k}"], pick, batch_dims=1)
               for k in CANDIDATE_PARTS}
        new["slot"] = tf.fill(tf.shape(pick), tf.constant(t, window["slot"].dtype))
        new["mask"] = tf.cast(any_left, window["mask"].dtype)
        new["feedback"] = tf.zeros_like(window["feedback"][:, 0])
        out = dict(window)
        for k, v in new.items():
            v = tf.cast(v, window[k].dtype)[:, None]
            cond = here if window[k].shape.rank == 2 else here[..., None]
            out[k] = tf.where(cond, v, window[k])
        return out


def request_from_lists(batch: dict, m: int) -> dict:
    """A request per logged list (for offline replay and tests): the list's m-history and, as
    candidates, its own items followed by the sampled ones (data.pipeline's cand_*)."""
    from hrl_rec.model import candidate_items
    items, channel, valid = candidate_items(batch, m)
    request = {f"hist_{k}": batch[k][:, :m] for k in WINDOW_PARTS}
    request["user_id"], request["user_fields"] = batch["user_id"], batch["user_fields"]
    request.update({f"cand_{k}": v for k, v in items.items()})
    request["cand_channel"] = channel
    request["cand_mask"] = tf.cast(valid, tf.int64)
    return request
