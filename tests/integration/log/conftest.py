"""The contract module holds the asserts; have pytest rewrite them so failures show the values."""

import pytest

pytest.register_assert_rewrite("tests.integration.log.contract")
