"""The canonical 7-class expression order shared by every data set (FER2013's order)."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Index i of every label array in the pipeline means CLASSES[i]."""

NUM_CLASSES = len(CLASSES)

# Common spellings users' folders and label files use, mapped to canonical names.
ALIASES: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
}


def canonical_index(name: str) -> int:
    """Return the canonical class index of a class name or alias (case-insensitive)."""
    key = name.strip().lower()
    if key not in ALIASES:
        raise KeyError(f"unknown expression label {name!r}; known: {sorted(ALIASES)}")
    return CLASSES.index(ALIASES[key])


def contempt_target(option: str, dataset: str) -> int | None:
    """Parse a reader's `contempt` option: None to drop contempt, else the canonical index it maps into.

    Contempt is not one of the seven classes; CK+, AffectNet and FER+ label it, so each reader
    either drops those faces (counted) or merges them into a class the user names.
    """
    if option == "drop":
        return None
    try:
        return canonical_index(option)
    except (KeyError, AttributeError):
        raise ValueError(
            f"{dataset} contempt option {option!r}: expected 'drop' or one of {list(CLASSES)}"
        ) from None
