"""``refava package --push-to-hub``: upload a dataset folder; every failure a one-line message."""
from __future__ import annotations

import os
from pathlib import Path

from .format import PackageError
from .verify import verify_dataset


def push_to_hub(folder: str | os.PathLike, repo: str) -> str:
    """Upload a packaged folder to a Hugging Face dataset repository (created if missing); return its URL.

    Every failure (no token, a bad repository name, offline mode, no connection, a refused token, no write access)
    is a :class:`PackageError` that says what happened and what to do; the folder itself is never touched."""
    from huggingface_hub import HfApi, constants, get_token

    folder = Path(folder)
    report = verify_dataset(folder, rows=False)
    if report.problems:
        raise PackageError(f"{folder} does not verify ({report.problems[0]}); not pushing")
    retry = f"then push again with `refava package --push-to-hub {repo}` (the folder {folder} is complete)"
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo)
        if repo.count("/") != 1:
            raise ValueError("expected NAMESPACE/NAME")
    except Exception as exc:                                   # HFValidationError is a ValueError
        raise PackageError(f"--push-to-hub {repo!r}: not a Hugging Face repository id ({_first_line(exc)}); "
                           f"expected NAMESPACE/NAME such as me/refava") from None
    if not get_token():
        raise PackageError(f"no Hugging Face token: set HF_TOKEN or run `hf auth login`, {retry}")
    if constants.HF_HUB_OFFLINE:
        raise PackageError(f"HF_HUB_OFFLINE is set: nothing can be uploaded; unset it, {retry}")
    endpoint = constants.ENDPOINT
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                          commit_message="refava package")
    except Exception as exc:
        raise PackageError(f"pushing {folder} to {repo} on {endpoint} failed: {_hub_reason(exc)}; {retry}") from None
    return f"{endpoint.rstrip('/')}/datasets/{repo}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _hub_reason(exc: BaseException) -> str:
    """What went wrong in a Hub call, in words, with what to check."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return (f"the server refused the token (HTTP {status}): check that HF_TOKEN (or `hf auth login`) holds a "
                f"token with write access to this namespace")
    if status == 404:
        return "the repository or namespace was not found (HTTP 404): check the name and your organisation rights"
    if status is not None:
        return f"HTTP {status} ({_first_line(exc)})"
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name or isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return f"no connection to the Hub ({name}: {_first_line(exc)}); check the network, a proxy, or HF_ENDPOINT"
    return f"{name}: {_first_line(exc)}"
