"""An in-memory DynamoDB that answers the calls DynamoStore makes, as DynamoDB does.

It exists for speed: the explorer runs thousands of schedules, and DynamoDB Local
costs milliseconds a call. It is held to DynamoDB Local by tests/test_dynamo_model.py,
which runs the same random store operations on both and compares every answer,
every error and every item. It knows only the expression grammar DynamoStore uses:

    conditions  attribute_exists(a) | attribute_not_exists(a) | a = :v | a < :v | a >= :v
                | size(a) < :v | contains(a, :v) | a IN (:x, :y) | begins_with(a, :v)
                | (…) | … AND … | … OR …
    updates     SET a = :v | a = if_not_exists(a, :v) | a = list_append(if_not_exists(a, :v), :w)
                REMOVE a, b    ADD a :n (number or string set)    DELETE a :set

(Over ~300 lines: the expression parser and the calls that use it are one model.)
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, operation: str, **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **extra}, operation)


_TOKEN = re.compile(r"\s*(#\w+|:\w+|[A-Za-z_][\w.]*|<=|>=|<>|[=<>(),])")


@functools.lru_cache(maxsize=512)
def _tokenize(text: str) -> tuple[str, ...]:
    items: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read expression at {text[position:]!r}")
        items.append(match.group(1))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tuple(items)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items = _tokenize(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def take(self, expected: str | None = None) -> str:
        token = self.items[self.at]
        if expected is not None and token.upper() != expected.upper():
            raise ValueError(f"expected {expected}, found {token}")
        self.at += 1
        return token


class Expressions:
    def __init__(self, names: dict[str, str] | None, values: dict[str, Any] | None) -> None:
        self.names = names or {}
        self.values = values or {}

    def name(self, token: str) -> str:
        return self.names[token] if token.startswith("#") else token

    def operand(self, tokens: _Tokens, item: dict[str, Any]) -> Any:
        token = tokens.take()
        if token.startswith(":"):
            return self.values[token]
        if token == "size":
            tokens.take("(")
            value = item.get(self.name(tokens.take()))
            tokens.take(")")
            if value is None:
                return None
            (kind, inner), = value.items()
            return {"N": str(len(inner))}
        return item.get(self.name(token))

    # --- conditions -----------------------------------------------------------------

    def check(self, text: str | None, item: dict[str, Any]) -> bool:
        if not text:
            return True
        tokens = _Tokens(text)
        result = self._or(tokens, item)
        if tokens.peek() is not None:
            raise ValueError(f"unread expression: {tokens.items[tokens.at:]}")
        return result

    def _or(self, tokens: _Tokens, item: dict[str, Any]) -> bool:
        result = self._and(tokens, item)
        while (tokens.peek() or "").upper() == "OR":
            tokens.take()
            right = self._and(tokens, item)
            result = result or right
        return result

    def _and(self, tokens: _Tokens, item: dict[str, Any]) -> bool:
        result = self._term(tokens, item)
        while (tokens.peek() or "").upper() == "AND":
            tokens.take()
            right = self._term(tokens, item)
            result = result and right
        return result

    def _term(self, tokens: _Tokens, item: dict[str, Any]) -> bool:
        token = tokens.peek()
        if token == "(":
            tokens.take()
            result = self._or(tokens, item)
            tokens.take(")")
            return result
        if token in ("attribute_exists", "attribute_not_exists", "contains", "begins_with"):
            tokens.take()
            tokens.take("(")
            value = item.get(self.name(tokens.take()))
            argument = None
            if tokens.peek() == ",":
                tokens.take()
                argument = self.values[tokens.take()]
            tokens.take(")")
            if token == "attribute_exists":
                return value is not None
            if token == "attribute_not_exists":
                return value is None
            if token == "contains":
                return value is not None and _contains(value, argument)
            return value is not None and "S" in value and value["S"].startswith(argument["S"])
        left = self.operand(tokens, item)
        op = tokens.take()
        if op.upper() == "IN":
            tokens.take("(")
            options = [self.values[tokens.take()]]
            while tokens.peek() == ",":
                tokens.take()
                options.append(self.values[tokens.take()])
            tokens.take(")")
            return left is not None and any(_compare(left, o) == 0 for o in options)
        right = self.operand(tokens, item)
        if left is None or right is None:
            return False
        order = _compare(left, right)
        if order is None:
            return op == "<>"
        return {"=": order == 0, "<>": order != 0, "<": order < 0, "<=": order <= 0,
                ">": order > 0, ">=": order >= 0}[op]

    # --- updates ----------------------------------------------------------------------

    def apply(self, text: str, item: dict[str, Any]) -> None:
        tokens = _Tokens(text)
        touched: set[str] = set()

        def once(name: str) -> str:
            # DynamoDB refuses an update that names one attribute twice ("two document paths overlap").
            if name in touched:
                raise _error("ValidationException", "UpdateItem")
            touched.add(name)
            return name

        while tokens.peek() is not None:
            clause = tokens.take().upper()
            while True:
                if clause == "SET":
                    target = once(self.name(tokens.take()))
                    tokens.take("=")
                    item[target] = self._value(tokens, item)
                elif clause == "REMOVE":
                    item.pop(once(self.name(tokens.take())), None)
                elif clause == "ADD":
                    target = once(self.name(tokens.take()))
                    value = self.values[tokens.take()]
                    item[target] = _add(item.get(target), value)
                elif clause == "DELETE":
                    target = once(self.name(tokens.take()))
                    value = self.values[tokens.take()]
                    remaining = [v for v in (item.get(target) or {"SS": []})["SS"] if v not in value["SS"]]
                    if remaining:
                        item[target] = {"SS": remaining}
                    else:
                        item.pop(target, None)
                else:
                    raise ValueError(f"unknown clause {clause}")
                if tokens.peek() != ",":
                    break
                tokens.take()

    def _value(self, tokens: _Tokens, item: dict[str, Any]) -> Any:
        token = tokens.take()
        if token == "if_not_exists":
            tokens.take("(")
            current = item.get(self.name(tokens.take()))
            tokens.take(",")
            fallback = self._value(tokens, item)
            tokens.take(")")
            return _copy(current) if current is not None else fallback
        if token == "list_append":
            tokens.take("(")
            first = self._value(tokens, item)
            tokens.take(",")
            second = self._value(tokens, item)
            tokens.take(")")
            return {"L": [*first["L"], *second["L"]]}
        if token.startswith(":"):
            return _copy(self.values[token])
        return _copy(item.get(self.name(token)))


def _copy(value: Any) -> Any:
    """A copy of an item or an attribute value (copy.deepcopy, at a tenth of its cost)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _number(value: dict[str, Any]) -> Decimal:
    return Decimal(value["N"])


def _compare(left: dict[str, Any], right: dict[str, Any]) -> int | None:
    (lk, lv), = left.items()
    (rk, rv), = right.items()
    if lk != rk:
        return None
    if lk == "N":
        a, b = Decimal(lv), Decimal(rv)
    elif lk in ("S", "BOOL"):
        a, b = lv, rv
    else:
        return 0 if lv == rv else None
    return (a > b) - (a < b)


def _contains(value: dict[str, Any], argument: dict[str, Any]) -> bool:
    (kind, inner), = value.items()
    if kind == "SS":
        return argument.get("S") in inner
    if kind == "S":
        return argument.get("S", "") in inner
    if kind == "L":
        return argument in inner
    return False


def _add(current: dict[str, Any] | None, value: dict[str, Any]) -> dict[str, Any]:
    if "N" in value:
        return {"N": str((_number(current) if current else 0) + _number(value))}
    merged = list((current or {"SS": []})["SS"])
    merged += [v for v in value["SS"] if v not in merged]
    return {"SS": merged}


def _key_of(item: dict[str, Any], schema: list[dict[str, str]]) -> tuple[str, ...]:
    return tuple(item[k["AttributeName"]]["S"] for k in schema)


class DynamoModel:
    """An async stand-in for aioboto3's DynamoDB client, for one or more tables made by CreateTable."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}

    async def create_table(self, **request: Any) -> dict[str, Any]:
        self.tables[request["TableName"]] = {"schema": request["KeySchema"], "items": {},
                                            "indexes": {i["IndexName"]: i["KeySchema"]
                                                        for i in request.get("GlobalSecondaryIndexes", [])}}
        return {}

    async def delete_table(self, TableName: str) -> dict[str, Any]:  # noqa: N803 - boto's own name
        self.tables.pop(TableName)
        return {}

    def _table(self, name: str) -> dict[str, Any]:
        if name not in self.tables:
            raise _error("ResourceNotFoundException", "Table")
        return self.tables[name]

    async def get_item(self, *, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803
        table = self._table(TableName)
        item = table["items"].get(_key_of(Key, table["schema"]))
        return {"Item": _copy(item)} if item is not None else {}

    async def put_item(self, *, TableName: str, Item: dict[str, Any], ConditionExpression: str | None = None,  # noqa: N803
                       ExpressionAttributeNames: dict[str, str] | None = None,
                       ExpressionAttributeValues: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        table = self._table(TableName)
        key = _key_of(Item, table["schema"])
        current = table["items"].get(key, {})
        if not Expressions(ExpressionAttributeNames, ExpressionAttributeValues).check(ConditionExpression, current):
            raise _error("ConditionalCheckFailedException", "PutItem")
        table["items"][key] = _copy(Item)
        return {}

    async def update_item(self, *, TableName: str, Key: dict[str, Any], UpdateExpression: str,  # noqa: N803
                          ConditionExpression: str | None = None,
                          ExpressionAttributeNames: dict[str, str] | None = None,
                          ExpressionAttributeValues: dict[str, Any] | None = None,
                          ReturnValues: str = "NONE", ReturnValuesOnConditionCheckFailure: str = "NONE",
                          **_: Any) -> dict[str, Any]:
        table = self._table(TableName)
        key = _key_of(Key, table["schema"])
        current = table["items"].get(key)
        expressions = Expressions(ExpressionAttributeNames, ExpressionAttributeValues)
        if not expressions.check(ConditionExpression, current or {}):
            extra = {"Item": _copy(current)} if current and ReturnValuesOnConditionCheckFailure == "ALL_OLD" else {}
            raise _error("ConditionalCheckFailedException", "UpdateItem", **extra)
        updated = _copy(current) if current else _copy(Key)
        expressions.apply(UpdateExpression, updated)
        table["items"][key] = updated
        return {"Attributes": _copy(updated)} if ReturnValues == "ALL_NEW" else {}

    async def transact_write_items(self, *, TransactItems: list[dict[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        reasons: list[dict[str, Any]] = []
        plans = []
        for entry in TransactItems:
            (kind, request), = entry.items()
            table = self._table(request["TableName"])
            key_source = request.get("Item") or request["Key"]
            key = _key_of(key_source, table["schema"])
            current = table["items"].get(key)
            expressions = Expressions(request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues"))
            if expressions.check(request.get("ConditionExpression"), current or {}):
                reasons.append({"Code": "None"})
            else:
                reason: dict[str, Any] = {"Code": "ConditionalCheckFailed"}
                if current and request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD":
                    reason["Item"] = _copy(current)
                reasons.append(reason)
            plans.append((kind, request, table, key, current, expressions))
        if any(r["Code"] != "None" for r in reasons):
            raise _error("TransactionCanceledException", "TransactWriteItems", CancellationReasons=reasons)
        for kind, request, table, key, current, expressions in plans:
            if kind == "Put":
                table["items"][key] = _copy(request["Item"])
            else:
                updated = _copy(current) if current else _copy(request["Key"])
                expressions.apply(request["UpdateExpression"], updated)
                table["items"][key] = updated
        return {}

    async def query(self, *, TableName: str, KeyConditionExpression: str, IndexName: str | None = None,  # noqa: N803
                    FilterExpression: str | None = None, ExpressionAttributeNames: dict[str, str] | None = None,
                    ExpressionAttributeValues: dict[str, Any] | None = None, ScanIndexForward: bool = True,
                    **_: Any) -> dict[str, Any]:
        table = self._table(TableName)
        schema = table["indexes"][IndexName] if IndexName else table["schema"]
        expressions = Expressions(ExpressionAttributeNames, ExpressionAttributeValues)
        names = [k["AttributeName"] for k in schema]
        candidates: Any = table["items"].values()
        if IndexName is None:
            # The partition key's value, to read one partition rather than the table.
            token = _tokenize(KeyConditionExpression)[2]
            pk = (ExpressionAttributeValues or {})[token]["S"]
            candidates = [item for key, item in table["items"].items() if key[0] == pk]
        found = [item for item in candidates
                 if all(n in item for n in names) and expressions.check(KeyConditionExpression, item)]
        found.sort(key=lambda item: tuple(item[n]["S"] for n in names), reverse=not ScanIndexForward)
        return {"Items": [_copy(i) for i in found if expressions.check(FilterExpression, i)]}
