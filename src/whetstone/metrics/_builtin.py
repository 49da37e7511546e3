"""Every metric whetstone computes, declared once."""

from __future__ import annotations

from whetstone.metrics._spec import MetricSpec

_PPL = ("perplexity",)
_CLS = ("classification",)
_MC = ("multiple_choice",)
_GEN = ("generation",)
_PROB = ("multiple_choice", "classification")


def _ratio(name: str, unit: str, transform: str, description: str, **kw: object) -> MetricSpec:
    return MetricSpec(
        name=name,
        kinds=_PPL,
        direction="lower",
        aggregation="ratio",
        interval="bootstrap_t_ratio",
        paired_test="ratio_swap_permutation",
        unit=unit,
        transform=transform,
        description=description,
        default_for=_PPL,
        **kw,
    )


def _proportion(name: str, kinds: tuple[str, ...], description: str, **kw: object) -> MetricSpec:
    return MetricSpec(
        name=name,
        kinds=kinds,
        direction="higher",
        aggregation="proportion",
        interval="wilson",
        paired_test="mcnemar_exact",
        description=description,
        **kw,
    )


def _averaged(score: str, average: str) -> MetricSpec:
    mover = average in ("macro", "weighted")
    return MetricSpec(
        name=f"{score}_{average}",
        kinds=_CLS,
        direction="higher",
        aggregation="corpus",
        interval="mover_wilson" if mover else "wilson",
        paired_test="none",
        description=f"{average}-averaged {score} over the task's labels (sklearn)",
        aliases=(score,) if average == "macro" else (),
        default_for=_CLS,
        headline=(score, average) == ("f1", "macro"),
    )


def _item_mean(name: str, description: str) -> MetricSpec:
    return MetricSpec(
        name=name,
        kinds=_GEN,
        direction="higher",
        aggregation="mean",
        interval="bca",
        paired_test="sign_flip",
        default_for=_GEN,
        description=description,
    )


def _corpus_score(name: str, description: str) -> MetricSpec:
    return MetricSpec(
        name=name,
        kinds=_GEN,
        direction="higher",
        aggregation="corpus",
        interval="bca",
        paired_test="corpus_swap_permutation",
        default_for=_GEN,
        scale=100.0,
        description=description,
    )


BUILTIN: tuple[MetricSpec, ...] = (
    _ratio("perplexity", "n_tokens", "exp_neg", "exp of the mean token NLL", headline=True),
    _ratio("word_perplexity", "n_words", "exp_neg", "exp of the NLL per word (lm-eval)"),
    _ratio("byte_perplexity", "n_bytes", "exp_neg", "exp of the NLL per UTF-8 byte"),
    _ratio("bits_per_byte", "n_bytes", "bits", "NLL per UTF-8 byte in bits", headline=True),
    _proportion("acc", _MC, "argmax log-likelihood is gold", default_for=_MC, headline=True),
    _proportion("acc_norm", _MC, "argmax of log-likelihood per character", default_for=_MC),
    _proportion("accuracy", _CLS, "predicted label is gold", default_for=_CLS, headline=True),
    _proportion(
        "exact_match", _GEN, "normalized answer equals a reference", default_for=_GEN, headline=True
    ),
    *(
        _averaged(score, average)
        for average in ("macro", "micro", "weighted")
        for score in ("precision", "recall", "f1")
    ),
    *(
        MetricSpec(
            name=f"{score}_binary",
            kinds=_CLS,
            direction="higher",
            aggregation="corpus",
            interval="wilson",
            paired_test="none",
            description=f"{score} of the declared positive class (sklearn average='binary')",
        )
        for score in ("precision", "recall", "f1")
    ),
    MetricSpec(
        name="brier",
        kinds=_PROB,
        direction="lower",
        aggregation="mean",
        interval="bca",
        paired_test="sign_flip",
        default_for=_MC,
        description="sum of squared probability errors per item",
    ),
    MetricSpec(
        name="ece",
        kinds=_PROB,
        direction="lower",
        aggregation="corpus",
        interval="ece_projection",
        paired_test="none",
        default_for=_PROB,
        description="expected calibration error, 10 equal-width bins (plug-in)",
    ),
    MetricSpec(
        name="ece_debiased",
        kinds=_PROB,
        direction="lower",
        aggregation="corpus",
        interval="ece_projection",
        paired_test="none",
        description="ECE with each bin's sampling noise removed",
    ),
    _item_mean("token_f1", "SQuAD token F1, max over references"),
    _corpus_score("bleu", "sacrebleu corpus BLEU"),
    _corpus_score("chrf", "sacrebleu corpus chrF"),
    _item_mean("rouge_l", "ROUGE-L F-measure, max over references"),
    *(
        MetricSpec(
            name=name,
            kinds=("cost",),
            direction="lower",
            aggregation="cost",
            interval="none",
            paired_test="none",
            description=description,
        )
        for name, description in (
            ("latency_ms", "median time to answer one item"),
            ("params", "parameter count"),
            ("size_mb", "weights on disk"),
        )
    ),
    MetricSpec(
        name="loss",
        kinds=("training",),
        direction="lower",
        aggregation="mean",
        interval="none",
        paired_test="none",
        description="a trainer's evaluation loss",
    ),
)
