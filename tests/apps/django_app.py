"""A minimal single-file Django project served end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="velocior-tests-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings above
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django", content_type="text/plain")


def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "body": request.body.decode("utf-8"),
        "content_type": request.content_type,
        "host": request.get_host(),
        "secure": request.is_secure(),
        "cookie": request.COOKIES,
    })


def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"form": request.POST.dict(),
                         "files": {k: len(f.read()) for k, f in request.FILES.items()}})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def gen() -> Iterator[bytes]:
        for i in range(100):
            yield json.dumps({"i": i}).encode() + b"\n"
    return StreamingHttpResponse(gen(), content_type="application/x-ndjson")


urlpatterns = [
    path("", hello),
    path("echo/", echo),
    path("form/", form),
    path("stream/", stream),
]

application = get_wsgi_application()
app = application
