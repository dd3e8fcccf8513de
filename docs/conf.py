from pallets_sphinx_themes import get_version

project = "flask_pow"
copyright = "2026, the flask_pow authors"
author = "the flask_pow authors"
release, version = get_version("flask-pow")

extensions = [
    "sphinx.ext.autodoc",
    "pallets_sphinx_themes",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
# No intersphinx: the build runs offline, on CI too.

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_title = f"flask_pow Documentation ({version})"
html_show_sourcelink = False
