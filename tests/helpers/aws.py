"""boto3 clients for setting up a moto server in tests (never the code under test): an S3
client with the test credentials, and a real IAM key id for the wrong-credential checks.
Used by tests/integration/storage and tests/reliability."""

from __future__ import annotations

from typing import Any

import boto3

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing-key", "aws_secret_access_key": "testing-secret"}


def s3_client(endpoint: str, **credentials: str) -> Any:
    """A boto3 S3 client for the test server; ``CREDENTIALS`` unless others are given."""
    keys = credentials or CREDENTIALS
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
    )


def iam_key_id(endpoint: str) -> str:
    """The id of a new access key of IAM user ``reader`` in moto at ``endpoint``: a key id
    that exists, so that a wrong *secret* is what fails."""
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="reader")
    key_id: str = iam.create_access_key(UserName="reader")["AccessKey"]["AccessKeyId"]
    return key_id
