"""hello-py: the example plugin `hello`, in Python. A greeting from the
tenant's config, a visit counter and notes kept in the tenant's store; saving
a note emits an event that the plugin itself subscribes to.

Build: scripts/build-components.sh (componentize-py, see docs/plugins/python.md).
"""

from bitbylaw import (
    BadRequest, NotFound, Permanent, Plugin, config, emit, info, json_response,
    kv_get_json, kv_incr, kv_set_add, kv_set_json, kv_set_members,
)

NOTE_SAVED = "hello-py.note-saved"

plugin = Plugin("hello-py", "0.1.0")


@plugin.get("/hello-py/{name}")
def greet(request):
    name = request.param("name")
    visits = kv_incr("visits", 1)
    info(f"greeted {name}", visits=visits)
    return json_response(200, {"message": f"{config('greeting', 'Hello')}, {name}!", "visits": visits})


@plugin.put("/hello-py/notes/{id}")
def put_note(request):
    note_id = request.param("id")
    text = request.json().get("text") if isinstance(request.json(), dict) else None
    if not isinstance(text, str) or not text:
        raise BadRequest("`text` must be a string that is not empty")
    kv_set_json(f"note:{note_id}", {"text": text})
    emit(NOTE_SAVED, note_id)
    return json_response(200, {"text": text})


@plugin.get("/hello-py/notes/{id}")
def get_note(request):
    note_id = request.param("id")
    note = kv_get_json(f"note:{note_id}")
    if note is None:
        raise NotFound(f"no note `{note_id}`")
    return json_response(200, note)


@plugin.get("/hello-py/notes")
def saved_notes(_request):
    return json_response(200, sorted(kv_set_members("saved")))


@plugin.on(NOTE_SAVED)
def note_saved(event):
    """Keeps the ids of saved notes in a set, as a downstream sync would record its work."""
    try:
        note_id = event.payload.decode()
    except UnicodeDecodeError:
        raise Permanent("payload is not UTF-8") from None
    kv_set_add("saved", [note_id])


Handler = plugin.handler()
