"""Built-ins registered as default plugins through the same hooks as third-party ones: the ``echo``
and ``demo`` runtimes and the token policy (``voice_channel_authorize_token``)."""
