"""Test suite package: lets tests import the shared harness as ``tests.cluster``."""
