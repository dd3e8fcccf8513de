"""Error pages in the site's layout instead of Werkzeug's bare ones: each
says what happened and offers a way on.
"""

from __future__ import annotations

from flask import Flask
from flask import current_app
from flask import render_template
from flask import request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import default_exceptions
from werkzeug.wrappers import Response

#: A heading and an explanation per status; the explanation gives way to
#: the description a view passed to ``abort()``.
MESSAGES = {
    400: ("That did not work", "The request could not be used."),
    401: ("Please log in", "This page is for logged-in users."),
    403: ("You cannot open this page", "Your account has no access to it."),
    404: ("Page not found", "There is no page at this address."),
    405: ("That did not work", "This page cannot be used that way."),
    500: (
        "Something went wrong on our side",
        "The error was logged. Try again, or start over from the home page.",
    ),
    503: (
        "The session store is down",
        "Who you are is kept in the session store, which cannot be reached"
        " right now. Please try again in a moment.",
    ),
}


def register_error_pages(app: Flask) -> None:
    # Unhandled exceptions reach this handler as an InternalServerError.
    app.register_error_handler(HTTPException, error_page)


def error_page(error: HTTPException) -> HTTPException | Response:
    code = error.code

    if code is None or code < 400:  # not an error: a redirect or the like
        return error

    title, text = MESSAGES.get(code, (error.name, ""))
    default = default_exceptions.get(code)

    # A message of the application's own: abort(403, "Administrators only.")
    # or flask_pow's StoreUnavailable description.
    if error.description and (
        default is None or error.description != default.description
    ):
        text = error.description

    # Werkzeug's response keeps headers such as Allow; only the body changes.
    response = error.get_response()
    response.set_data(
        render_template(
            "error.html",
            code=code,
            title=title,
            text=text,
            inline_style=_inline_style() if code == 503 else None,
            # The same page again: only for a GET, which is safe to repeat.
            retry=(
                request.full_path.rstrip("?")
                if code == 503 and request.method == "GET"
                else None
            ),
        )
    )
    return response


def _inline_style() -> Markup:
    # With the store down, every request that carries the session cookie
    # gets a 503, the stylesheet's too: this page brings its own styles.
    with current_app.open_resource("static/style.css", "r") as file:
        return Markup(file.read())
