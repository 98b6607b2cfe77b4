"""GDAL's C API, for the calls rasterio does not expose: CreateCopy and Translate with a
progress callback.

``rasterio.shutil.copy`` hands GDAL no progress function, so the write would be one silent
call. GDAL itself reports progress to any ``GDALProgressFunc`` given to ``GDALCreateCopy``
(the COG driver scales its overview pass and its final copy into one 0..1 run), so the
engine calls ``GDALCreateCopy`` itself, through ctypes, on **the libgdal rasterio has
loaded** (found in ``/proc/self/maps``): the same drivers, the same configuration
(``rasterio.Env`` sets it in that library), the same VSI handler that serves rasterio's
Python opener. The alternatives were worse: GDAL's own Python bindings would load a second
libgdal that knows nothing of rasterio's opener or environment; the size of the partial file
is not GDAL's progress (the driver writes its overviews elsewhere first); rasterio has no
hook. ctypes releases the GIL for the call, as rasterio does, and takes it back for each
callback. ``translate`` (``GDALTranslate``, with a progress callback too) resamples a whole
raster in one call, which is how ``overviews`` builds each level from the one above.

The source is opened again by the name rasterio opened it under (``dataset.name``: an opener
path ``/vsiriopener_.../...`` or a ``/vsimem/...vrt``), with the one driver rasterio used, so
the single-driver rule of ``source`` holds; rasterio's dataset stays open meanwhile, which
keeps its opener registered.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import rasterio
import rasterio._base  # noqa: F401 - loads libgdal, so that it is in the process's maps

_GDAL_OF_RASTER = 0x02
_GDAL_OF_VERBOSE_ERROR = 0x40
_CE_FAILURE = 3

# int (*GDALProgressFunc)(double dfComplete, const char *pszMessage, void *pProgressArg)
_ProgressFunc = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p)
_StringList = ctypes.POINTER(ctypes.c_char_p)


class GdalError(Exception):
    """A GDAL call failed; the message is GDAL's (it may name server paths: log it only)."""


def create_copy(
    src_name: str,
    src_driver: str,
    dst: str | os.PathLike,
    *,
    driver: str,
    options: Mapping[str, Any],
    progress: Callable[[float], bool],
) -> None:
    """``GDALCreateCopy`` of ``src_name`` (opened with ``src_driver`` only) to ``dst``.

    ``progress(fraction)`` is called as GDAL reports it; returning False stops the copy.
    An exception it raises stops the copy too and is raised here once GDAL has returned.
    Raises GdalError when GDAL fails (including when stopped by ``progress``).
    """
    lib = _lib()
    cog_driver = lib.GDALGetDriverByName(driver.encode())
    if not cog_driver:
        raise GdalError(f"GDAL has no {driver} driver")
    creation = _string_list(f"{key}={value}" for key, value in options.items())
    with _callback(progress) as (callback, raised), _opened(lib, src_name, src_driver) as src:
        copied = lib.GDALCreateCopy(
            cog_driver, os.fsencode(Path(dst)), src, 1, creation, callback, None
        )
        _close_written(lib, copied, raised, "GDALCreateCopy failed")


def translate(
    src_name: str,
    src_driver: str,
    dst: str | os.PathLike,
    *,
    arguments: list[str],
    progress: Callable[[float], bool],
) -> None:
    """``GDALTranslate`` (gdal_translate's ``arguments``) of ``src_name``, opened with
    ``src_driver`` only, to ``dst``; ``progress`` as for ``create_copy``."""
    lib = _lib()
    translate_options = lib.GDALTranslateOptionsNew(_string_list(arguments), None)
    if not translate_options:
        raise GdalError(_last_error(lib) or f"bad gdal_translate arguments: {arguments}")
    try:
        with (
            _callback(progress) as (callback, raised),
            _opened(lib, src_name, src_driver) as src,
        ):
            lib.GDALTranslateOptionsSetProgress(translate_options, callback, None)
            written = lib.GDALTranslate(os.fsencode(Path(dst)), src, translate_options, None)
            _close_written(lib, written, raised, "GDALTranslate failed")
    finally:
        lib.GDALTranslateOptionsFree(translate_options)


@contextlib.contextmanager
def _callback(progress: Callable[[float], bool]):
    """A ``GDALProgressFunc`` calling ``progress``, and the list of what it raised."""
    raised: list[BaseException] = []

    def on_progress(fraction: float, message: bytes | None, data: int | None) -> int:
        try:
            return 1 if progress(fraction) else 0
        except BaseException as exc:  # an exception cannot cross GDAL's C frames
            raised.append(exc)
            return 0

    yield _ProgressFunc(on_progress), raised  # referenced until the call has returned


@contextlib.contextmanager
def _opened(lib, name: str, driver: str):
    lib.CPLErrorReset()
    handle = lib.GDALOpenEx(
        os.fsencode(name),
        _GDAL_OF_RASTER | _GDAL_OF_VERBOSE_ERROR,
        _string_list([driver]),
        None,
        None,
    )
    if not handle:
        raise GdalError(_last_error(lib) or f"GDAL could not reopen {name}")
    try:
        yield handle
    finally:
        lib.GDALClose(handle)


def _close_written(lib, written, raised: list[BaseException], failure: str) -> None:
    """Close the dataset a copy returned; raise what its progress raised or GDAL's error."""
    if raised:
        if written:
            lib.GDALClose(written)
        raise raised[0]
    if not written:
        raise GdalError(_last_error(lib) or failure)
    # Closing flushes what is left to write: its errors are the copy's.
    lib.CPLErrorReset()
    lib.GDALClose(written)
    if lib.CPLGetLastErrorType() >= _CE_FAILURE:
        raise GdalError(_last_error(lib))


def read_head(name: str, size: int) -> bytes:
    """The first ``size`` bytes of a file GDAL can open (a ``/vsis3/`` object, say), read
    through GDAL's virtual file systems in the current GDAL environment.
    Raises FileNotFoundError when GDAL cannot open it."""
    lib = _lib()
    handle = lib.VSIFOpenL(os.fsencode(name), b"rb")
    if not handle:
        raise FileNotFoundError(f"GDAL cannot open {name}")
    try:
        buffer = ctypes.create_string_buffer(size)
        read = lib.VSIFReadL(buffer, 1, size, handle)
        return buffer.raw[:read]
    finally:
        lib.VSIFCloseL(handle)


def _string_list(items) -> ctypes.Array:
    """A NULL-terminated ``char **``."""
    encoded = [item.encode() for item in items]
    return (ctypes.c_char_p * (len(encoded) + 1))(*encoded, None)


def _last_error(lib) -> str:
    message = lib.CPLGetLastErrorMsg()
    return message.decode(errors="replace") if message else ""


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(_loaded_libgdal())  # already loaded: dlopen hands back the same one
    lib.GDALVersionInfo.restype = ctypes.c_char_p
    lib.GDALVersionInfo.argtypes = [ctypes.c_char_p]
    version = lib.GDALVersionInfo(b"RELEASE_NAME").decode()
    if version != rasterio.__gdal_version__:
        raise RuntimeError(
            f"found libgdal {version}, but rasterio runs on GDAL {rasterio.__gdal_version__}"
        )
    lib.GDALGetDriverByName.restype = ctypes.c_void_p
    lib.GDALGetDriverByName.argtypes = [ctypes.c_char_p]
    lib.GDALOpenEx.restype = ctypes.c_void_p
    lib.GDALOpenEx.argtypes = [
        ctypes.c_char_p,
        ctypes.c_uint,
        _StringList,
        _StringList,
        _StringList,
    ]
    lib.GDALCreateCopy.restype = ctypes.c_void_p
    lib.GDALCreateCopy.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_int,
        _StringList,
        _ProgressFunc,
        ctypes.c_void_p,
    ]
    lib.GDALTranslateOptionsNew.restype = ctypes.c_void_p
    lib.GDALTranslateOptionsNew.argtypes = [_StringList, ctypes.c_void_p]
    lib.GDALTranslateOptionsSetProgress.restype = None
    lib.GDALTranslateOptionsSetProgress.argtypes = [
        ctypes.c_void_p,
        _ProgressFunc,
        ctypes.c_void_p,
    ]
    lib.GDALTranslateOptionsFree.restype = None
    lib.GDALTranslateOptionsFree.argtypes = [ctypes.c_void_p]
    lib.GDALTranslate.restype = ctypes.c_void_p
    lib.GDALTranslate.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.GDALClose.restype = None  # CPLErr only since GDAL 3.7: the error state says it all
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.VSIFOpenL.restype = ctypes.c_void_p
    lib.VSIFOpenL.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.VSIFReadL.restype = ctypes.c_size_t
    lib.VSIFReadL.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    lib.VSIFCloseL.restype = ctypes.c_int
    lib.VSIFCloseL.argtypes = [ctypes.c_void_p]
    lib.CPLErrorReset.restype = None
    lib.CPLErrorReset.argtypes = []
    lib.CPLGetLastErrorType.restype = ctypes.c_int
    lib.CPLGetLastErrorType.argtypes = []
    lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
    lib.CPLGetLastErrorMsg.argtypes = []
    return lib


def _loaded_libgdal() -> str:
    """The path of the libgdal in this process (rasterio's), else the system's."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and Path(fields[5].strip()).name.startswith("libgdal"):
                    return fields[5].strip()
    except OSError:  # not Linux
        pass
    found = ctypes.util.find_library("gdal")
    if found is None:
        raise RuntimeError("libgdal is not loaded and not found")
    return found
