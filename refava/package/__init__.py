"""The packaged dataset: ``format`` (what readers import), ``build`` (``refava package``), ``card``, ``verify``,
``hub``.  The names below are the package's public API."""
from __future__ import annotations

from .build import (
                    ConfigInfo,
                    Inputs,
                    PackageSummary,
                    ShardInfo,
                    check_target,
                    iter_batches,
                    package_workspace,
                    read_inputs,
                    recover_interrupted,
                    write_split,
)
from .format import (
                    GROUP_OF_TYPE,
                    GROUPS,
                    HF_SPLIT,
                    IMAGE_COLUMNS,
                    MANIFEST,
                    SHARD_BYTES,
                    PackageError,
                    config_split,
                    features,
                    read_manifest,
)
from .hub import push_to_hub
from .verify import VerifyReport, verify_dataset

__all__ = ["ConfigInfo", "GROUPS", "GROUP_OF_TYPE", "HF_SPLIT", "IMAGE_COLUMNS", "Inputs", "MANIFEST", "PackageError",
           "PackageSummary", "SHARD_BYTES", "ShardInfo", "VerifyReport", "check_target", "config_split", "features",
           "iter_batches", "package_workspace", "push_to_hub", "read_inputs", "read_manifest", "recover_interrupted",
           "verify_dataset", "write_split"]
