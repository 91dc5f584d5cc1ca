"""Features: pure Polars expressions grouped by theme, and the pipeline that fits and applies them.

``FeaturePipeline(FeatureConfig()).fit(train).transform(flows)`` turns a canonical flow table into a
fixed, scaled Float32 feature matrix; its state saves as JSON.
"""

from nadkit.features.base import FeatureGroup
from nadkit.features.pipeline import GROUP_NAMES, FeatureConfig, FeaturePipeline, build_groups

__all__ = ["GROUP_NAMES", "FeatureConfig", "FeatureGroup", "FeaturePipeline", "build_groups"]
