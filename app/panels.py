"""One function per panel: ``show_*(data, *, key)`` draws one piece of a page from results it is handed.

Panels compute nothing themselves: numbers come from ``app/results.py`` (that is, from ``analysis/``) and pictures
from ``app/render.py``, so a page file reads as a list of panels.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence

import numpy as np
import streamlit as st

from analysis.attention import FAMILY_SIDES, AttentionMaps, HeadStats
from analysis.forward import AnswerScore
from analysis.masked import AblationGauge, MaskedRegionPrediction, MaskedWordPrediction
from app import render, selection
from app.loading import Checkpoint, Scene
from lxmert.checkpoints import meta_scores

SPECIAL_TOKENS = ("[CLS]", "[SEP]")
# Attention families in the order the model computes them, with the names the page shows (query → key).
FAMILY_NAMES = {
    "lang_self": "Language self-attention (language encoder)",
    "vis_self": "Vision self-attention (relationship encoder)",
    "cross_l2v": "Cross: language → vision",
    "cross_v2l": "Cross: vision → language",
    "x_lang_self": "Language self-attention (cross layers)",
    "x_vis_self": "Vision self-attention (cross layers)",
}
FAMILY_SHORT = {
    "lang_self": "lang",
    "vis_self": "vis",
    "cross_l2v": "l→v",
    "cross_v2l": "v→l",
    "x_lang_self": "x-lang",
    "x_vis_self": "x-vis",
}
# How the card names the splits of a checkpoint's scores (lxmert.checkpoints.meta_scores).
SPLIT_NAMES = {"valid": "validation", "chance": "chance (the same metrics for a guess)"}
# An answer is worded as uncertain when it leads the second by less than this, or when its probability is below
# NEAR_CHANCE / (number of answers).
UNSURE_MARGIN = 0.15
NEAR_CHANCE = 2.0
# A match score closer to 0.5 than this is no verdict; pre-training records the head's accuracy as this metric.
MATCH_UNSURE = 0.1
MATCH_ACCURACY_METRIC = "matched_acc"
STATISTICS = {
    "normalized_entropy": "Entropy / log(keys): 1 = uniform, 0 = one key",
    "max_weight": "Largest weight per query",
    "cls_mass": "Mass on [CLS]",
    "sep_mass": "Mass on [SEP]",
    "other_modality_share": "Share of the other modality in the update (attention × value norm)",
}


def plot(figure, *, key: str, on_select=None) -> None:
    """Draw a plotly figure; with ``on_select``, clicking a point calls it before the rerun."""
    if on_select is None:
        st.plotly_chart(figure, key=key, config={"displaylogo": False})
    else:
        st.plotly_chart(
            figure, key=key, config={"displaylogo": False}, on_select=on_select, selection_mode="points"
        )


def _clicked(key: str, read, on_pick) -> None:
    """A figure's click callback: ``read`` turns the selected points into a pick, which goes to ``on_pick``."""
    picked = read(st.session_state[key].selection.points)
    if picked is not None:
        on_pick(picked)


def plot_regions(figure, scene: Scene, selected: Sequence[int], *, on_pick=None, key: str) -> None:
    """Draw a figure over the scene's image with the ``selected`` regions outlined; with ``on_pick``, a click on a
    box calls ``on_pick(region)`` before the rerun."""
    render.mark_regions(figure, scene.image_boxes[list(selected)])
    if on_pick is None:
        plot(figure, key=key)
        return
    render.clickable_regions(
        figure, scene.image_boxes, region_details(scene), num_labelled=scene.regions.num_real
    )
    plot(figure, key=key, on_select=functools.partial(_clicked, key, selection.clicked_region, on_pick))


# ---------------------------------------------------------------------------------------------------------------
# Image and regions
# ---------------------------------------------------------------------------------------------------------------


def region_details(scene: Scene) -> list[str]:
    """Per region, what hovering on its box shows: its label, the object with its confidence, and every kind of
    attribute with its values' probabilities (softmax over all attributes and "none", so the kinds share the mass)."""
    details = []
    for r, label in enumerate(scene.labels):
        obj = scene.object_names[int(scene.regions.object_ids[r])]
        lines = [
            f"<b>{html.escape(label)}</b>",
            f"object: {html.escape(obj)} {float(scene.regions.object_conf[r]):.2f}",
        ]
        for kind, values in scene.attribute_groups(r):
            lines.append(
                f"{html.escape(kind)}: " + " · ".join(f"{html.escape(name)} {p:.2f}" for name, p in values)
            )
        if r >= scene.regions.num_real:
            lines.append("fill proposal: below the detector's confidence threshold")
        details.append("<br>".join(lines))
    return details


def show_detections(scene: Scene, *, selected: Sequence[int] = (), on_pick=None, key: str) -> None:
    """The image with every region the model sees: numbered detections, fill proposals dotted, attributes on hover;
    ``selected`` regions outlined, and with ``on_pick`` a click on a box calls ``on_pick(region)``."""
    regions = scene.regions
    confidences = np.stack([regions.object_conf.numpy(), regions.attr_conf.numpy()], axis=1)
    figure = render.detections_figure(
        scene.image,
        scene.image_boxes,
        scene.labels,
        confidences,
        num_labelled=regions.num_real,
        title=f"{regions.num_real} detections + {len(regions) - regions.num_real} fill proposals",
        details=region_details(scene),
    )
    plot_regions(figure, scene, selected, on_pick=on_pick, key=key)


def show_region(scene: Scene, region: int, *, key: str) -> None:
    """One region in a line: what its box's hover says (label, object, attributes by kind), and where the box is."""
    x1, y1, x2, y2 = scene.regions.boxes[region].tolist()
    st.markdown(
        f"{region_details(scene)[region].replace('<br>', ' · ')} · "
        f"box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})",
        unsafe_allow_html=True,
    )


def show_region_table(scene: Scene, *, key: str) -> None:
    """One row per region: object, the best value of each attribute kind, confidences, box, and its kind."""
    import pandas as pd  # seconds to import on a busy CPU: kept off the way to the first answer

    regions = scene.regions
    columns: dict[str, object] = {
        "object": [scene.object_names[i] for i in regions.object_ids.tolist()],
        "object conf": regions.object_conf.numpy(),
    }
    groups = [scene.attribute_groups(r, 1) for r in range(len(regions))]
    for k, (kind, _) in enumerate(groups[0] if groups else ()):
        name = "attribute" if kind == "attributes" else kind
        columns[name] = [g[k][1][0][0] for g in groups]
        columns[f"{name} conf"] = [g[k][1][0][1] for g in groups]
    columns["box (x1, y1, x2, y2)"] = [", ".join(f"{v:.0f}" for v in box) for box in regions.boxes.tolist()]
    columns["kind"] = ["detection" if i < regions.num_real else "fill" for i in range(len(regions))]
    table = pd.DataFrame(columns)
    table.index.name = "region"
    progress = st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0)
    st.dataframe(table, key=key, column_config={name: progress for name in columns if name.endswith(" conf")})


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def show_checkpoint_card(checkpoint: Checkpoint, *, key: str) -> None:
    """Which checkpoint answers, what its heads can do, and the scores and recipe its ``meta.json`` records."""
    config = checkpoint.model.config
    st.markdown(
        f"**`{checkpoint.name}`** · {type(checkpoint.model).__name__} · heads: {checkpoint.capabilities.describe()}  \n"
        f"layers L/R/X {config.l_layers}/{config.r_layers}/{config.x_layers}, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, "
        f"{len(checkpoint.answers) if checkpoint.answers else 0} answers"
    )
    try:
        scores = meta_scores(checkpoint.meta)
    except ValueError as error:
        st.warning(f"`{checkpoint.name}`: {error}")
        scores = {}
    for split, table in scores.items():
        st.markdown(
            f"Scores on {SPLIT_NAMES.get(split, split)}: "
            + " · ".join(f"{metric} **{_number(value)}**" for metric, value in table.items())
        )
    if not scores:
        st.caption("Its `meta.json` records no scores.")
    recipe = checkpoint.meta.get("command") or checkpoint.meta.get("recipe")
    if recipe:
        with st.expander("How it was trained"):
            if isinstance(recipe, str):
                st.code(recipe, language="bash")
            else:
                st.json(recipe, expanded=False)


# ---------------------------------------------------------------------------------------------------------------
# Answers and matching
# ---------------------------------------------------------------------------------------------------------------


def answer_name(answer: AnswerScore) -> str:
    return answer.answer if answer.answer is not None else f"answer #{answer.index}"


def answer_doubt(answers: Sequence[AnswerScore], num_answers: int | None = None) -> str | None:
    """Why the best answer is not to be trusted, in words, or None when it stands clear of the rest.

    Uncertain when the best answer leads the second by less than :data:`UNSURE_MARGIN`, or when its probability is
    below :data:`NEAR_CHANCE` times the 1 / ``num_answers`` of a uniform guess.
    """
    best = answers[0]
    if num_answers and best.probability < NEAR_CHANCE / num_answers:
        return (
            f"Uncertain: {best.probability:.1%} is near chance, the {1 / num_answers:.1%} of a uniform guess over "
            f"{num_answers} answers."
        )
    if len(answers) > 1 and best.probability - answers[1].probability < UNSURE_MARGIN:
        return (
            f"Uncertain: *{answer_name(best)}* leads *{answer_name(answers[1])}* by only "
            f"{100 * (best.probability - answers[1].probability):.1f} points."
        )
    return None


def show_answers(
    answers: Sequence[AnswerScore], *, key: str, title: str = "Top answers", num_answers: int | None = None
) -> None:
    """The best answer in words, a warning when it is uncertain (:func:`answer_doubt`), then the top-k as bars.

    Args:
        num_answers: how many answers the head chooses from (for the chance level), when known.
    """
    best = answers[0]
    st.markdown(f"### Answer: **{answer_name(best)}**  \n{best.probability:.1%} probability")
    doubt = answer_doubt(answers, num_answers)
    if doubt is not None:
        st.warning(doubt, icon=":material/help:")
    labels = [answer_name(a) for a in answers]
    plot(
        render.ranking_figure(labels, [a.probability for a in answers], title=title, highlight=labels[0]),
        key=key,
    )


def match_verdict(probability: float, validation_accuracy: float | None = None) -> str:
    """The matching head's score in words: its distance from 0.5, a lean rather than a verdict when that is small,
    and how often the head was right on validation pairs (half of which match), when its ``meta.json`` says."""
    distance = 100 * (probability - 0.5)
    if abs(distance) < 100 * MATCH_UNSURE:
        words = f"Too close to call: {distance:+.1f} points from 0.5."
    else:
        side = "matches" if distance > 0 else "does not match"
        words = f"The head leans towards “{side}”, {distance:+.1f} points from 0.5."
    if validation_accuracy is None:
        return words + " Its validation accuracy is not recorded."
    return words + f" This head is right on {validation_accuracy:.1%} of validation pairs (chance: 50%)."


def show_match(probability: float, *, validation_accuracy: float | None = None, key: str) -> None:
    """P(the sentence describes the image) from the matching head, worded by :func:`match_verdict`."""
    st.metric("Match score", f"{probability:.1%}", help="P(sentence describes image) from the matching head")
    st.progress(probability, text=match_verdict(probability, validation_accuracy))


def match_accuracy(checkpoint: Checkpoint) -> float | None:
    """The matching head's validation accuracy, as the checkpoint's ``meta.json`` records it (None when not)."""
    try:
        value = meta_scores(checkpoint.meta).get("valid", {}).get(MATCH_ACCURACY_METRIC)
    except ValueError:
        return None  # the card says what is wrong with the scores
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------


def labels_for(side: str, tokens: Sequence[str], region_labels: Sequence[str]) -> list[str]:
    return [f"{i} {t}" for i, t in enumerate(tokens)] if side == "lang" else list(region_labels)


def kept_positions(side: str, tokens: Sequence[str], count: int, hide_special: bool) -> list[int]:
    """Which rows or columns to draw: every one, or the language side without [CLS] and [SEP]."""
    if side == "lang" and hide_special:
        return [i for i, t in enumerate(tokens) if t not in SPECIAL_TOKENS]
    return list(range(count))


def grid_rows(stats: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[tuple[str, int]]]:
    """Stack each family's (L, H) statistic into one rows × heads table, labelled ``"l→v 3"``."""
    blocks, labels, index = [], [], []
    for family in FAMILY_NAMES:
        values = stats.get(family)
        if values is None or values.shape[0] == 0 or np.all(np.isnan(values)):
            continue
        blocks.append(values)
        for layer in range(values.shape[0]):
            labels.append(f"{FAMILY_SHORT[family]} {layer + 1}")
            index.append((family, layer))
    return (np.concatenate(blocks) if blocks else np.zeros((0, 0))), labels, index


def show_family_grid(
    values: dict[str, np.ndarray],
    *,
    title: str,
    colorbar_title: str,
    selected: tuple[str, int | None, int | None] | None = None,
    on_pick=None,
    key: str,
) -> None:
    """A per-head number of every layer of every family as one grid; ``selected`` (family, layer, head) outlined.

    With ``on_pick``, clicking a cell calls ``on_pick(family, layer, head)`` (head None for the mean column).
    """
    table, labels, index = grid_rows(values)
    if not labels:
        st.info(f"{title}: no values for this model.")
        return
    cell = None
    if selected is not None and selected[1] is not None and (selected[0], selected[1]) in index:
        family, layer, head = selected
        cell = (index.index((family, layer)), table.shape[1] if head is None else head)
    figure = render.head_grid_figure(table, labels, title=title, colorbar_title=colorbar_title, selected=cell)
    if on_pick is None:
        plot(figure, key=key)
    else:
        plot(
            figure,
            key=key,
            on_select=functools.partial(
                _clicked,
                key,
                functools.partial(_grid_head, dict(zip(labels, index, strict=True))),
                lambda head: on_pick(*head),
            ),
        )


def _grid_head(rows: dict[str, tuple[str, int]], points) -> tuple[str, int, int | None] | None:
    """The head a click on the grid picks: the cell's row label names (family, layer), its column the head (None
    for the mean column)."""
    if points and points[0].get("y") in rows:
        family, layer = rows[points[0]["y"]]
        column = str(points[0].get("x", ""))
        return family, layer, int(column[1:]) - 1 if column.startswith("h") else None
    return None


def show_head_grid(
    stats: HeadStats,
    statistic: str,
    selected: tuple[str, int | None, int | None] | None,
    *,
    on_pick=None,
    key: str,
) -> None:
    """Every head of every layer and family on one statistic; the head the map shows is outlined, a click picks one."""
    show_family_grid(
        getattr(stats, statistic),
        title=STATISTICS[statistic],
        colorbar_title=statistic.replace("_", " "),
        selected=selected,
        on_pick=on_pick,
        key=key,
    )


def show_head_picker(config, *, key: str) -> list[tuple[str, int, int]]:
    """Choose heads to silence: whole families, whole layers, or single heads; returns (family, layer, head)."""
    layers = config.family_layers
    heads = range(config.num_attention_heads)
    families_column, heads_column = st.columns([1, 2])
    families = families_column.multiselect(
        "Whole families",
        [f for f in FAMILY_NAMES if layers[f]],
        format_func=FAMILY_NAMES.get,
        key=f"{key}_families",
    )
    options = [(f, layer, h) for f in FAMILY_NAMES for layer in range(layers[f]) for h in heads]
    single = heads_column.multiselect(
        "Single heads",
        options,
        format_func=lambda o: f"{FAMILY_SHORT[o[0]]} layer {o[1] + 1} head {o[2] + 1}",
        key=f"{key}_heads",
        placeholder="type e.g. l→v 5",
    )
    chosen = {(f, layer, h) for f in families for layer in range(layers[f]) for h in heads} | set(single)
    return sorted(chosen, key=options.index)


def show_attention_map(
    maps: AttentionMaps,
    family: str,
    layer: int | None,
    head: int | None,
    scene: Scene,
    hide_special: bool,
    stretch: bool,
    *,
    selected: selection.Pick | None = None,
    on_pick=None,
    key: str,
) -> None:
    """One family's query × key map for a layer and head (None = averaged), words and regions named.

    The ``selected`` word and region are outlined on the rows and columns of their side; with ``on_pick``, a click
    on a cell calls ``on_pick(selection.Pick)`` with the word and region it selects (:func:`app.selection.cell_pick`).
    """
    matrix = maps.select(family, layer, head)
    query_side, key_side = FAMILY_SIDES[family]
    rows = kept_positions(query_side, maps.tokens, matrix.shape[0], hide_special)
    columns = kept_positions(key_side, maps.tokens, matrix.shape[1], hide_special)
    where = f"layer {'mean' if layer is None else layer + 1}, head {'mean' if head is None else head + 1}"

    def names(side: str, positions: list[int], labels: Sequence[str]) -> list[str]:
        return [labels_for(side, maps.tokens, labels)[i] for i in positions]

    figure = render.matrix_heatmap(
        matrix[np.ix_(rows, columns)],
        names(query_side, rows, scene.labels),
        names(key_side, columns, scene.labels),
        title=f"{FAMILY_NAMES[family]}, {where}",
        row_title=f"query ({query_side})",
        column_title=f"key ({key_side})",
        row_ticks=names(query_side, rows, scene.short_labels),
        column_ticks=names(key_side, columns, scene.short_labels),
        stretch=stretch,
        clickable=on_pick is not None,
    )
    if selected is not None:

        def marked(side: str, positions: list[int]) -> list[int]:
            chosen = selected.token if side == "lang" else selected.region
            return [positions.index(chosen)] if chosen in positions else []

        render.mark_lines(figure, marked(query_side, rows), marked(key_side, columns))
    if on_pick is None:
        plot(figure, key=key)
    else:

        def read(points) -> selection.Pick | None:
            cell = selection.clicked_cell(points)
            return None if cell is None else selection.cell_pick((query_side, key_side), rows, columns, cell)

        plot(figure, key=key, on_select=functools.partial(_clicked, key, read, on_pick))
    if hide_special and (query_side == "lang" or key_side == "lang"):
        st.caption("[CLS] and [SEP] are hidden from the picture only; rows still sum to 1 with them.")


def show_word_on_image(
    scene: Scene,
    maps: AttentionMaps,
    token: int,
    layer: int | None,
    head: int | None,
    *,
    selected_region: int | None = None,
    on_pick=None,
    key: str,
) -> None:
    """Where one word looks: its language → vision attention painted on the regions; the selected region outlined,
    and with ``on_pick`` a click on a box calls ``on_pick(region)``."""
    scores = maps.token_to_regions(token, layer, head)
    figure = render.region_scores_figure(
        scene.image,
        scene.image_boxes,
        scores,
        scene.labels,
        title=f"“{maps.tokens[token]}” → regions",
        colorbar_title="attention",
    )
    plot_regions(
        figure, scene, [] if selected_region is None else [selected_region], on_pick=on_pick, key=key
    )


def show_region_to_words(
    maps: AttentionMaps,
    region: int,
    region_label: str,
    layer: int | None,
    head: int | None,
    *,
    selected_token: int | None = None,
    key: str,
) -> None:
    """Which words one region reads: its vision → language attention on the tokens, the selected word outlined."""
    scores = maps.region_to_tokens(region, layer, head)
    marked = () if selected_token is None else (selected_token,)
    st.markdown(
        render.token_highlight_html(
            maps.tokens, scores, caption=f"region {region_label} → words", marked=marked
        ),
        unsafe_allow_html=True,
    )
    top = np.argsort(-scores)[:3]
    st.caption("Most attended: " + ", ".join(f"{maps.tokens[i]} ({scores[i]:.2f})" for i in top))


# ---------------------------------------------------------------------------------------------------------------
# Masked predictions
# ---------------------------------------------------------------------------------------------------------------


def show_masked_words(
    with_image: Sequence[MaskedWordPrediction], without_image: Sequence[MaskedWordPrediction], *, key: str
) -> None:
    """Per masked word, the fillers with the image beside those without it, and the original word's probability."""
    for seeing, blind in zip(with_image, without_image, strict=True):
        st.markdown(
            f"**{seeing.original}** (position {seeing.position}): P(original) "
            f"{seeing.original_probability:.1%} with the image, {blind.original_probability:.1%} without"
        )
        left, right = st.columns(2)
        for column, prediction, title in (
            (left, seeing, "with the image"),
            (right, blind, "without the image"),
        ):
            with column:
                names = [c.name or str(c.index) for c in prediction.fillers]
                figure = render.ranking_figure(
                    names,
                    [c.probability for c in prediction.fillers],
                    title=title,
                    highlight=prediction.original,
                )
                plot(figure, key=f"{key}_{prediction.position}_{title}")


def show_masked_regions(
    scene: Scene,
    with_text: Sequence[MaskedRegionPrediction],
    without_text: Sequence[MaskedRegionPrediction],
    *,
    key: str,
) -> None:
    """Per masked region: the detector's label, then object and attribute guesses with and without the text."""
    for seeing, blind in zip(with_text, without_text, strict=True):
        r = seeing.region
        detected_object = scene.object_names[int(scene.regions.object_ids[r])]
        detected_attr = scene.attr_names[int(scene.regions.attr_ids[r])]
        nearest = ", ".join(f"{i} ({d:.2f})" for i, d in seeing.nearest_regions[:3])
        st.markdown(
            f"**Region {r}**: the detector says *{scene.labels[r].split(' ', 1)[1]}*; "
            f"the regressed feature lies nearest to regions {nearest}"
        )
        rows = (
            ("object", seeing.objects, blind.objects, detected_object),
            ("attribute", seeing.attributes, blind.attributes, detected_attr),
        )
        for head, with_text_guesses, without_text_guesses, truth in rows:
            for column, candidates, condition in zip(
                st.columns(2),
                (with_text_guesses, without_text_guesses),
                ("with text", "without text"),
                strict=True,
            ):
                with column:
                    names = [c.name or str(c.index) for c in candidates]
                    title = f"{head}, {condition}"
                    figure = render.ranking_figure(
                        names, [c.probability for c in candidates], title=title, highlight=truth
                    )
                    plot(figure, key=f"{key}_{r}_{title}")


def show_gauge(gauge: AblationGauge, *, key: str) -> None:
    """Accuracy of masked predictions with each modality present or removed, and the drops that measure reliance."""
    drops = st.columns(3)
    drops[0].metric("Word accuracy lost without the image", f"{gauge.word_drop_without_vision:+.0%}")
    aligned = gauge.word_drop_without_aligned
    drops[1].metric(
        "…without the regions named like the word", "n/a" if aligned is None else f"{aligned:+.0%}"
    )
    drops[2].metric("Object accuracy lost without the text", f"{gauge.object_drop_without_text:+.0%}")
    rows = [
        {
            "masked": "words",
            "condition": condition,
            "accuracy": gauge.word_accuracy[condition],
            "P(original)": gauge.word_probability[condition],
            "items": gauge.num_words,
        }
        for condition in gauge.word_accuracy
    ] + [
        {
            "masked": "regions",
            "condition": condition,
            "accuracy": gauge.object_accuracy[condition],
            "P(original)": gauge.object_probability[condition],
            "items": gauge.num_regions,
        }
        for condition in gauge.object_accuracy
    ]
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(rows, column_config={"accuracy": percent, "P(original)": percent}, key=key)


# ---------------------------------------------------------------------------------------------------------------
# Explanations
# ---------------------------------------------------------------------------------------------------------------


def show_explanation(
    scene: Scene,
    tokens: Sequence[str],
    token_scores: np.ndarray,
    region_scores: np.ndarray,
    *,
    title: str,
    score_name: str,
    hide_special: bool,
    selected_region: int | None = None,
    on_pick=None,
    key: str,
) -> None:
    """One explanation on both inputs: regions as heat on the image, words as coloured chips, the top regions listed.

    The selected region is outlined and its score and rank given; with ``on_pick``, a click on a box calls
    ``on_pick(region)``.
    """
    token_scores = np.asarray(token_scores, dtype=float)
    region_scores = np.asarray(region_scores, dtype=float)
    image_column, words_column = st.columns([3, 2], gap="large")
    with image_column:
        figure = render.region_scores_figure(
            scene.image,
            scene.image_boxes,
            region_scores,
            scene.labels,
            title=title,
            colorbar_title=score_name,
            details=region_details(scene),
        )
        chosen = [] if selected_region is None else [selected_region]
        plot_regions(figure, scene, chosen, on_pick=on_pick, key=key)
    with words_column:
        shown = [i for i, t in enumerate(tokens) if not (hide_special and t in SPECIAL_TOKENS)]
        st.markdown(
            render.token_highlight_html(
                [tokens[i] for i in shown], token_scores[shown], caption=f"{score_name} of each word"
            ),
            unsafe_allow_html=True,
        )
        ranked = np.argsort(-np.abs(region_scores), kind="stable")
        st.dataframe(
            [{"region": scene.labels[r], score_name: float(region_scores[r])} for r in ranked[:8]],
            column_config={score_name: st.column_config.NumberColumn(format="%.3g")},
            key=f"{key}_top_regions",
        )
        if selected_region is not None:
            rank = int(np.flatnonzero(ranked == selected_region)[0])
            st.markdown(
                f"**{scene.labels[selected_region]}**: {score_name} {region_scores[selected_region]:.3g}, "
                f"rank {rank + 1} of {len(region_scores)} by magnitude"
            )


def show_curves(
    curves: dict[str, dict[str, tuple[list[float], list[float]]]], metric: str, *, key: str
) -> None:
    """One metric over training steps, a line per checkpoint."""
    series = {name: by_metric[metric] for name, by_metric in curves.items() if metric in by_metric}
    plot(render.curves_figure(series, title=metric, x_title="step", y_title=metric), key=key)


__all__ = [
    "FAMILY_NAMES",
    "answer_doubt",
    "match_accuracy",
    "match_verdict",
    "STATISTICS",
    "plot_regions",
    "show_answers",
    "show_attention_map",
    "show_checkpoint_card",
    "show_curves",
    "show_detections",
    "show_explanation",
    "show_family_grid",
    "show_gauge",
    "show_head_grid",
    "show_head_picker",
    "show_masked_regions",
    "show_masked_words",
    "show_match",
    "show_region",
    "show_region_table",
    "show_region_to_words",
    "show_word_on_image",
    "region_details",
]
