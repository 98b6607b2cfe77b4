"""Flower's configuration file: Flower executes ./flowerconfig.py when it starts."""

from tornado.options import options

from config.flower import require_login

require_login(basic_auth=options.basic_auth, auth=options.auth)
