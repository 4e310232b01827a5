"""Images: vignettes to labels, embeddings and types, on Dask workers (GPU where present).

- :mod:`~pipeline.images.dataset`: image tables and constant-scale preprocessing, with
  quarantine;
- :mod:`~pipeline.images.model`, :mod:`~pipeline.images.training` and
  :mod:`~pipeline.images.epochs` (need the ``images`` extra, torch; import them from their
  modules): the compact CNN, backbones, model directories, training and its epoch loop;
  :mod:`~pipeline.images.training_config`: the training options;
- :mod:`~pipeline.images.classify`: batched, resumable classification and embedding on
  the cluster;
- :mod:`~pipeline.images.shards` and :mod:`~pipeline.images.shard_pack`: tar shards of
  vignettes (reading, one task per shard; packing);
- :mod:`~pipeline.images.frames`: the labels, embeddings and handcrafted-feature tables;
- :mod:`~pipeline.images.heads`: light heads on stored embeddings, refitted in seconds;
- :mod:`~pipeline.images.abstention`: per-class thresholds, ``unassigned`` labels;
- :mod:`~pipeline.images.recipe`: training settings chosen from the data;
- :mod:`~pipeline.images.evaluation`: classification metrics, stratified holdout;
- :mod:`~pipeline.images.handcrafted`, :mod:`~pipeline.images.gbt`: the handcrafted-features
  baseline;
- :mod:`~pipeline.images.morphology`, :mod:`~pipeline.images.morphology_describe`:
  morphological particle types;
- :mod:`~pipeline.images.labels`: machine labels into the objects table;
- :mod:`~pipeline.images.consistency`: machine labels against the human sorting;
- :mod:`~pipeline.images.qc`: quality control of the human sorting (duplicates carrying
  two categories, copies within a class, machine disagreement), with
  :mod:`~pipeline.images.duplicates` (image hashes, duplicate pairs) and
  :mod:`~pipeline.images.qc_report` (its report).

This ``__init__`` exports the API of the modules that do not need torch.
"""

from __future__ import annotations

from pipeline.images.abstention import (
    UNASSIGNED,
    abstention_scores,
    abstention_thresholds,
    assign_labels,
)
from pipeline.images.classify import (
    ClassifyConfig,
    ClassifyResult,
    EmbedConfig,
    classify_images,
    embed_images,
)
from pipeline.images.consistency import (
    ConsistencyResult,
    consistency,
    write_consistency_report,
)
from pipeline.images.dataset import (
    IMAGE_COLUMNS,
    N_EXTRA,
    PreparedImages,
    Preprocess,
    decode_image,
    folder_images,
    image_table,
    prepare_array,
    prepare_bytes,
    prepare_images,
    read_objects,
)
from pipeline.images.evaluation import (
    calibration_error,
    classification_metrics,
    plot_confusion,
    stratified_holdout,
)
from pipeline.images.gbt import (
    GBTClassifier,
    GBTConfig,
    fit_gbt,
)
from pipeline.images.handcrafted import (
    FEATURE_NAMES,
    FeatureConfig,
    features_from_urls,
    features_table,
    handcrafted_features,
)
from pipeline.images.heads import (
    Head,
    HeadConfig,
    fit_head,
    fit_head_on,
    head_labels,
    load_head,
    read_embeddings,
    save_head,
)
from pipeline.images.labels import (
    LABEL_SOURCES,
    apply_labels,
    labels_fingerprint,
    read_labels,
)
from pipeline.images.morphology import (
    DEFAULT_FEATURES,
    MorphologyConfig,
    MorphologyModel,
    assign_types,
    fit_types,
    load_model,
    save_model,
)
from pipeline.images.morphology_describe import (
    describe_types,
    plot_type_plate,
)
from pipeline.images.qc import (
    QCConfig,
    QCResult,
    quality_control,
)
from pipeline.images.qc_report import write_qc_report
from pipeline.images.recipe import choose_settings, longer_sides
from pipeline.images.shard_pack import write_shards
from pipeline.images.shards import ShardSet, iter_shard, open_shards

__all__ = [
    "DEFAULT_FEATURES",
    "FEATURE_NAMES",
    "IMAGE_COLUMNS",
    "LABEL_SOURCES",
    "N_EXTRA",
    "UNASSIGNED",
    "ClassifyConfig",
    "ClassifyResult",
    "ConsistencyResult",
    "EmbedConfig",
    "FeatureConfig",
    "GBTClassifier",
    "GBTConfig",
    "Head",
    "HeadConfig",
    "MorphologyConfig",
    "MorphologyModel",
    "PreparedImages",
    "Preprocess",
    "QCConfig",
    "QCResult",
    "ShardSet",
    "abstention_scores",
    "abstention_thresholds",
    "apply_labels",
    "assign_labels",
    "assign_types",
    "calibration_error",
    "choose_settings",
    "classification_metrics",
    "classify_images",
    "consistency",
    "decode_image",
    "describe_types",
    "embed_images",
    "features_from_urls",
    "features_table",
    "fit_gbt",
    "fit_head",
    "fit_head_on",
    "fit_types",
    "folder_images",
    "handcrafted_features",
    "head_labels",
    "image_table",
    "iter_shard",
    "labels_fingerprint",
    "load_head",
    "load_model",
    "longer_sides",
    "open_shards",
    "plot_confusion",
    "plot_type_plate",
    "prepare_array",
    "prepare_bytes",
    "prepare_images",
    "quality_control",
    "read_embeddings",
    "read_labels",
    "read_objects",
    "save_head",
    "save_model",
    "stratified_holdout",
    "write_consistency_report",
    "write_qc_report",
    "write_shards",
]
