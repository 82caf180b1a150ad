"""Decoding of the Kubernetes protobuf envelope for the few request bodies
kubectl's generators send as protobuf (`kubectl create namespace`,
`kubectl create configmap`). Other protobuf bodies are refused with 415."""

from __future__ import annotations

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs: ints for varints, bytes for
    length-delimited fields."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _string_map(entries: list[bytes]) -> dict:
    result = {}
    for entry in entries:
        parts = dict(fields(entry))
        result[parts.get(1, b"").decode()] = parts.get(2, b"").decode()
    return result


def _object_meta(data: bytes) -> dict:
    meta: dict = {}
    labels, annotations, finalizers = [], [], []
    for number, value in fields(data):
        if number in (1, 2, 3):
            meta[{1: "name", 2: "generateName", 3: "namespace"}[number]] = value.decode()
        elif number == 11:
            labels.append(value)
        elif number == 12:
            annotations.append(value)
        elif number == 14:
            finalizers.append(value.decode())
    if labels:
        meta["labels"] = _string_map(labels)
    if annotations:
        meta["annotations"] = _string_map(annotations)
    if finalizers:
        meta["finalizers"] = finalizers
    return meta


def _namespace(parts: list) -> dict:
    obj: dict = {"metadata": {}}
    for number, value in parts:
        if number == 1:
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            finalizers = [v.decode() for n, v in fields(value) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}
    return obj


def _configmap(parts: list) -> dict:
    obj: dict = {"metadata": {}}
    data, immutable = [], None
    for number, value in parts:
        if number == 1:
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            data.append(value)
        elif number == 4:
            immutable = bool(value)
    if data:
        obj["data"] = _string_map(data)
    if immutable is not None:
        obj["immutable"] = immutable
    return obj


_DECODERS = {("v1", "Namespace"): _namespace, ("v1", "ConfigMap"): _configmap}


def decode(body: bytes) -> dict:
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(envelope.get(1, b"")))
    api_version, kind = type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode()
    decoder = _DECODERS.get((api_version, kind))
    if decoder is None:
        raise ProtobufError(f"this test apiserver decodes protobuf only for {sorted(k for _, k in _DECODERS)}, "
                            f"not {api_version} {kind}; send JSON")
    obj = decoder(fields(envelope.get(2, b"")))
    return {"apiVersion": api_version, "kind": kind, **obj}
