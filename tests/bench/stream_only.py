"""The ceiling of anything on mitmproxy: an addon that only turns streaming on."""

from mitmproxy import http


def responseheaders(flow: http.HTTPFlow) -> None:
    flow.response.stream = True
