"""The python examples of the pages that have no test module of their own run as written.

Blocks that need a running server are fenced ``py`` on their page, so they are shown
but not run here; the adapter tests run the same calls against real servers.
"""

from __future__ import annotations

from tests import docs


class TestServiceDocs(docs.PageExamples):
    page = "service.md"
    minimum = 4


class TestErrorsDocs(docs.PageExamples):
    page = "errors.md"


class TestAdaptersIndexDocs(docs.PageExamples):
    page = "adapters/index.md"


class TestASGIDocs(docs.PageExamples):
    page = "adapters/asgi.md"


class TestWSGIDocs(docs.PageExamples):
    page = "adapters/wsgi.md"


class TestHTTPDocs(docs.PageExamples):
    page = "http.md"


class TestV2Docs(docs.PageExamples):
    page = "v2.md"
    minimum = 8


class TestMsgPackDocs(docs.PageExamples):
    page = "serializers/msgpack.md"


class TestPickleDocs(docs.PageExamples):
    page = "serializers/pickle.md"


class TestProtobufDocs(docs.PageExamples):
    page = "serializers/protobuf.md"
    minimum = 4


class TestCLIDocs(docs.PageExamples):
    page = "cli.md"
