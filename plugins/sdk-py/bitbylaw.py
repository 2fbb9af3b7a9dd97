"""bitbylaw for Python plugins: the `bitbylaw:plugin` world's handler as a
small framework, the Python side of `plugins/sdk` (the Rust SDK).

A plugin declares its routes, topics and schedules on a `Plugin`, and the
module componentize-py builds exports `Handler = plugin.handler()`. Errors
become what the Rust SDK makes of them: `HttpError`s answer with their status
and `{"error": ...}`, a store outage answers 503 (and makes an event or tick
retryable), anything else answers 500 without its text (it may hold data).

    plugin = Plugin("notes", "0.1.0")

    @plugin.get("/notes/{id}")
    def read(request):
        note = kv_get_json("note:" + request.param("id"))
        if note is None:
            raise NotFound("no such note")
        return json_response(200, note)

    Handler = plugin.handler()
"""

import json

from componentize_py_types import Err
from wit_world.exports import handler as wit
from wit_world.imports import config as _config
from wit_world.imports import events as _events
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import types as _types

__all__ = [
    "Plugin", "Request", "HttpError", "BadRequest", "NotFound", "Retry", "Permanent",
    "json_response", "config", "emit", "kv_get", "kv_set", "kv_get_json", "kv_set_json",
    "kv_incr", "kv_set_add", "kv_set_members", "info", "warn", "error",
]


class HttpError(Exception):
    """Answers the request with `status` and `{"error": message}`."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class BadRequest(HttpError):
    def __init__(self, message):
        super().__init__(400, message)


class NotFound(HttpError):
    def __init__(self, message):
        super().__init__(404, message)


class Retry(Exception):
    """An event or tick that may succeed later: the host delivers it again."""


class Permanent(Exception):
    """An event that will never succeed: the host puts it in the dead letters."""


class StoreUnavailable(Exception):
    """The tenant's store could not be reached (retry later)."""


class Request:
    """The request as routed: `params` from the route's `{name}`s, `query`
    and `headers` (lower case names) as dicts of their first values."""

    def __init__(self, raw):
        self.raw = raw
        self.method = raw.method
        self.path = raw.path
        self.route = raw.route
        self.params = dict(raw.params)
        self.query = {}
        for name, value in raw.query:
            self.query.setdefault(name, value)
        self.headers = {}
        for name, value in raw.headers:
            self.headers.setdefault(name.lower(), value)
        self.body = raw.body
        self.request_id = raw.request_id

    def param(self, name):
        value = self.params.get(name)
        if value is None:
            raise BadRequest(f"missing path parameter `{name}`")
        return value

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise BadRequest(f"the body is not JSON: {e}") from None


def json_response(status, value, headers=()):
    return wit.Response(
        status=status,
        headers=[("content-type", "application/json")] + list(headers),
        body=json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
    )


class Plugin:
    """What the plugin offers: routes, topics and schedules, each with its function."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self._routes = {}
        self._topics = {}
        self._schedules = {}

    def route(self, method, path):
        def register(function):
            self._routes[(method, path)] = function
            return function
        return register

    def get(self, path):
        return self.route("GET", path)

    def put(self, path):
        return self.route("PUT", path)

    def post(self, path):
        return self.route("POST", path)

    def delete(self, path):
        return self.route("DELETE", path)

    def on(self, topic):
        """The handler of events on `topic`, called with the event (at least once)."""
        def register(function):
            self._topics[topic] = function
            return function
        return register

    def schedule(self, name, cron):
        """A schedule (cron with seconds first); the function gets the tick."""
        def register(function):
            self._schedules[name] = (cron, function)
            return function
        return register

    def handler(self):
        """The class componentize-py exports as `Handler`."""
        plugin = self

        class Handler:
            def describe(self):
                return wit.Description(
                    name=plugin.name,
                    version=plugin.version,
                    routes=[wit.Route(method=m, path=p) for (m, p) in plugin._routes],
                    topics=list(plugin._topics),
                    schedules=[wit.Schedule(name=n, cron=c) for n, (c, _) in plugin._schedules.items()],
                )

            def handle_http(self, raw):
                function = plugin._routes.get((raw.method, raw.route)) or plugin._routes.get(("*", raw.route))
                if function is None:
                    return json_response(404, {"error": f"no route {raw.method} {raw.route}"})
                try:
                    return function(Request(raw))
                except HttpError as e:
                    return json_response(e.status, {"error": e.message})
                except StoreUnavailable as e:
                    return json_response(503, {"error": f"the store is unavailable: {e}"})
                except Exception as e:  # noqa: BLE001 - the text may hold data
                    error(f"{raw.method} {raw.route} failed", kind=type(e).__name__)
                    return json_response(500, {"error": "internal error"})

            def handle_event(self, event):
                function = plugin._topics.get(event.topic)
                if function is None:
                    raise Err(wit.HandlerError_Permanent(f"no handler for topic {event.topic}"))
                _run(function, event)

            def handle_schedule(self, tick):
                entry = plugin._schedules.get(tick.name)
                if entry is None:
                    raise Err(wit.HandlerError_Permanent(f"no schedule {tick.name}"))
                _run(entry[1], tick)

        return Handler


def _run(function, argument):
    try:
        function(argument)
    except Permanent as e:
        raise Err(wit.HandlerError_Permanent(str(e))) from None
    except (Retry, StoreUnavailable) as e:
        raise Err(wit.HandlerError_Retryable(str(e))) from None
    except Err:
        raise
    except Exception as e:  # noqa: BLE001
        raise Err(wit.HandlerError_Retryable(f"{type(e).__name__}: {e}")) from None


def _store(call, *args):
    """A kv or events call, with the store's errors as Python exceptions."""
    try:
        return call(*args)
    except Err as e:
        if isinstance(e.value, _types.StoreError_Invalid):
            raise BadRequest(e.value.value) from None
        raise StoreUnavailable(getattr(e.value, "value", "")) from None


def config(key, default=None):
    value = _config.get(key)
    return default if value is None else value


def emit(topic, payload):
    """Emits an event (bytes, str, or anything JSON) to the tenant's subscribers of `topic`."""
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, (bytes, bytearray)):
        payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    _store(_events.emit, topic, bytes(payload))


def kv_get(key):
    return _store(_kv.get, key)


def kv_set(key, value, ttl_ms=None):
    if isinstance(value, str):
        value = value.encode()
    _store(_kv.set, key, value, ttl_ms)


def kv_get_json(key):
    value = kv_get(key)
    return None if value is None else json.loads(value)


def kv_set_json(key, value, ttl_ms=None):
    kv_set(key, json.dumps(value, ensure_ascii=False, separators=(",", ":")), ttl_ms)


def kv_incr(key, delta=1):
    return _store(_kv.incr, key, delta)


def kv_set_add(key, members):
    return _store(_kv.set_add, key, list(members))


def kv_set_members(key):
    return _store(_kv.set_members, key)


def _log_at(level, message, fields):
    _log.log(level, message, [(k, str(v)) for k, v in fields.items()])


def info(message, **fields):
    _log_at(_log.Level.INFO, message, fields)


def warn(message, **fields):
    _log_at(_log.Level.WARN, message, fields)


def error(message, **fields):
    _log_at(_log.Level.ERROR, message, fields)
