"""A small client of the firmware-sim control API (JSON over HTTP).

Every method returns the decoded JSON answer. An error answer of the API
raises :class:`ApiError` with its ``kind`` (``unknown_volume``,
``wrong_state``, ``busy``, ...), ``status`` and message, exactly as the API
documents them (docs/CLI.md, "Control API"); no answer at all (the daemon
is down, a timeout) raises :class:`ApiUnreachable`, a ``ConnectionError``.
"""

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    """An error answer of the control API."""

    def __init__(self, status, kind, message):
        super().__init__(f"{message} [{kind}]")
        self.status = status
        self.kind = kind
        self.message = message

    def __reduce__(self):
        # Crosses process boundaries (multiprocessing, ProcessPoolExecutor)
        # as itself (QA: it failed to unpickle there).
        return (type(self), (self.status, self.kind, self.message))


class ApiUnreachable(ConnectionError):
    """The control API did not answer at all (daemon stopped or crashed,
    wrong address, timeout): no HTTP answer, so no ``kind``."""

    def __init__(self, url, reason):
        super().__init__(f"the firmware-sim control API at {url} did not answer: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.url, self.reason))


def _seg(text):
    return urllib.parse.quote(str(text), safe="")


class Client:
    """The control API at ``base`` (``http://HOST:PORT``, or ``https://HOST:PORT``
    with ``cafile`` naming the PEM certificate or CA to trust)."""

    def __init__(self, base, timeout=300.0, token=None, cafile=None):
        self.base = base.rstrip("/")
        self.token = token
        if not self.base.startswith(("http://", "https://")):
            self.base = "http://" + self.base
        self.timeout = timeout
        # The API is a direct connection: never through a proxy.
        handlers = [urllib.request.ProxyHandler({})]
        if cafile is not None:
            # An https API (boot --api-tls): trust this PEM certificate or CA.
            handlers.append(urllib.request.HTTPSHandler(
                context=ssl.create_default_context(cafile=str(cafile))))
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        # Every state-changing request carries JSON (the API refuses others).
        if body is None and method not in ("GET", "HEAD"):
            body = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                doc = json.loads(text)
                raise ApiError(e.code, doc.get("kind", "unknown"), doc.get("error", text)) from None
            except ValueError:
                raise ApiError(e.code, "not_api", text.strip() or str(e)) from None
        except urllib.error.URLError as e:
            raise ApiUnreachable(self.base, e.reason) from None
        except (OSError, http.client.HTTPException) as e:
            # Timeouts, resets and a connection closed mid-answer.
            raise ApiUnreachable(self.base, e) from None

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return self.request("POST", path, {} if body is None else body)

    def delete(self, path):
        return self.request("DELETE", path)

    # ---- status ----------------------------------------------------------
    def health(self):
        return self.get("/health")

    def recent_events(self):
        """The daemon's recent events, oldest first: [{time_unix_ms, text}]."""
        return self.get("/events")

    # ---- volumes ---------------------------------------------------------
    def volumes(self):
        return self.get("/volumes")

    def volume(self, name):
        return self.get(f"/volumes/{_seg(name)}")

    def create_volume(self, name, model):
        return self.post("/volumes", {"id": name, "model": model})

    def delete_volume(self, name):
        return self.delete(f"/volumes/{_seg(name)}")

    # ---- maps ------------------------------------------------------------
    def maps(self):
        return self.get("/mappings")

    def map(self, map_id):
        return self.get(f"/mappings/{_seg(str(map_id))}")

    def create_map(self, source, target, copy_type="nocopy", incremental=False,
                   extent=None, copy_rate=None, clean_rate=None, name=None):
        """``name``: every other call then takes it in place of the id."""
        body = {"source": source, "target": target, "type": copy_type,
                "incremental": incremental}
        for key, value in (("extent", extent), ("copy_rate", copy_rate),
                           ("clean_rate", clean_rate), ("name", name)):
            if value is not None:
                body[key] = value
        return self.post("/mappings", body)

    def start_map(self, map_id, restore=False):
        return self.post(f"/mappings/{_seg(str(map_id))}/start", {"restore": restore})

    def prepare_map(self, map_id):
        return self.post(f"/mappings/{_seg(str(map_id))}/prepare")

    def stop_map(self, map_id, force=False):
        return self.post(f"/mappings/{_seg(str(map_id))}/stop", {"force": force})

    def delete_map(self, map_id, force=False):
        return self.delete(f"/mappings/{_seg(str(map_id))}?force={'true' if force else 'false'}")

    def restore_map(self, map_id, copy_rate=None):
        body = {} if copy_rate is None else {"copy_rate": copy_rate}
        return self.post(f"/mappings/{_seg(str(map_id))}/restore", body)

    def wait_map(self, map_id, timeout=None, poll=0.1):
        """Waits until the map is copied (idle_or_copied) or stopped; returns it.
        A map that is not started, or one that never finishes (nocopy, or copy
        rate 0), is an error at once (``wrong_state``, as ``map wait`` and the
        Rust client)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first = True
        while True:
            m = self.map(map_id)
            if first and m["state"] == "idle_or_copied" and m["progress_percent"] < 100:
                raise ApiError(409, "wrong_state",
                               f"map {map_id} is not started (idle_or_copied at "
                               f"{m['progress_percent']}%: never started, or stopped before "
                               f"its copy finished), so there is nothing to wait for; start it "
                               f"with `firmware-sim map start {map_id}`")
            first = False
            if m["state"] in ("idle_or_copied", "stopped"):
                return m
            if m["state"] == "copying" and (m["type"] == "nocopy" or m["copy_rate"] == 0):
                raise ApiError(409, "wrong_state",
                               f"map {map_id} is a {m['type']} map with copy rate "
                               f"{m['copy_rate']}: it copies only on write and never finishes; "
                               f"stop it, or use a full map with --copy-rate")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"map {map_id} still {m['state']} after {timeout} s")
            time.sleep(poll)

    def cascades(self):
        return self.get("/cascades")

    # ---- groups ----------------------------------------------------------
    def groups(self):
        return self.get("/groups")

    def create_group(self, group_id, maps, name=None):
        """``group_id=None``: the subsystem assigns the next free id (in the answer's ``id``).
        ``maps`` are map ids."""
        body = {"maps": [int(m) for m in maps]}
        if group_id is not None:
            body["id"] = int(group_id)
        if name is not None:
            body["name"] = name
        return self.post("/groups", body)

    def start_group(self, group_id, restore=False):
        return self.post(f"/groups/{_seg(str(group_id))}/start", {"restore": restore})

    def stop_group(self, group_id, force=False):
        return self.post(f"/groups/{_seg(str(group_id))}/stop", {"force": force})

    def add_to_group(self, group_id, map_id):
        return self.post(f"/groups/{_seg(str(group_id))}/maps", {"map": int(map_id)})

    def remove_from_group(self, group_id, map_id):
        return self.delete(f"/groups/{_seg(str(group_id))}/maps/{_seg(str(map_id))}")

    def delete_group(self, group_id, force=False):
        return self.delete(f"/groups/{_seg(str(group_id))}?force={'true' if force else 'false'}")

    # ---- sessions ----------------------------------------------------------
    def sessions(self, local=False):
        """Every session. ``local=True``: from this daemon's own activity
        tables alone, asking no peer (for use while a peer does not answer;
        a spanning session then shows only its parts here)."""
        return self.get("/sessions?local=true" if local else "/sessions")

    def session(self, session_id, local=False):
        for s in self.sessions(local=local):
            if s["id"] == session_id:
                return s
        raise ApiError(404, "unknown_session", f"unknown session {session_id}")

    def wait_session(self, session_id, timeout=None, poll=0.1):
        """Waits until the session's copy has finished on every subsystem (or
        it is completed); returns it. A terminated session, or one whose
        physical session broke, is ``wrong_state`` (its copy will never
        finish); so is, without a timeout, a session whose maps here all
        copy at rate 0. ``TimeoutError`` after ``timeout`` seconds (the
        Rust client's and ``session wait``'s rules)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        first = timeout is None
        while True:
            s = self.session(session_id)
            if s["state"] == "completed":
                return s
            if s["state"] == "terminated":
                raise ApiError(409, "wrong_state",
                               f"session {session_id} was terminated "
                               f"({s.get('reason') or 'unknown reason'}): its copy will not "
                               f"finish; start a new session for the backup")
            broken = [p for p in s["parts"] if p.get("broken")]
            if broken:
                p = broken[0]
                raise ApiError(409, "wrong_state",
                               f"session {session_id}: its physical session {p['phys']:02X} on "
                               f"{p['subsystem']} is {p['broken']}, so its image is lost and its "
                               f"copy will not finish; terminate_session ends it")
            parts = s["parts"]
            if parts and all(p.get("copied_tracks") is not None
                             and p.get("total_tracks") is not None
                             and p["copied_tracks"] >= p["total_tracks"] for p in parts):
                return s
            if first and self._session_copies_nothing(session_id):
                raise ApiError(409, "wrong_state",
                               f"session {session_id} copies at rate 0: only what writes touch "
                               f"is copied, so its copy may never finish; wait with a timeout, "
                               f"or start it with copy_rate")
            first = False
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"session {session_id} still {s['state']} "
                    f"({s.get('progress_percent') or 0:.1f}% copied) after {timeout} s")
            time.sleep(poll)

    def _session_copies_nothing(self, session_id):
        group = next((g for g in self.groups() if g.get("session") == session_id), None)
        if group is None:
            return False
        rates = [m["copy_rate"] for m in self.maps() if m["id"] in group["maps"]]
        return bool(rates) and all(r == 0 for r in rates)

    def start_session(self, session_id, extents, targets, program=None, host=None,
                      copy_rate=None):
        """``extents``: ``["FB00:0-15", "SS02/V0:0-15"]``; ``targets``: one per source.
        ``host``: the owner host (default: the daemon's host id); ``copy_rate``:
        background rate of its maps, 0-150 (default 100)."""
        if isinstance(extents, str):
            extents = [extents]
        if isinstance(targets, str):
            targets = [targets]
        body = {"id": session_id, "extent": ",".join(extents), "target": ",".join(targets)}
        if program is not None:
            body["program"] = program
        if host is not None:
            body["host"] = host
        if copy_rate is not None:
            body["copy_rate"] = int(copy_rate)
        return self.post("/sessions", body)

    def release_session(self, session_id):
        """Marks the session logically complete (serialization released)."""
        return self.post(f"/sessions/{_seg(session_id)}/release")

    def complete_session(self, session_id):
        return self.post(f"/sessions/{_seg(session_id)}/complete")

    def terminate_session(self, session_id, reason=None):
        body = {} if reason is None else {"reason": reason}
        return self.post(f"/sessions/{_seg(session_id)}/terminate", body)

    def table(self, volume=None):
        path = "/tables" if volume is None else f"/tables?volume={_seg(volume)}"
        return self.get(path)

    # ---- events ------------------------------------------------------------
    def event(self, name, **body):
        """``ipl``, ``rm-restart``, ``abend`` (``program=``), ``reset`` (``lose_volatile=``);
        ``host=`` scopes ``ipl``/``rm-restart``/``abend`` to one host."""
        return self.post(f"/events/{_seg(name)}", body)
