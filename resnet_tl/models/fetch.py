"""Downloadable weights made local before a run folder exists, with offline told in one quick try.

``model.weights: imagenet`` (Keras's download) and ``hf://<org>/<model>`` (the
Hugging Face Hub) fetch files on first use. Offline, their clients retry for
half a minute (huggingface_hub: 5 tries, 8 s apart) before failing, and a run
that builds its model after creating its folder leaves a ``failed`` run
behind. `fetch_weights` runs first: a file already in its client's cache is
used as it is; otherwise one HEAD request with a short timeout tells whether
the server answers, and a UserError names what to do when it does not.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from resnet_tl.errors import UserError, one_line
from resnet_tl.models.weights import HF_PREFIX, parse_weights

PROBE_TIMEOUT_S = 3.0
# keras.applications.resnet / resnet_v2 download from here (their BASE_WEIGHTS_PATH).
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer: following it would turn the HEAD into a GET of the whole file.
    def redirect_request(self, *args, **kwargs):
        return None


def offline_reason(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `url`'s server answers (any HTTP status), else why not; one try of at most `timeout` s.

    urllib honours HTTPS_PROXY, so a machine online through a proxy counts as online.
    """
    try:
        with urllib.request.build_opener(_NoRedirect).open(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:  # the server answered (404, 403, ...): online
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return one_line(getattr(exc, "reason", None) or exc, 120)


def keras_weights_file(backbone: str) -> str:
    """The file name keras.applications downloads for `backbone` without its top."""
    return f"{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights, as the user would write it (~ not expanded)."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")) / "models"


def imagenet_unavailable(backbone: str, why: str) -> UserError:
    """The one message for Keras's ImageNet weights that cannot be had."""
    return UserError(
        f"model.weights: could not download the ImageNet weights for '{backbone}' ({why}); "
        f"pass a local file with --set model.weights=PATH, or copy Keras's {keras_weights_file(backbone)} "
        f"into {keras_cache_dir()}, where Keras picks it up"
    )


def fetch_weights(weights: str, backbone: str) -> None:
    """Make a downloadable ``model.weights`` value usable offline-or-not before any work starts.

    hf://: downloaded into the Hub's cache now (the model build reads it from
    there). imagenet: only probed when not in Keras's cache (Keras downloads
    it while building the model). Other values: nothing to do here.
    """
    w = parse_weights(weights)
    if w.kind == "hub":
        fetch_hf(w.ref)
    elif w.kind == "imagenet" and not (keras_cache_dir().expanduser() / keras_weights_file(backbone)).is_file():
        why = offline_reason(KERAS_WEIGHTS_URL + keras_weights_file(backbone))
        if why is not None:
            raise imagenet_unavailable(backbone, f"offline? {why}")


def fetch_hf(ref: str) -> Path:
    """hf://<org>/<model> -> local path of its model.safetensors, through huggingface_hub's own cache."""
    repo = ref[len(HF_PREFIX):].strip("/")
    if repo.count("/") != 1:
        raise UserError(f"model.weights: received '{ref}'; allowed: hf://<org>/<model>, e.g. hf://timm/resnet18.a1_in1k")
    filename = "model.safetensors"
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise UserError(
            f"model.weights: '{ref}' needs huggingface_hub: pip install \"resnet-tl[hub]\"; "
            f"or download {url} and pass its path"
        ) from None
    offline = (f"could not fetch '{ref}' (offline?); on a machine that is online, download {url}, copy it here "
               f"and use its path instead, e.g. --set model.weights=/path/to/{filename}")
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, local_files_only=True))
    except (EntryNotFoundError, OSError):  # not in the Hub's cache (LocalEntryNotFoundError is a subclass)
        pass
    # One quick try instead of the Hub client's half minute of retries when offline.
    why = offline_reason(url)
    if why is not None:
        raise UserError(f"model.weights: {offline} ({why})")
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except LocalEntryNotFoundError:  # offline and not in the cache (a subclass of EntryNotFoundError)
        raise UserError(f"model.weights: {offline}") from None
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise UserError(f"model.weights: '{ref}': the Hugging Face Hub has no {filename} there ({type(exc).__name__})") from None
    except Exception as exc:
        # No network: OfflineModeIsEnabled or the HTTP client's connection
        # error, whose types depend on the huggingface_hub version.
        raise UserError(f"model.weights: {offline} ({type(exc).__name__})") from None
