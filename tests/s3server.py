"""A real S3-compatible server for the tests: moto's server mode, as its own process.

The suite's S3 run (`TAGGER_STORAGE=s3 make test`) starts one for the session (tests/conftest.py)
unless AWS_S3_ENDPOINT_URL names a store already; tests that need a store of their own (on
another address, say) start another. Nothing is mocked in-process: django-storages, boto3 and
GDAL's /vsis3/ all talk HTTP to it.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

BUCKET = "tagger-test"
ACCESS_KEY = "tagger-test-key"
SECRET_KEY = "tagger-test-secret"
REGION = "us-east-1"


class MotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        from tests.conftest import free_port

        self.host, self.port = host, port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="tagger-moto-")) / "moto.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> str:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1)
                return self.url
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto's server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self):
        return client(self.url)


def client(endpoint_url: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )


def create_bucket(endpoint_url: str, bucket: str = BUCKET) -> None:
    s3 = client(endpoint_url)
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def storage_settings(endpoint_url: str, bucket: str) -> dict:
    """The settings of TAGGER_STORAGE=s3 on `bucket` of the server at `endpoint_url`, as
    config/settings/base.py derives them from the environment."""
    from django.conf import settings

    options = {
        **settings.STORAGES["default"].get("OPTIONS", {}),
        "bucket_name": bucket,
        "endpoint_url": endpoint_url,
        "addressing_style": "path",
        "region_name": REGION,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "signature_version": "s3v4",
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
        "object_parameters": {"ChecksumAlgorithm": "SHA256"},
    }
    return {
        **process_environment(endpoint_url, bucket),
        "STORAGES": {
            **settings.STORAGES,
            "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        },
    }


def process_environment(endpoint_url: str, bucket: str) -> dict[str, str]:
    """The environment that makes a process a test starts (a worker) use that bucket."""
    return {
        "TAGGER_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": endpoint_url,
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
