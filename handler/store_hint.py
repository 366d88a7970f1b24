"""What to do about a dispatch log that cannot be read: the hint the CLI and the page print after the error."""

from __future__ import annotations

from .settings import Settings


def store_hint(error: str, settings: Settings) -> str:
    """A sentence to append to a StoreUnavailable's message, naming what to set; "" when none fits."""
    if "NoCredentialsError" in error:
        return (": no AWS credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
                "for the local stack, `make dev` prints the line to export")
    if "EndpointConnectionError" in error or "ConnectTimeout" in error:
        return (": DynamoDB did not answer. For the local stack, is `make dev` running and "
                "AWS_ENDPOINT_URL_DYNAMODB set (make dev prints it)?")
    if "ResourceNotFoundException" in error:
        return (f": there is no table {settings.table_name!r} there. Set SWITCHBOARD_TABLE_NAME to the stack's "
                "DispatchTableName output, or run `switchboard table create`")
    return ""
