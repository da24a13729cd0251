"""The class of an error from the probe's TCP connect (the path itself runs against real peers in
tests/integration/test_probe.py; which error the kernel reports first depends on timing, so the
classification is pinned here for each one)."""

import errno
import os

import pytest

from heartbeat.models import ErrorClass
from heartbeat.probe import connect_error


@pytest.mark.parametrize(("code", "error_class", "words"), [
    (errno.ECONNRESET, ErrorClass.BANNER, "connection reset before the SSH banner: Connection reset by peer"),
    (errno.EHOSTUNREACH, ErrorClass.UNREACHABLE, "No route to host (192.0.2.1)"),
    (errno.ENETUNREACH, ErrorClass.UNREACHABLE, "Network is unreachable (192.0.2.1)"),
    (errno.EMFILE, ErrorClass.OTHER, "TCP connect failed: Too many open files"),
], ids=["reset as the connect completes", "no route", "no network", "other"])
def test_should_class_a_connect_error_by_what_it_means_for_the_server(code, error_class, words):
    failed = connect_error(OSError(code, os.strerror(code)), "192.0.2.1")
    assert (failed.error_class, str(failed.message)) == (error_class, words)
