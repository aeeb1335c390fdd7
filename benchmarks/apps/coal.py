from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

class _Writer:
    __slots__ = ("_t", "_held", "_loop", "write_eof", "can_write_eof")
    def __init__(self, t, loop):
        self._t = t; self._held = None; self._loop = loop
    def write(self, data):
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._t.write(held + data)
    def _flush(self):
        held = self._held
        if held is not None:
            self._held = None
            self._t.write(held)
    def close(self):
        self._flush(); self._t.close()
    def is_closing(self):
        return self._t.is_closing()
    def __getattr__(self, name):
        return getattr(self._t, name)

class P(HttpToolsProtocol):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.transport = _Writer(transport, self.loop)
