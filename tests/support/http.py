"""Plain HTTP against a server on a loopback port: one request, requests
released all at once, and a client with a cookie jar of its own.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.cookies
import threading
import typing as t
import urllib.parse

from flask import Flask


def request(
    address: tuple[str, int], method: str, path: str, cookie: str | None
) -> tuple[str, str | None]:
    conn = http.client.HTTPConnection(*address, timeout=30)

    try:
        conn.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        body = response.read().decode()
        set_cookie = response.getheader("Set-Cookie")
        return body, set_cookie.split(";", 1)[0] if set_cookie else None
    finally:
        conn.close()


def pow_token(app: Flask, cookie: str) -> t.Any:
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return serializer.loads(cookie.split("=", 1)[1])["pow_auth"]


def all_at_once(
    addresses: list[tuple[str, int]], path: str, cookie: str | None
) -> list[tuple[str, str | None]]:
    """GET ``path`` from each address in parallel, all released at once."""
    barrier = threading.Barrier(len(addresses))
    results: list[tuple[str, str | None]] = []

    def hit(address: tuple[str, int]) -> None:
        barrier.wait(timeout=30)
        results.append(request(address, "GET", path, cookie))

    threads = [threading.Thread(target=hit, args=(a,)) for a in addresses]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join(timeout=60)

    return results


@dataclasses.dataclass
class Answer:
    status: int
    body: str
    #: Every Set-Cookie header of the response, as sent.
    set_cookies: list[str]
    #: Where a redirect points, as sent.
    location: str | None = None


class Browser:
    """One client with a cookie jar of its own, talking to one loopback port.
    Cookies are taken from every answer and deleted as a browser would
    (``Max-Age=0``), so a client holds exactly what the server gave it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def send(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> Answer:
        """One request, its ``form`` sent as a browser posts a form. A
        redirect is not followed: its :attr:`Answer.location` says where.
        """
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

        try:
            headers = {}
            body = None

            if form is not None:
                body = urllib.parse.urlencode(form)
                headers["Content-Type"] = "application/x-www-form-urlencoded"

            if self.cookies:
                headers["Cookie"] = "; ".join(
                    f"{name}={value}" for name, value in self.cookies.items()
                )

            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            set_cookies = response.headers.get_all("Set-Cookie") or []
        finally:
            conn.close()

        for header in set_cookies:
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            jar.load(header)

            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

        return Answer(
            response.status, text, set_cookies, response.getheader("Location")
        )

    def get(self, path: str) -> str:
        answer = self.send("GET", path)
        assert answer.status == 200, answer
        return answer.body

    def post(self, path: str) -> str:
        answer = self.send("POST", path)
        assert answer.status == 200, answer
        return answer.body

    def me(self) -> str:
        return self.get("/me")

    def login(self, user_id: int = 1) -> None:
        assert self.post(f"/login/{user_id}") == "ok"
        assert self.cookies, "the login gave no cookie"
