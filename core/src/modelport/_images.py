"""Saving generated images: URLs are downloaded, ``b64_json`` is decoded."""

from __future__ import annotations

import base64
import os
import pathlib
from typing import Any, Dict, List, Optional, Union

from .errors import APIConnectionError, ProviderError
from .types import ImageResponse

__all__ = ["save_images"]

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def _targets(raw: Union[str, "os.PathLike[str]"], count: int) -> List[pathlib.Path]:
    """``out`` for one image; ``out``, ``out-2``, ... for several; a directory gets image-N."""
    out = pathlib.Path(raw)
    if out.is_dir() or os.fspath(raw).endswith(("/", os.sep)):
        out.mkdir(parents=True, exist_ok=True)
        return [out / f"image-{i + 1}" for i in range(count)]
    return [out if i == 0 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}") for i in range(count)]


def save_images(
    response: Union[ImageResponse, Dict[str, Any]], out: Union[str, "os.PathLike[str]"], *, timeout: Optional[float] = 60.0, http_client: Any = None
) -> List[pathlib.Path]:
    """Write every image of ``response`` to disk and return the paths written.

    ``out`` is a file name (several images get ``-2``, ``-3`` ... before the suffix) or a
    directory. A target without a suffix gets one from the image's content type.
    """
    import httpx

    if isinstance(response, dict):
        response = ImageResponse.from_dict(response)
    images = list(response.data or [])
    if not images:
        raise ValueError("the image response holds no images")
    paths = []
    client = http_client or httpx.Client(follow_redirects=True, timeout=timeout)
    try:
        for image, target in zip(images, _targets(out, len(images))):
            if image.get("b64_json"):
                content, content_type = base64.b64decode(image.b64_json), "image/png"
            elif image.get("url"):
                try:
                    reply = client.get(image.url)
                except httpx.TransportError as exc:
                    raise APIConnectionError(f"could not download {image.url}: {type(exc).__name__}: {exc}") from exc
                if reply.status_code >= 400:
                    raise ProviderError(f"downloading {image.url} failed with HTTP {reply.status_code}", status=reply.status_code)
                content = reply.content
                content_type = reply.headers.get("content-type", "").split(";")[0].strip()
            else:
                raise ValueError(f"image {image!r} has neither url nor b64_json")
            if not target.suffix:
                target = target.with_suffix(_EXTENSIONS.get(content_type, ".png"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            paths.append(target)
    finally:
        if http_client is None:
            client.close()
    return paths
