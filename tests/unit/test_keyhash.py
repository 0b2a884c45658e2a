"""Output records are partitioned exactly as Kafka clients partition keyed records
(murmur2 of the key), so one key's outputs stay in one partition, the one any consumer
expects (``worker.keyhash``, used by ``worker.publisher.Outbox.stage_keyed``). Holds for
the compiled module (``make native``) and for the pure-Python source alike."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

import worker.keyhash as loaded

SOURCE = Path(loaded.__file__).with_name("keyhash.py")


def _pure_python():
    spec = importlib.util.spec_from_file_location("keyhash_source", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IMPLEMENTATIONS = {"as imported": loaded, "pure Python source": _pure_python()}

#: Kafka's own test vectors (org.apache.kafka.common.utils.UtilsTest#testMurmur2), signed
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _signed(h: int) -> int:
    return h - (1 << 32) if h >= 1 << 31 else h


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_murmur2_matches_the_java_clients_test_vectors(name):
    murmur2 = IMPLEMENTATIONS[name].murmur2
    assert {k: _signed(murmur2(k)) for k in JAVA_VECTORS} == JAVA_VECTORS


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@settings(max_examples=2000, deadline=None)
@given(key=st.binary(max_size=300), partitions=st.integers(min_value=1, max_value=512))
def test_keys_land_in_the_partition_kafka_clients_choose(name, key, partitions):
    module = IMPLEMENTATIONS[name]
    assert module.murmur2(key) == aiokafka_murmur2(key)
    assert module.partition_for(key, partitions) == \
        (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions


def test_every_key_length_up_to_64_bytes_hashes_like_aiokafka():
    for n in range(65):
        key = bytes((7 * i + n) % 256 for i in range(n))
        for module in IMPLEMENTATIONS.values():
            assert module.murmur2(key) == aiokafka_murmur2(key), n
