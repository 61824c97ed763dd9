"""The one blueprint every admin page hangs on."""

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static")
