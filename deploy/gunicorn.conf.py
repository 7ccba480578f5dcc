"""gunicorn configuration for voice-channel (see README "Running in production").

    gunicorn -c deploy/gunicorn.conf.py 'voice_channel.app:app_from_environment()'

Everything comes from the voice-channel settings (VOICE_CHANNEL_* variables, VOICE_CHANNEL_CONFIG=voice.yaml):
bind = server.host:server.port, workers = server.workers, aiohttp's own worker, graceful_timeout =
server.drain_timeout_s + server.shutdown_timeout_s + 5, and the hooks that drain workers, keep
Prometheus' multiprocess directory clean and check Redis before any worker starts. The defaults live in
voice_channel/gunicorn_conf.py; override gunicorn settings below (values set here win over them,
gunicorn's command-line flags win over both).
"""

from voice_channel.gunicorn_conf import *  # noqa: F403

# Examples:
# workers = 4                  # one per core: a worker is one event loop on one core
# accesslog = "-"              # aiohttp's access log format, e.g. access_log_format = '%a "%r" %s %Tf'
# max_requests = 0             # never recycle workers by request count: a recycle drains like a restart
