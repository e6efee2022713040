"""The variables of the grid's environment that an environment build gets (and that the local
daemon therefore keeps from its starter): a module of its own, without imports, so that the CLI
can read it without loading the build machinery."""

from __future__ import annotations

#: the only variables of the grid's environment a build gets: the operator's index, TLS trust
#: and proxy settings (none of the grid's own)
PASSED_SETTINGS = frozenset(
    {
        "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_INDEX",
        "UV_INDEX_STRATEGY",
        "UV_HTTP_TIMEOUT",
        "UV_NATIVE_TLS",
        "UV_SYSTEM_CERTS",
        "UV_CONCURRENT_DOWNLOADS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        *(
            name
            for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
            for name in (proxy, proxy.lower())
        ),
    }
)
